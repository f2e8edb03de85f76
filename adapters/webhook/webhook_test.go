package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/adaptertest"
	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/pkg/webhooks"
)

const testMaxBody = 64 << 10

func newSecret(t *testing.T) []byte {
	t.Helper()
	s, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := webhooks.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loopback allows the httptest servers on 127.0.0.1, over plain http.
func loopback() webhook.Option { return webhook.WithAllowCIDRs("127.0.0.0/8") }

func mustNew(t *testing.T, eps []webhook.Endpoint, opts ...webhook.Option) *webhook.Publisher {
	t.Helper()
	p, err := webhook.New(eps, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func endpointFor(name string, rc *receiver) webhook.Endpoint {
	return webhook.Endpoint{Name: name, URL: rc.url(), Secrets: rc.secrets, Enabled: true}
}

func msg(id, typ, key string) adapters.Message {
	return adapters.Message{ID: id, Type: typ, PartitionKey: key,
		Payload: []byte(`{"specversion":"1.0","id":"` + id + `","type":"` + typ + `","source":"/t"}`)}
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Open: func(t *testing.T) (adapters.Publisher, adaptertest.Destination) {
			rc := newReceiver(t, [][]byte{newSecret(t)}, nil)
			p := mustNew(t, []webhook.Endpoint{endpointFor("conformance", rc)}, loopback(), webhook.WithMaxBodySize(testMaxBody))
			return p, rc
		},
		OpenDown: func(t *testing.T) adapters.Publisher {
			rc := newReceiver(t, [][]byte{newSecret(t)}, nil)
			p := mustNew(t, []webhook.Endpoint{endpointFor("down", rc)}, loopback())
			rc.srv.Close()
			return p
		},
		MaxPayload: testMaxBody,
		// Webhooks have no broker-side dedupe: receivers drop repeats by
		// webhook-id.
		Dedupe: false,
	})
}

func TestRequestHeadersAndRotation(t *testing.T) {
	oldS, newS := newSecret(t), newSecret(t)
	// The receiver only knows the old secret: mid-rotation it must still
	// accept; one that already switched knows only the new one.
	for name, known := range map[string][]byte{"old": oldS, "new": newS} {
		t.Run(name, func(t *testing.T) {
			rc := newReceiver(t, [][]byte{known}, nil)
			ep := endpointFor("rot", rc)
			ep.Secrets = [][]byte{newS, oldS}
			ep.Headers = map[string]string{"X-Api-Key": "k1"}
			p := mustNew(t, []webhook.Endpoint{ep}, loopback())
			m := msg("evt-1", "io.herald.test.created", "")
			m.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			if res := p.Publish(context.Background(), []adapters.Message{m}); res[0].Err != nil {
				t.Fatal(res[0].Err)
			}
			got := rc.all()
			if len(got) != 1 {
				t.Fatalf("received %d requests, want 1", len(got))
			}
			h := got[0].header
			for k, want := range map[string]string{
				"Content-Type":   webhook.ContentType,
				"Webhook-Id":     "evt-1",
				"Traceparent":    m.TraceParent,
				"X-Api-Key":      "k1",
				"Content-Length": "",
			} {
				if want != "" && h.Get(k) != want {
					t.Errorf("%s = %q, want %q", k, h.Get(k), want)
				}
			}
			if n := len(strings.Fields(h.Get(webhooks.HeaderSignature))); n != 2 {
				t.Errorf("webhook-signature has %d signatures, want 2", n)
			}
		})
	}
}

func TestTypeFilterAndDisabled(t *testing.T) {
	s := newSecret(t)
	portal := newReceiver(t, [][]byte{s}, nil)
	all := newReceiver(t, [][]byte{s}, nil)
	off := newReceiver(t, [][]byte{s}, nil)
	epPortal := endpointFor("portal", portal)
	epPortal.Types = []string{"io.herald.portal.input_port.*"}
	epOff := endpointFor("off", off)
	epOff.Enabled = false
	p := mustNew(t, []webhook.Endpoint{epPortal, endpointFor("all", all), epOff}, loopback())
	res := p.Publish(context.Background(), []adapters.Message{
		msg("a", "io.herald.portal.input_port.created", ""),
		msg("b", "io.herald.billing.invoice.paid", ""),
	})
	for i, r := range res {
		if r.Err != nil {
			t.Errorf("message %d: %v", i, r.Err)
		}
	}
	if n := len(portal.all()); n != 1 {
		t.Errorf("portal received %d, want 1", n)
	}
	if n := len(all.all()); n != 2 {
		t.Errorf("unfiltered endpoint received %d, want 2", n)
	}
	if n := len(off.all()); n != 0 {
		t.Errorf("disabled endpoint received %d, want 0", n)
	}
}

// A receiver that hangs on every request does not delay delivery to the
// healthy endpoints: they have the events long before the slow one times
// out.
func TestSlowEndpointDoesNotDelayOthers(t *testing.T) {
	s := newSecret(t)
	slow := newReceiver(t, [][]byte{s}, func(w http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	})
	fast1 := newReceiver(t, [][]byte{s}, nil)
	fast2 := newReceiver(t, [][]byte{s}, nil)
	const timeout = 1500 * time.Millisecond
	p := mustNew(t, []webhook.Endpoint{endpointFor("slow", slow), endpointFor("fast1", fast1), endpointFor("fast2", fast2)},
		loopback(), webhook.WithTimeout(timeout))
	msgs := []adapters.Message{msg("e1", "t", "k"), msg("e2", "t", "k"), msg("e3", "t", "")}
	start := time.Now()
	res := p.Publish(context.Background(), msgs)
	for _, fast := range []*receiver{fast1, fast2} {
		got := fast.all()
		if len(got) != len(msgs) {
			t.Fatalf("healthy endpoint received %d, want %d", len(got), len(msgs))
		}
		if d := got[len(got)-1].at.Sub(start); d > timeout/2 {
			t.Errorf("healthy endpoint had everything only after %s", d)
		}
	}
	for i, r := range res {
		var ee *webhook.EndpointError
		if !errors.As(r.Err, &ee) || ee.Endpoint != "slow" {
			t.Fatalf("message %d: err = %v, want the slow endpoint's", i, r.Err)
		}
		if errors.Is(r.Err, adapters.ErrPermanent) || errors.Is(r.Err, adapters.ErrUnavailable) {
			t.Errorf("message %d: a timeout must be transient, and is left to the relay's own rule: %v", i, r.Err)
		}
	}
	if !errors.Is(res[0].Err, webhook.ErrTimeout) || !errors.Is(res[1].Err, webhook.ErrEarlierFailed) {
		t.Errorf("same-key messages: got %v / %v, want timeout then ErrEarlierFailed", res[0].Err, res[1].Err)
	}
}

// 500, 500, 200: the relay retries; each attempt carries the same id and
// body and a fresh, valid signature; the event is delivered once.
func TestRetryAfterServerErrors(t *testing.T) {
	rc := newReceiver(t, [][]byte{newSecret(t)}, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n <= 2 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	p := mustNew(t, []webhook.Endpoint{endpointFor("flaky", rc)}, loopback())
	m := msg("evt-r", "t", "")
	for attempt := 1; attempt <= 3; attempt++ {
		err := p.Publish(context.Background(), []adapters.Message{m})[0].Err
		switch {
		case attempt < 3 && (err == nil || errors.Is(err, adapters.ErrPermanent) || !errors.Is(err, webhook.ErrUnavailable)):
			t.Fatalf("attempt %d: err = %v, want transient ErrUnavailable", attempt, err)
		case attempt < 3 && !strings.Contains(err.Error(), `"flaky"`):
			t.Errorf("error does not name the endpoint: %v", err)
		case attempt == 3 && err != nil:
			t.Fatalf("attempt 3: %v", err)
		}
	}
	got := rc.all()
	if len(got) != 3 {
		t.Fatalf("receiver saw %d requests, want 3", len(got))
	}
	for _, r := range got {
		if r.header.Get(webhooks.HeaderID) != "evt-r" || string(r.body) != string(m.Payload) {
			t.Errorf("attempt changed id or body: %q %q", r.header.Get(webhooks.HeaderID), r.body)
		}
	}
}

func TestStatusClassification(t *testing.T) {
	tests := []struct {
		status     int
		retryAfter string
		permanent  bool
		sentinel   error
		wantAfter  time.Duration
		// down: the answer says the endpoint as a whole is throttling or
		// down (adapters.ErrUnavailable), whatever the event.
		down bool
	}{
		{http.StatusTooManyRequests, "120", false, webhook.ErrUnavailable, 2 * time.Minute, true},
		{http.StatusServiceUnavailable, time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), false, webhook.ErrUnavailable, time.Hour, true},
		{http.StatusBadGateway, "", false, webhook.ErrUnavailable, 0, true},
		{http.StatusGatewayTimeout, "", false, webhook.ErrUnavailable, 0, true},
		// Retryable, but possibly this event's doing.
		{http.StatusInternalServerError, "", false, webhook.ErrUnavailable, 0, false},
		{http.StatusNotImplemented, "", false, webhook.ErrUnavailable, 0, false},
		{http.StatusRequestTimeout, "", false, webhook.ErrUnavailable, 0, false},
		{http.StatusTooEarly, "", false, webhook.ErrUnavailable, 0, false},
		{http.StatusBadRequest, "", true, webhook.ErrRejected, 0, false},
		{http.StatusUnauthorized, "", true, webhook.ErrRejected, 0, false},
		{http.StatusNotFound, "", true, webhook.ErrRejected, 0, false},
		{http.StatusRequestEntityTooLarge, "", true, webhook.ErrRejected, 0, false},
		{http.StatusFound, "", true, webhook.ErrRejected, 0, false},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			rc := newReceiver(t, [][]byte{newSecret(t)}, func(w http.ResponseWriter, _ *http.Request, _ int) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				if tt.status == http.StatusFound {
					w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
				}
				w.WriteHeader(tt.status)
			})
			p := mustNew(t, []webhook.Endpoint{endpointFor("ep", rc)}, loopback())
			err := p.Publish(context.Background(), []adapters.Message{msg("e", "t", "")})[0].Err
			if !errors.Is(err, tt.sentinel) || errors.Is(err, adapters.ErrPermanent) != tt.permanent ||
				errors.Is(err, adapters.ErrUnavailable) != tt.down {
				t.Fatalf("err = %v, want %v with permanent=%v, destination unavailable=%v", err, tt.sentinel, tt.permanent, tt.down)
			}
			var ee *webhook.EndpointError
			if !errors.As(err, &ee) || ee.StatusCode != tt.status {
				t.Fatalf("err = %#v, want an EndpointError with status %d", err, tt.status)
			}
			after, ok := webhook.RetryAfter(err)
			if d := after - tt.wantAfter; ok != (tt.wantAfter > 0) || d < -2*time.Second || d > 2*time.Second {
				t.Errorf("RetryAfter = %s, %v; want about %s", after, ok, tt.wantAfter)
			}
		})
	}
}

