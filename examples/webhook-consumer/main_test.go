package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/examples/internal/heraldtest"
	"github.com/heraldhq/herald/examples/internal/provision"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// Events go through Herald end to end (outbox.Write, the relay, the signed
// webhook adapter) into the example's handler on a local HTTP server. The
// side effect of a quarter of them fails on its first try, so the handler
// answers 500 and Herald's relay must retry; then all of them are written
// and relayed a second time (webhooks have no duplicate detection), so that
// each reaches the handler twice. Each must be provisioned exactly once.
func TestProvisionsEachEventOnceThroughWebhooks(t *testing.T) {
	const n = 20
	events := heraldtest.Events(t, n)
	failOnce := heraldtest.IDs(events[:n/4])
	flaky := heraldtest.NewFlaky(provision.Provision, failOnce...)
	secret := newSecret(t)
	h, db := newTestHandler(t, secret, flaky.Apply)
	srv := httptest.NewServer(h) // on 127.0.0.1
	t.Cleanup(srv.Close)

	pub, err := webhook.New([]webhook.Endpoint{{
		Name:    "provisioner",
		URL:     srv.URL + "/webhooks/herald",
		Secrets: [][]byte{secret},
		Enabled: true,
	}},
		// The SSRF guard refuses loopback addresses, and plain http, unless
		// allowlisted.
		webhook.WithAllowCIDRs("127.0.0.1/32"),
		webhook.WithLogger(heraldtest.Quiet()),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })

	ob := heraldtest.NewOutbox(t)
	ob.Write(events...)
	relay := ob.Relay(pub)

	ob.WaitDelivered(relay, n) // every event answered 2xx
	if f := relay.Stats().Failed; f < int64(len(failOnce)) {
		t.Errorf("the relay retried %d times, want at least %d (one per event whose first try failed)", f, len(failOnce))
	}
	heraldtest.CheckExactlyOnce(t, db, events, flaky, failOnce)

	ob.Write(events...) // webhooks have no duplicate detection
	ob.WaitDelivered(relay, 2*n)
	heraldtest.CheckExactlyOnce(t, db, events, flaky, failOnce)
}

// The handler answers each kind of request as Herald's webhook adapter
// expects: 2xx when done with the event (duplicates and stale events
// included), 4xx, which Herald does not retry, for requests it must refuse.
func TestAnswersEachRequestAsHeraldExpects(t *testing.T) {
	secret := newSecret(t)
	h, db := newTestHandler(t, secret, provision.Provision)
	events := heraldtest.Events(t, 1)
	ev := events[0]
	body, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	// An older event about the same data product: it must not undo the
	// newer one.
	older, err := event.New(ev.Type, ev.Source, ev.Data, event.WithSubject(ev.Subject),
		event.WithPartitionKey(ev.PartitionKey), event.WithTime(ev.Time.Add(-time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	olderBody, err := older.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()

	for _, tc := range []struct {
		name string
		req  *http.Request
		want int
	}{
		{"event", signed(secret, ev.ID, now, body), http.StatusNoContent},
		{"the same event again", signed(secret, ev.ID, now, body), http.StatusNoContent},
		{"an older event about the same subject", signed(secret, older.ID, now, olderBody), http.StatusNoContent},
		{"no webhook headers", httptest.NewRequest(http.MethodPost, "/webhooks/herald", bytes.NewReader(body)), http.StatusBadRequest},
		{"signed with another secret", signed(newSecret(t), ev.ID, now, body), http.StatusUnauthorized},
		{"body changed after signing", tampered(signed(secret, ev.ID, now, body)), http.StatusUnauthorized},
		{"timestamp outside the tolerance", signed(secret, ev.ID, now.Add(-10*time.Minute), body), http.StatusUnauthorized},
		{"not a CloudEvent", signed(secret, ev.ID, now, []byte(`{"hello":"world"}`)), http.StatusBadRequest},
		{"webhook-id is not the event id", signed(secret, older.ID, now, body), http.StatusBadRequest},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, tc.req)
		if rec.Code != tc.want {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, rec.Code, tc.want, rec.Body)
		}
	}
	got := heraldtest.Provisioned(t, db)
	if len(got) != 1 || got[ev.ID] != 1 {
		t.Errorf("provisioned %v, want only %s, once", got, ev.ID)
	}
}

// run serves the handler on --listen and --path, and returns once its
// context is cancelled and the server has stopped.
func TestRunServesUntilCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // free again for run; the test owns nothing else on it
	secret := newSecret(t)
	cfg := config{
		Listen:    addr,
		Path:      "/webhooks/herald",
		Name:      "provisioner",
		DBPath:    filepath.Join(t.TempDir(), "consumer.db"),
		Secrets:   [][]byte{secret},
		Tolerance: webhooks.DefaultTolerance,
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, provision.Provision) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	ev := heraldtest.Events(t, 1)[0]
	body, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + addr + cfg.Path
	client := &http.Client{}
	t.Cleanup(client.CloseIdleConnections)
	heraldtest.Eventually(t, 10*time.Second, "the server to answer", func() error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		sign(req.Header, secret, ev.ID, time.Now(), body)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("POST %s: status %d, want 204", url, resp.StatusCode)
		}
		return nil
	})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: status %d, want 405", url, resp.StatusCode)
	}
}

func newSecret(t *testing.T) []byte {
	t.Helper()
	s, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	secret, err := webhooks.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// newTestHandler returns the example's handler on a fresh database.
func newTestHandler(t *testing.T, secret []byte, apply provision.Func) (*handler, *sql.DB) {
	t.Helper()
	db, ledger, err := provision.Open(t.Context(), filepath.Join(t.TempDir(), "consumer.db"), "provisioner")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return &handler{secrets: [][]byte{secret}, tolerance: webhooks.DefaultTolerance, ledger: ledger, apply: apply}, db
}

// signed is a request as Herald's webhook adapter sends it.
func signed(secret []byte, id string, ts time.Time, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/webhooks/herald", bytes.NewReader(body))
	sign(r.Header, secret, id, ts, body)
	return r
}

// sign sets the headers Herald's webhook adapter sets.
func sign(h http.Header, secret []byte, id string, ts time.Time, body []byte) {
	h.Set("Content-Type", "application/cloudevents+json")
	h.Set(webhooks.HeaderID, id)
	h.Set(webhooks.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(webhooks.HeaderSignature, webhooks.Sign(secret, id, ts, body))
}

// tampered replaces the body of a signed request, keeping its signature.
func tampered(r *http.Request) *http.Request {
	b := []byte(`{"specversion":"1.0","id":"` + r.Header.Get(webhooks.HeaderID) + `","source":"/evil","type":"x.y"}`)
	r2 := httptest.NewRequest(http.MethodPost, r.URL.Path, bytes.NewReader(b))
	r2.Header = r.Header.Clone()
	return r2
}
