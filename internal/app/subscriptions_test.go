package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/testlog"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/subscriptions"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// receiver is a partner's endpoint: it answers with status() and records
// what arrived, checking every signature against the secrets it holds.
type receiver struct {
	status  atomic.Int32
	mu      sync.Mutex
	secrets [][]byte
	ids     []string
	bodies  map[string][][]byte // per event id, every body received
	headers []http.Header
	badSigs int
}

func newReceiver(status int) *receiver {
	r := &receiver{bodies: map[string][][]byte{}}
	r.status.Store(int32(status))
	return r
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	id := r.Header.Get(webhooks.HeaderID)
	rc.bodies[id] = append(rc.bodies[id], body)
	rc.headers = append(rc.headers, r.Header.Clone())
	if err := webhooks.Verify(rc.secrets, r.Header, body, time.Now(), time.Minute); err != nil {
		rc.badSigs++
	}
	status := int(rc.status.Load())
	if status/100 == 2 {
		rc.ids = append(rc.ids, id)
	}
	rc.mu.Unlock()
	w.WriteHeader(status)
}

func (rc *receiver) delivered() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.ids...)
}

// admin calls the admin API and decodes its JSON answer into out.
func admin(t *testing.T, a *app.App, token, method, path string, body any, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, "http://"+a.HTTPAddr+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, string(raw)
}

