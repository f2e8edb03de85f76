package nats

import (
	"context"
	"errors"
	"fmt"
	"testing"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/adapters"
)

func TestDestinationWide(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("publish: %w", natsgo.ErrConnectionClosed), true},
		{fmt.Errorf("publish: %w", natsgo.ErrConnectionReconnecting), true},
		{natsgo.ErrDisconnected, true},
		{natsgo.ErrReconnectBufExceeded, true},
		{natsgo.ErrNoResponders, true},
		{natsgo.ErrAuthorization, true},
		{fmt.Errorf("publish x: %w", jetstream.ErrNoStreamResponse), true},
		{jetstream.ErrAsyncPublishTimeout, true},
		{jetstream.ErrTooManyStalledMsgs, true},
		{&jetstream.APIError{Code: 404, ErrorCode: jetstream.JSErrCodeStreamNotFound, Description: "stream not found"}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: errCodeStreamStoreFailed, Description: "maximum messages exceeded"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: errCodeStreamSealed, Description: "invalid operation on sealed stream"}, true},
		// The message's own faults.
		{&jetstream.APIError{Code: 503, ErrorCode: errCodeStreamStoreFailed, Description: "message too large"}, false},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamMessageExceedsMaximum}, false},
		{natsgo.ErrBadSubject, false},
		// Ours or the caller's, not the destination's.
		{ErrClosed, false},
		{context.Canceled, false},
		{errors.New("something else"), false},
	} {
		if got := destinationWide(tc.err); got != tc.want {
			t.Errorf("destinationWide(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestAckErrorClasses(t *testing.T) {
	tooLarge := ackError("s", &jetstream.APIError{Code: 503, ErrorCode: errCodeStreamStoreFailed, Description: "message too large"})
	if !errors.Is(tooLarge, adapters.ErrPermanent) || !errors.Is(tooLarge, ErrTooLarge) || errors.Is(tooLarge, adapters.ErrUnavailable) {
		t.Errorf("store refusing the size: %v, want permanent ErrTooLarge only", tooLarge)
	}
	full := ackError("s", &jetstream.APIError{Code: 503, ErrorCode: errCodeStreamStoreFailed, Description: "maximum bytes exceeded"})
	if !errors.Is(full, adapters.ErrUnavailable) || errors.Is(full, adapters.ErrPermanent) {
		t.Errorf("full stream: %v, want unavailable, not permanent", full)
	}
}