func TestGoneDisablesEndpoint(t *testing.T) {
	s := newSecret(t)
	gone := newReceiver(t, [][]byte{s}, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusGone) })
	ok := newReceiver(t, [][]byte{s}, nil)
	var mu sync.Mutex
	var disabled []string
	p := mustNew(t, []webhook.Endpoint{endpointFor("gone", gone), endpointFor("ok", ok)}, loopback(),
		webhook.WithOnDisabled(func(name string, reason error) {
			mu.Lock()
			defer mu.Unlock()
			disabled = append(disabled, name)
			if !errors.Is(reason, webhook.ErrGone) {
				t.Errorf("reason = %v, want ErrGone", reason)
			}
		}))
	err := p.Publish(context.Background(), []adapters.Message{msg("e1", "t", "")})[0].Err
	if !errors.Is(err, webhook.ErrGone) || !errors.Is(err, adapters.ErrPermanent) {
		t.Fatalf("err = %v, want permanent ErrGone", err)
	}
	mu.Lock()
	if len(disabled) != 1 || disabled[0] != "gone" {
		t.Errorf("disabled = %v, want [gone]", disabled)
	}
	mu.Unlock()
	// The disabled endpoint still subscribes: its events fail, to be
	// replayed once it is back, rather than count as sent.
	err = p.Publish(context.Background(), []adapters.Message{msg("e2", "t", "")})[0].Err
	if ee, ok := errors.AsType[*webhook.EndpointError](err); !ok || ee.Endpoint != "gone" || !errors.Is(err, adapters.ErrPermanent) {
		t.Fatalf("after disabling, e2 = %v, want a permanent error of endpoint gone", err)
	}
	if n := len(gone.all()); n != 1 {
		t.Errorf("disabled endpoint got %d requests, want 1", n)
	}
	if n := len(ok.all()); n != 2 {
		t.Errorf("healthy endpoint got %d requests, want 2", n)
	}
}