// An endpoint's whole life in a running Herald, without a restart: it is
// registered through the admin API and gets its events; it answers 410 Gone
// and is disabled, announced, and collects what it misses; it is enabled
// again and receives everything it missed, once, in order per key, signed
// with its secret; nowhere do the secret or a header value show up in the
// logs or the listing.
func TestStoredEndpointIsDisabledReenabledAndReplayedInOrder(t *testing.T) {
	ctx := context.Background()
	const token = "admin-token-0123456789"
	const headerValue = "gateway-key-do-not-log"
	rc := newReceiver(http.StatusNoContent)
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)

	cfg := testConfig(t)
	cfg.HTTP.Listen, cfg.HTTP.AdminToken = "127.0.0.1:0", token
	cfg.Subscriptions.AllowCIDRs = []string{"127.0.0.0/8"}
	cfg.Subscriptions.RefreshInterval = 100 * time.Millisecond
	cfg.Subscriptions.RetrySchedule = []time.Duration{50 * time.Millisecond}
	cfg.Log.Level = "debug"
	cfg.Relay.KeepDelivered = true // the announcement stays to be looked at
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	a, err := app.Open(ctx, cfg, app.Options{Migrate: true, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	run(t, a)

	var created struct {
		Secret string `json:"secret"`
	}
	if code, body := admin(t, a, token, http.MethodPost, "/v1/webhooks", map[string]any{
		"name": "partner", "url": srv.URL + "/hook", "types": []string{"io.herald.test.*"},
		"headers": map[string]string{"X-Api-Key": headerValue},
	}, &created); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	secret, err := webhooks.ParseSecret(created.Secret)
	if err != nil {
		t.Fatalf("the created secret: %v", err)
	}
	rc.mu.Lock()
	rc.secrets = [][]byte{secret}
	rc.mu.Unlock()
	// The admin API's change applies at once: the writers route to it.
	eventually(t, "the routing to know the endpoint", func() bool {
		return len(a.Routing.Destinations("io.herald.test.port.updated")) == 1
	})

	var want []event.Event // every event the partner must get
	write := func(n int) {
		t.Helper()
		for i := range n {
			ev, err := event.New("io.herald.test.port.updated", "/test", map[string]int{"n": len(want)}, event.WithPartitionKey([]string{"A", "B"}[i%2]))
			if err != nil {
				t.Fatal(err)
			}
			if err := outbox.Write(ctx, a.DB, ev); err != nil {
				t.Fatal(err)
			}
			want = append(want, ev)
		}
		a.Notify()
	}
	write(4)
	eventually(t, "the first events to arrive", func() bool { return len(rc.delivered()) == 4 })

	// Gone: the endpoint is disabled in the database, and announced.
	rc.status.Store(http.StatusGone)
	write(2)
	eventually(t, "the endpoint to be disabled", func() bool {
		e, err := a.Subscriptions.Get(ctx, "partner")
		return err == nil && !e.Enabled && strings.Contains(e.DisabledReason, "410")
	})
	eventually(t, "the announcement on the main destination", func() bool {
		rows, err := a.Store.ListRows(ctx, outbox.Filter{Type: webhook.EndpointDisabledType})
		return err == nil && len(rows) == 1 && rows[0].Destination == outbox.MainDestination
	})
	// Disabled: events keep coming into the outbox for it. (Those the
	// relay still held when the endpoint was disabled are dead letters,
	// the rest wait.)
	write(4)
	dest := subscriptions.Destination("partner")
	var dead int
	eventually(t, "the relay to stop and the events to wait", func() bool {
		st, err := a.Store.TypeStats(ctx)
		if err != nil {
			return false
		}
		for _, s := range st {
			if s.Destination == dest {
				dead = s.Dead
				return s.InFlight == 0 && s.Pending+s.Dead == 6 && s.Pending > 0
			}
		}
		return false
	})
	time.Sleep(5 * cfg.Subscriptions.RefreshInterval)
	if n := len(rc.delivered()); n != 4 {
		t.Fatalf("the disabled endpoint got %d events; want only the 4 before", n)
	}

	// Back, and enabled: the dead letters are replayed first.
	rc.status.Store(http.StatusOK)
	var patched struct {
		Replayed int `json:"replayed"`
	}
	if code, body := admin(t, a, token, http.MethodPatch, "/v1/webhooks/partner", map[string]any{"enabled": true}, &patched); code != http.StatusOK || patched.Replayed != dead {
		t.Fatalf("enable: %d %s; want the %d dead letters replayed", code, body, dead)
	}
	eventually(t, "the partner to catch up", func() bool { return len(rc.delivered()) == len(want) })

	got := rc.delivered()
	pos := map[string]int{}
	for i, id := range got {
		if _, dup := pos[id]; dup {
			t.Errorf("event %s delivered twice", id)
		}
		pos[id] = i
	}
	last := map[string]int{}
	for _, ev := range want {
		p, ok := pos[ev.ID]
		if !ok {
			t.Errorf("event %s never delivered", ev.ID)
			continue
		}
		if prev, seen := last[ev.PartitionKey]; seen && p < prev {
			t.Errorf("key %s: event %s arrived before an earlier one", ev.PartitionKey, ev.ID)
		}
		last[ev.PartitionKey] = p
	}
	rc.mu.Lock()
	badSigs, headers := rc.badSigs, rc.headers
	rc.mu.Unlock()
	if badSigs != 0 {
		t.Errorf("%d requests failed signature verification", badSigs)
	}
	if h := headers[len(headers)-1].Get("X-Api-Key"); h != headerValue {
		t.Errorf("X-Api-Key = %q; want the endpoint's header", h)
	}

	// The delivery status is recorded, and nothing secret is shown.
	eventually(t, "the status to be recorded", func() bool {
		e, err := a.Subscriptions.Get(ctx, "partner")
		return err == nil && e.Status.LastStatusCode == http.StatusOK && e.Status.FailingSince.IsZero() &&
			e.Status.Failures >= 1 && e.Status.Attempts >= int64(len(want))
	})
	_, listing := admin(t, a, token, http.MethodGet, "/v1/webhooks", nil, nil)
	_, metrics := get(t, "http://"+a.HTTPAddr+"/metrics")
	for what, text := range map[string]string{"the listing": listing, "the logs": logs.String(), "/metrics": metrics} {
		for _, s := range []string{created.Secret, strings.TrimPrefix(created.Secret, webhooks.SecretPrefix), headerValue} {
			if strings.Contains(text, s) {
				t.Errorf("%s show a secret: %q", what, s)
			}
		}
	}
	if !strings.Contains(metrics, fmt.Sprintf(`herald_events_published_total{destination=%q,type="io.herald.test.port.updated"} %d`, dest, len(want))) {
		t.Errorf("/metrics lacks the endpoint's deliveries")
	}
}

// A running Herald follows changes made elsewhere (the CLI, another
// replica's admin API) within subscriptions.refresh_interval: a new URL
// and a rotated secret apply without a restart, and during the rotation's
// grace the old secret still signs.
func TestStoredEndpointChangesApplyWithoutRestart(t *testing.T) {
	ctx := context.Background()
	first, second := newReceiver(http.StatusNoContent), newReceiver(http.StatusNoContent)
	srv1, srv2 := httptest.NewServer(first), httptest.NewServer(second)
	t.Cleanup(srv1.Close)
	t.Cleanup(srv2.Close)

	cfg := testConfig(t)
	cfg.Subscriptions.AllowCIDRs = []string{"127.0.0.0/8"}
	cfg.Subscriptions.RefreshInterval = 50 * time.Millisecond
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, a)
	// Another process: its own store over the same database.
	other, err := app.SubscriptionStore(cfg, a.DB)
	if err != nil {
		t.Fatal(err)
	}
	e, err := other.Add(ctx, subscriptions.Endpoint{Name: "partner", URL: srv1.URL, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	oldSecret, _ := webhooks.ParseSecret(e.Secrets[0].Value)
	first.secrets = [][]byte{oldSecret}

	send := func() string {
		t.Helper()
		ev, _ := event.New("io.herald.test.port.updated", "/test", map[string]int{"n": 1})
		eventually(t, "the routing to know the endpoint", func() bool { return len(a.Routing.Destinations(ev.Type)) == 1 })
		if err := outbox.Write(ctx, a.DB, ev); err != nil {
			t.Fatal(err)
		}
		a.Notify()
		return ev.ID
	}
	id := send()
	eventually(t, "the first receiver to get it", func() bool { return len(first.delivered()) == 1 && first.delivered()[0] == id })

	newURL := srv2.URL + "/v2"
	if _, _, err := other.Update(ctx, "partner", subscriptions.Patch{URL: &newURL}); err != nil {
		t.Fatal(err)
	}
	_, fresh, err := other.RotateSecret(ctx, "partner", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newSecret, _ := webhooks.ParseSecret(fresh.Value)
	// The second receiver checks each secret alone: both must sign.
	second.secrets = [][]byte{newSecret}
	time.Sleep(3 * cfg.Subscriptions.RefreshInterval)
	id = send()
	eventually(t, "the second receiver to get it", func() bool { return len(second.delivered()) == 1 && second.delivered()[0] == id })
	second.mu.Lock()
	h, body, bad := second.headers[0], second.bodies[id][0], second.badSigs
	second.mu.Unlock()
	if bad != 0 {
		t.Errorf("the new secret did not verify")
	}
	if err := webhooks.Verify([][]byte{oldSecret}, h, body, time.Now(), time.Minute); err != nil {
		t.Errorf("during the grace the old secret must still sign: %v", err)
	}
	if n := len(strings.Fields(h.Get(webhooks.HeaderSignature))); n != 2 {
		t.Errorf("webhook-signature holds %d signatures; want 2 during the rotation", n)
	}
	if len(first.delivered()) != 1 {
		t.Errorf("the old URL got %d events; want only the one before the change", len(first.delivered()))
	}
}
