package webhook_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/adaptertest"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// request is one request as a receiver saw it.
type request struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is a real HTTP server on 127.0.0.1 that verifies every request's
// signature, as a subscriber would, and answers with respond (204 when nil).
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	secrets [][]byte
	respond func(w http.ResponseWriter, r *http.Request, n int) // n counts requests from 1

	mu       sync.Mutex
	requests []request
	bad      int // requests failing verification
	arrived  chan struct{}
	read     int // how many requests Receive has returned
}

func newReceiver(t *testing.T, secrets [][]byte, respond func(w http.ResponseWriter, r *http.Request, n int)) *receiver {
	t.Helper()
	rc := &receiver{t: t, secrets: secrets, respond: respond, arrived: make(chan struct{}, 1)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := webhooks.Verify(rc.secrets, r.Header, body, time.Now(), time.Minute); err != nil {
		rc.mu.Lock()
		rc.bad++
		rc.mu.Unlock()
		rc.t.Errorf("receiver: %v", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	rc.requests = append(rc.requests, request{header: r.Header.Clone(), body: body, at: time.Now()})
	n := len(rc.requests)
	rc.mu.Unlock()
	select {
	case rc.arrived <- struct{}{}:
	default:
	}
	if rc.respond != nil {
		rc.respond(w, r, n)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) url() string { return rc.srv.URL + "/hook?token=t0ps3cret" }

func (rc *receiver) all() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.requests...)
}

// Receive implements adaptertest.Destination: every verified request that
// was answered 2xx is a stored message. (All are, with the default respond.)
func (rc *receiver) Receive(ctx context.Context, limit int) ([]adaptertest.Received, error) {
	var got []adaptertest.Received
	for {
		rc.mu.Lock()
		for rc.read < len(rc.requests) && len(got) < limit {
			r := rc.requests[rc.read]
			rc.read++
			got = append(got, adaptertest.Received{ID: r.header.Get(webhooks.HeaderID), Payload: r.body})
		}
		rc.mu.Unlock()
		if len(got) >= limit {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, nil
		case <-rc.arrived:
		}
	}
}
