//go:build chaos

package chaos

import (
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// receiver is a slow but healthy webhook endpoint on 127.0.0.1: it answers
// every request 204 after delay, and counts, by event id (webhook-id),
// the requests it got, answered, and saw Herald give up on first.
type receiver struct {
	URL   string
	delay time.Duration

	mu                       sync.Mutex
	requests, answered, gone map[string]int
	inFlight, maxInFlight    int
}

func startReceiver(t *testing.T, delay time.Duration) *receiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{URL: "http://" + l.Addr().String() + "/hook", delay: delay,
		requests: map[string]int{}, answered: map[string]int{}, gone: map[string]int{}}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("webhook receiver: %v", err)
		}
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return rc
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("webhook-id")
	_, _ = io.Copy(io.Discard, r.Body)
	rc.mu.Lock()
	rc.requests[id]++
	rc.inFlight++
	rc.maxInFlight = max(rc.maxInFlight, rc.inFlight)
	rc.mu.Unlock()
	defer func() {
		rc.mu.Lock()
		rc.inFlight--
		rc.mu.Unlock()
	}()
	t := time.NewTimer(rc.delay)
	defer t.Stop()
	select {
	case <-t.C:
		w.WriteHeader(http.StatusNoContent)
		rc.mu.Lock()
		rc.answered[id]++
		rc.mu.Unlock()
	case <-r.Context().Done():
		// Herald hung up before the answer: its own deadline.
		rc.mu.Lock()
		rc.gone[id]++
		rc.mu.Unlock()
	}
}

// receiverCounts is a copy of the receiver's counts.
type receiverCounts struct {
	requests, answered, gone map[string]int
	maxInFlight              int
}

func (rc *receiver) counts() receiverCounts {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return receiverCounts{requests: maps.Clone(rc.requests), answered: maps.Clone(rc.answered), gone: maps.Clone(rc.gone), maxInFlight: rc.maxInFlight}
}