// With several endpoints failing, the result names each and stays
// retryable while any failure is.
func TestSeveralEndpointsFail(t *testing.T) {
	s := newSecret(t)
	bad := newReceiver(t, [][]byte{s}, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusBadRequest) })
	busy := newReceiver(t, [][]byte{s}, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	p := mustNew(t, []webhook.Endpoint{endpointFor("bad", bad), endpointFor("busy", busy)}, loopback())
	err := p.Publish(context.Background(), []adapters.Message{msg("e", "t", "")})[0].Err
	var de *webhook.DeliveryError
	if !errors.As(err, &de) || len(de.Failed) != 2 {
		t.Fatalf("err = %v, want a DeliveryError with 2 failures", err)
	}
	if errors.Is(err, adapters.ErrPermanent) {
		t.Errorf("one endpoint may still accept: err must be transient: %v", err)
	}
	if !strings.Contains(err.Error(), `"bad"`) || !strings.Contains(err.Error(), `"busy"`) {
		t.Errorf("error should name both endpoints: %v", err)
	}
	if d, ok := webhook.RetryAfter(err); !ok || d != 30*time.Second {
		t.Errorf("RetryAfter = %s, %v; want 30s", d, ok)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	s := newSecret(t)
	target := newReceiver(t, [][]byte{s}, nil)
	redirector := newReceiver(t, [][]byte{s}, func(w http.ResponseWriter, r *http.Request, _ int) {
		http.Redirect(w, r, target.url(), http.StatusTemporaryRedirect)
	})
	p := mustNew(t, []webhook.Endpoint{endpointFor("r", redirector)}, loopback())
	err := p.Publish(context.Background(), []adapters.Message{msg("e", "t", "")})[0].Err
	if !errors.Is(err, webhook.ErrRejected) || !errors.Is(err, adapters.ErrPermanent) {
		t.Fatalf("err = %v, want permanent ErrRejected", err)
	}
	if n := len(target.all()); n != 0 {
		t.Errorf("redirect target received %d requests", n)
	}
}

// A huge response body is read only up to the cap.
func TestLargeResponseBody(t *testing.T) {
	rc := newReceiver(t, [][]byte{newSecret(t)}, func(w http.ResponseWriter, _ *http.Request, _ int) {
		chunk := []byte(strings.Repeat("y", 32<<10))
		for range 256 { // 8 MiB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	p := mustNew(t, []webhook.Endpoint{endpointFor("big", rc)}, loopback())
	if err := p.Publish(context.Background(), []adapters.Message{msg("e", "t", "")})[0].Err; err != nil {
		t.Fatal(err)
	}
}

func TestNewValidates(t *testing.T) {
	s := newSecret(t)
	good := webhook.Endpoint{Name: "a", URL: "https://hooks.example.com/x", Secrets: [][]byte{s}, Enabled: true}
	tests := map[string]func(e *webhook.Endpoint){
		"no name":          func(e *webhook.Endpoint) { e.Name = "" },
		"plain http":       func(e *webhook.Endpoint) { e.URL = "http://hooks.example.com/x" },
		"other scheme":     func(e *webhook.Endpoint) { e.URL = "ftp://hooks.example.com/x" },
		"credentials":      func(e *webhook.Endpoint) { e.URL = "https://u:p@hooks.example.com/x" },
		"no secret":        func(e *webhook.Endpoint) { e.Secrets = nil },
		"short secret":     func(e *webhook.Endpoint) { e.Secrets = [][]byte{[]byte("short")} },
		"bad glob":         func(e *webhook.Endpoint) { e.Types = []string{"io.[x"} },
		"reserved header":  func(e *webhook.Endpoint) { e.Headers = map[string]string{"webhook-signature": "x"} },
		"header injection": func(e *webhook.Endpoint) { e.Headers = map[string]string{"X-A": "a\r\nX-B: b"} },
	}
	for name, mutate := range tests {
		ep := good
		mutate(&ep)
		if _, err := webhook.New([]webhook.Endpoint{ep}); err == nil {
			t.Errorf("%s: New accepted %+v", name, ep)
		}
	}
	if _, err := webhook.New([]webhook.Endpoint{good, good}); err == nil {
		t.Error("duplicate names accepted")
	}
	p, err := webhook.New([]webhook.Endpoint{good})
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// An endpoint whose every delivery fails for WithDisableAfter is disabled
// with ErrFailing, and its later events fail permanently without a request;
// a single delivery in between restarts the clock.
func TestFailingEndpointIsDisabledAfterThePeriod(t *testing.T) {
	var mu sync.Mutex
	requests := map[string]int{}
	healthy := map[string]bool{"ok": true}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		mu.Lock()
		defer mu.Unlock()
		requests[name]++
		if !healthy[name] {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	s := newSecret(t)
	var eps []webhook.Endpoint
	for _, name := range []string{"down", "flappy", "ok"} {
		eps = append(eps, webhook.Endpoint{Name: name, URL: srv.URL + "/" + name, Secrets: [][]byte{s}, Enabled: true})
	}
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	var disabled []string
	p := mustNew(t, eps, loopback(), webhook.WithDisableAfter(time.Hour),
		webhook.WithClock(func() time.Time { return now }),
		webhook.WithOnDisabled(func(name string, reason error) {
			if !errors.Is(reason, webhook.ErrFailing) {
				t.Errorf("reason = %v, want ErrFailing", reason)
			}
			disabled = append(disabled, name)
		}))
	publish := func(at time.Duration, flappyUp bool) error {
		now = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC).Add(at)
		mu.Lock()
		healthy["flappy"] = flappyUp
		mu.Unlock()
		return p.Publish(context.Background(), []adapters.Message{msg("e-"+at.String(), "t", "")})[0].Err
	}
	_ = publish(0, false)
	_ = publish(30*time.Minute, true) // flappy delivers: its clock restarts
	_ = publish(59*time.Minute, false)
	if len(disabled) != 0 {
		t.Fatalf("disabled %v before an hour of failures", disabled)
	}
	_ = publish(61*time.Minute, false)
	if len(disabled) != 1 || disabled[0] != "down" {
		t.Fatalf("disabled = %v, want [down]: flappy's run began at 59m", disabled)
	}
	before := requests["down"]
	err := publish(62*time.Minute, true)
	if !errors.Is(err, webhook.ErrFailing) || !errors.Is(err, adapters.ErrPermanent) {
		t.Fatalf("after disabling: %v, want a permanent ErrFailing", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if requests["down"] != before {
		t.Errorf("the disabled endpoint got %d more requests", requests["down"]-before)
	}
	if requests["ok"] != 5 {
		t.Errorf("ok got %d requests, want every one of 5", requests["ok"])
	}
}
