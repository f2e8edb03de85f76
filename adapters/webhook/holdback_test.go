package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/webhook"
)

// Whatever the failure, the later messages of its key are not sent to the
// endpoint that failed it; they report ErrEarlierFailed, which carries the
// cause's unavailability and Retry-After but never its permanence. Other
// keys go on.
func TestFailureHoldsBackItsKey(t *testing.T) {
	for _, tc := range []struct {
		name        string
		status      int
		unavailable bool
	}{
		{"rejected", http.StatusBadRequest, false},
		{"server error", http.StatusInternalServerError, false},
		{"throttled", http.StatusTooManyRequests, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, [][]byte{newSecret(t)}, func(w http.ResponseWriter, r *http.Request, _ int) {
				if r.Header.Get("Webhook-Id") == "head" {
					w.Header().Set("Retry-After", "30")
					w.WriteHeader(tc.status)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			})
			p := mustNew(t, []webhook.Endpoint{endpointFor("ep", rc)}, loopback())
			res := p.Publish(context.Background(), []adapters.Message{
				msg("head", "t", "k"), msg("next", "t", "k"), msg("other", "t", "j"),
			})
			if res[0].Err == nil {
				t.Fatal("the head was delivered")
			}
			err := res[1].Err
			if !errors.Is(err, webhook.ErrEarlierFailed) || errors.Is(err, adapters.ErrPermanent) ||
				errors.Is(err, adapters.ErrUnavailable) != tc.unavailable {
				t.Errorf("successor: err = %v, want ErrEarlierFailed, not permanent, unavailable=%v", err, tc.unavailable)
			}
			if !strings.Contains(err.Error(), http.StatusText(tc.status)) {
				t.Errorf("successor's error %q does not say the cause", err)
			}
			if wantAfter := map[bool]time.Duration{true: 30 * time.Second, false: 0}[tc.status != http.StatusBadRequest]; res[1].RetryAfter != wantAfter {
				t.Errorf("successor's RetryAfter = %s, want %s (its predecessor's, unless that is dead)", res[1].RetryAfter, wantAfter)
			}
			if res[2].Err != nil {
				t.Errorf("other key: %v", res[2].Err)
			}
			var got []string
			for _, r := range rc.all() {
				got = append(got, r.header.Get("Webhook-Id"))
			}
			if strings.Join(got, ",") != "head,other" && strings.Join(got, ",") != "other,head" {
				t.Errorf("endpoint received %v, want head and other only", got)
			}
		})
	}
}

// A message refused before any request (too large, no subscriber) holds
// back the later messages of its key at every endpoint.
func TestUnsendableMessageHoldsBackItsKey(t *testing.T) {
	s := newSecret(t)
	a, b := newReceiver(t, [][]byte{s}, nil), newReceiver(t, [][]byte{s}, nil)
	epA := endpointFor("a", a)
	epA.Types = []string{"t", "u"}
	p := mustNew(t, []webhook.Endpoint{epA, endpointFor("b", b)}, loopback(), webhook.WithMaxBodySize(256))
	big := msg("big", "t", "k")
	big.Payload = []byte(`{"pad":"` + strings.Repeat("x", 300) + `"}`)
	res := p.Publish(context.Background(), []adapters.Message{
		big, msg("after-big", "t", "k"), msg("free", "t", "j"),
	})
	if !errors.Is(res[0].Err, webhook.ErrTooLarge) || !errors.Is(res[0].Err, adapters.ErrPermanent) {
		t.Errorf("oversize: err = %v, want permanent ErrTooLarge", res[0].Err)
	}
	if err := res[1].Err; !errors.Is(err, webhook.ErrEarlierFailed) || errors.Is(err, adapters.ErrPermanent) ||
		errors.Is(err, adapters.ErrUnavailable) {
		t.Errorf("successor: err = %v, want ErrEarlierFailed, neither permanent nor unavailable", err)
	}
	if res[2].Err != nil {
		t.Errorf("other key: %v", res[2].Err)
	}
	for _, rc := range []*receiver{a, b} {
		if got := rc.all(); len(got) != 1 || got[0].header.Get("Webhook-Id") != "free" {
			t.Errorf("an endpoint received %d requests, want only the other key's", len(got))
		}
	}
}

// The bound holds in its worst case: every message of one key, one request
// after another, each answered just inside the timeout.
func TestMaxPublishTime(t *testing.T) {
	const timeout = 400 * time.Millisecond
	rc := newReceiver(t, [][]byte{newSecret(t)}, func(w http.ResponseWriter, _ *http.Request, _ int) {
		time.Sleep(timeout / 2)
		w.WriteHeader(http.StatusNoContent)
	})
	p := mustNew(t, []webhook.Endpoint{endpointFor("slow", rc)}, loopback(), webhook.WithTimeout(timeout),
		webhook.WithConcurrency(4))
	if d := p.MaxPublishTime(5) - p.MaxPublishTime(4); d != timeout {
		t.Errorf("one more message adds %s to the bound, want one request timeout", d)
	}
	msgs := []adapters.Message{msg("e1", "t", "k"), msg("e2", "t", "k"), msg("e3", "t", "k"), msg("e4", "t", "k")}
	start := time.Now()
	res := p.Publish(context.Background(), msgs)
	took := time.Since(start)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("message %d: %v", i, r.Err)
		}
	}
	if least := time.Duration(len(msgs)) * timeout / 2; took < least {
		t.Errorf("Publish took %s; one key's %d requests in a row take at least %s", took, len(msgs), least)
	}
	if bound := p.MaxPublishTime(len(msgs)); took > bound {
		t.Errorf("Publish took %s, MaxPublishTime(%d) = %s", took, len(msgs), bound)
	}
}
