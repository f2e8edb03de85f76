package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/webhook"
)

// attempts collects what WithAttemptObserver reports; the observer is
// called from delivering goroutines, hence the lock.
type attempts struct {
	mu  sync.Mutex
	all []webhook.Attempt
}

func (a *attempts) observe(at webhook.Attempt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, at)
}

func (a *attempts) get() []webhook.Attempt {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]webhook.Attempt(nil), a.all...)
}

// 500 then 200: the observer sees both attempts, in order, with the
// failure's error on the first only.
func TestAttemptObserverSeesFailedThenDeliveredAttempt(t *testing.T) {
	rc := newReceiver(t, [][]byte{newSecret(t)}, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	var seen attempts
	p := mustNew(t, []webhook.Endpoint{endpointFor("flaky", rc)}, loopback(), webhook.WithAttemptObserver(seen.observe))
	m := msg("evt-obs", "t", "")
	if err := p.Publish(context.Background(), []adapters.Message{m})[0].Err; err == nil {
		t.Fatal("first attempt delivered, want the receiver's 500")
	}
	if err := p.Publish(context.Background(), []adapters.Message{m})[0].Err; err != nil {
		t.Fatalf("second attempt: %v", err)
	}

	got := seen.get()
	if len(got) != 2 {
		t.Fatalf("observed %d attempts, want 2: %+v", len(got), got)
	}
	for i, want := range []int{http.StatusInternalServerError, http.StatusOK} {
		a := got[i]
		if a.StatusCode != want || a.EventID != "evt-obs" || a.Endpoint != "flaky" {
			t.Errorf("attempt %d = {status %d, event %q, endpoint %q}, want {%d, %q, %q}",
				i+1, a.StatusCode, a.EventID, a.Endpoint, want, "evt-obs", "flaky")
		}
		if a.Duration <= 0 || a.At.IsZero() {
			t.Errorf("attempt %d: duration %s, at %s: want both set", i+1, a.Duration, a.At)
		}
	}
	if !errors.Is(got[0].Err, webhook.ErrUnavailable) {
		t.Errorf("first attempt's error = %v, want ErrUnavailable", got[0].Err)
	}
	if got[1].Err != nil {
		t.Errorf("delivered attempt has error %v, want nil", got[1].Err)
	}
	if got[1].At.Before(got[0].At) {
		t.Errorf("second attempt at %s, before the first at %s", got[1].At, got[0].At)
	}
}

// No response at all is an attempt too, with status 0, and its error does
// not leak the URL's token.
func TestAttemptObserverSeesAttemptWithoutResponse(t *testing.T) {
	rc := newReceiver(t, [][]byte{newSecret(t)}, nil)
	rc.srv.Close()
	var seen attempts
	p := mustNew(t, []webhook.Endpoint{endpointFor("down", rc)}, loopback(), webhook.WithAttemptObserver(seen.observe))
	if err := p.Publish(context.Background(), []adapters.Message{msg("evt-down", "t", "")})[0].Err; err == nil {
		t.Fatal("delivered to a closed server")
	}
	got := seen.get()
	if len(got) != 1 {
		t.Fatalf("observed %d attempts, want 1: %+v", len(got), got)
	}
	if a := got[0]; a.StatusCode != 0 || a.Err == nil || a.EventID != "evt-down" || a.Endpoint != "down" {
		t.Fatalf("attempt = %+v, want status 0 and an error for evt-down at down", a)
	}
	if strings.Contains(got[0].Err.Error(), "t0ps3cret") {
		t.Errorf("attempt error leaks the URL's token: %v", got[0].Err)
	}
}

func TestAttemptObserverNilIsRejected(t *testing.T) {
	_, err := webhook.New(nil, webhook.WithAttemptObserver(nil))
	if err == nil || !strings.Contains(err.Error(), "WithAttemptObserver") {
		t.Fatalf("err = %v, want one naming WithAttemptObserver", err)
	}
}

// Each Result carries the HTTP status the receiver answered, for the
// delivery log: a success's as well as a failure's; 0 when nothing answered.
func TestResultCarriesTheStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
	}{
		{"accepted", http.StatusAccepted},
		{"rejected", http.StatusUnprocessableEntity},
		{"failing", http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, [][]byte{newSecret(t)}, func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.WriteHeader(tc.status)
			})
			p := mustNew(t, []webhook.Endpoint{endpointFor("one", rc)}, loopback())
			res := p.Publish(context.Background(), []adapters.Message{msg("evt-status", "t", "")})[0]
			if res.Status != tc.status {
				t.Errorf("Result.Status = %d, want %d (error %v)", res.Status, tc.status, res.Err)
			}
		})
	}
	// Too large: refused before any request, so no status.
	rc := newReceiver(t, [][]byte{newSecret(t)}, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusOK) })
	p := mustNew(t, []webhook.Endpoint{endpointFor("one", rc)}, loopback(), webhook.WithMaxBodySize(10))
	m := msg("evt-big", "t", "")
	m.Payload = []byte(strings.Repeat("x", 100))
	if res := p.Publish(context.Background(), []adapters.Message{m})[0]; res.Status != 0 || res.Err == nil {
		t.Errorf("oversize: Result = %+v, want an error and status 0", res)
	}
}
