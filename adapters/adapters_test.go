package adapters_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/heraldhq/herald/adapters"
)

func TestHeldBack(t *testing.T) {
	earlierFailed := errors.New("not sent, an earlier message failed")
	disconnected := errors.New("disconnected")
	tooLarge := errors.New("too large")
	unavailable := adapters.Unavailable(disconnected)
	permanent := adapters.Permanent(tooLarge)
	for _, tc := range []struct {
		name                                      string
		cause                                     error
		wantUnavailable, wantCancel, wantSentinel bool
	}{
		{"unavailable", unavailable, true, false, true},
		{"cancelled", fmt.Errorf("publish: %w", context.Canceled), false, true, false},
		{"permanent", permanent, false, false, false},
		{"both", adapters.Unavailable(permanent), true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := adapters.HeldBack(earlierFailed, "k", tc.cause)
			if !errors.Is(err, earlierFailed) || errors.Is(err, adapters.ErrPermanent) {
				t.Errorf("err = %v, want the adapter's sentinel and never adapters.ErrPermanent", err)
			}
			if got := errors.Is(err, adapters.ErrUnavailable); got != tc.wantUnavailable {
				t.Errorf("wraps adapters.ErrUnavailable = %v, want %v", got, tc.wantUnavailable)
			}
			if got := errors.Is(err, context.Canceled); got != tc.wantCancel {
				t.Errorf("wraps context.Canceled = %v, want %v", got, tc.wantCancel)
			}
			if got := errors.Is(err, disconnected); got != tc.wantSentinel {
				t.Errorf("wraps the cause's sentinel = %v, want %v", got, tc.wantSentinel)
			}
			if want := tc.cause.Error(); !strings.Contains(err.Error(), want) {
				t.Errorf("err %q does not say the cause %q", err, want)
			}
		})
	}
}
