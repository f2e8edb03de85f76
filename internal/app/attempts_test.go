package app_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/subscriptions"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// A running Herald logs every destination's attempts, and GET /v1/attempts
// shows them to the admin token only: main's delivery, and a partner's
// refusal with its HTTP status and its answer, in which a token of the
// partner's URL the receiver echoed is redacted.
func TestDeliveryLogThroughTheAdminAPI(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			var b [8]byte
			_, _ = rand.Read(b[:])
			token := "hookTok" + hex.EncodeToString(b[:])
			const adminToken = "admin-token-0123456789"
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusUnprocessableEntity)
				_, _ = io.WriteString(w, "schema mismatch; you called "+r.URL.String())
			}))
			t.Cleanup(srv.Close)
			encoded, _ := webhooks.NewSecret()
			hook := config.Default().Webhook
			hook.URL, hook.Secrets, hook.AllowCIDRs = srv.URL+"/hook?token="+token, []string{encoded}, []string{"127.0.0.0/8"}

			cfg := testConfig(t)
			if d != "sqlite" {
				cfg.Database.Driver, cfg.Database.DSN = d, testdb.New(t, d).DSN
			}
			cfg.Destinations = []config.Destination{{Name: "partner", Adapter: "webhook", Webhook: hook}}
			cfg.HTTP = config.HTTP{Listen: "127.0.0.1:0", AdminToken: adminToken}
			a, err := open(t, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := event.New("io.herald.test.port.updated", "/test", map[string]int{"n": 1}, event.WithPartitionKey("p-1"))
			if err != nil {
				t.Fatal(err)
			}
			if err := outbox.Write(ctx, a.DB, ev); err != nil {
				t.Fatal(err)
			}
			run(t, a)
			eventually(t, "main to deliver and the partner to refuse", func() bool {
				st, err := a.Store.Stats(ctx)
				return err == nil && st.Pending == 0 && st.Dead == 1
			})

			base := "http://" + a.HTTPAddr + app.AttemptsPath
			page := getAttempts(t, base+"?event="+url.QueryEscape(ev.ID), adminToken, http.StatusOK)
			byDest := map[string]app.AttemptJSON{}
			for _, at := range page.Attempts {
				byDest[at.Destination] = at
			}
			if len(page.Attempts) != 2 || page.NextBefore != nil {
				t.Fatalf("attempts of the event = %+v, want one for main and one for the partner, one page", page)
			}
			if m := byDest[outbox.MainDestination]; m.Outcome != outbox.AttemptDelivered || m.Attempt != 1 || m.Status != nil ||
				m.Answer != nil || m.Type != ev.Type || m.At.IsZero() {
				t.Errorf("main's attempt = %+v, want delivered, attempt 1, no status and no answer", m)
			}
			p := byDest["partner"]
			if p.Outcome != outbox.AttemptDead || p.Attempt != 1 || p.Status == nil || *p.Status != http.StatusUnprocessableEntity {
				t.Errorf("partner's attempt = %+v, want dead, attempt 1, status 422", p)
			}
			if p.Answer == nil || strings.Contains(*p.Answer, token) || !strings.Contains(*p.Answer, "schema mismatch") ||
				!strings.Contains(*p.Answer, "token=xxxxx") {
				t.Errorf("partner's answer = %v, want the receiver's words with the URL's token masked", p.Answer)
			}
			// Stored redacted, not only shown so.
			var stored string
			if err := a.DB.Raw(`SELECT answer FROM herald_delivery_attempts WHERE destination = 'partner'`).Scan(&stored).Error; err != nil ||
				strings.Contains(stored, token) {
				t.Errorf("the stored answer %q (%v) holds the token", stored, err)
			}

			failed := getAttempts(t, base+"?destination=partner&failed=true&since=1h&limit=10", adminToken, http.StatusOK)
			if len(failed.Attempts) != 1 || failed.Attempts[0].ID != p.ID {
				t.Errorf("the partner's failed attempts = %+v, want its one", failed.Attempts)
			}
			if got := getAttempts(t, base+"?destination=main&failed=true", adminToken, http.StatusOK); len(got.Attempts) != 0 {
				t.Errorf("main's failed attempts = %+v, want none", got.Attempts)
			}
			paged := getAttempts(t, base+"?limit=1", adminToken, http.StatusOK)
			if len(paged.Attempts) != 1 || paged.NextBefore == nil || *paged.NextBefore != paged.Attempts[0].ID {
				t.Errorf("a page of 1 = %+v, want one attempt and next_before its id", paged)
			}
		})
	}
}

// The API refuses a request without the token, a bad parameter (naming
// it) and a method it does not serve.
func TestAttemptsAPIRefusals(t *testing.T) {
	const adminToken = "admin-token-0123456789"
	cfg := testConfig(t)
	cfg.HTTP = config.HTTP{Listen: "127.0.0.1:0", AdminToken: adminToken}
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, a)
	base := "http://" + a.HTTPAddr + app.AttemptsPath
	for _, tc := range []struct {
		name, query, token string
		status             int
		field              string
	}{
		{"no token", "", "", http.StatusUnauthorized, "Authorization"},
		{"wrong token", "", "wrong-token-0123456789", http.StatusUnauthorized, "Authorization"},
		{"bad limit", "?limit=0", adminToken, http.StatusBadRequest, "limit"},
		{"bad since", "?since=yesterday", adminToken, http.StatusBadRequest, "since"},
		{"bad failed", "?failed=maybe", adminToken, http.StatusBadRequest, "failed"},
		{"unknown parameter", "?evnt=x", adminToken, http.StatusBadRequest, "evnt"},
		{"empty log", "?event=nope", adminToken, http.StatusOK, ""},
	} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, base+tc.query, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		code, body := do(t, req)
		var e struct{ Error, Field string }
		_ = json.Unmarshal([]byte(body), &e)
		if code != tc.status || e.Field != tc.field {
			t.Errorf("%s: %d %s, want %d with field %q", tc.name, code, body, tc.status, tc.field)
		}
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodDelete, base, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if code, body := do(t, req); code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d %s, want 405", code, body)
	}
}

type attemptsPage struct {
	Attempts   []app.AttemptJSON `json:"attempts"`
	NextBefore *int64            `json:"next_before"`
}

func getAttempts(t *testing.T, u, token string, want int) attemptsPage {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	code, body := do(t, req)
	if code != want {
		t.Fatalf("GET %s: %d %s, want %d", u, code, body, want)
	}
	var page attemptsPage
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatalf("GET %s: %v in %s", u, err, body)
	}
	return page
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"90m", now.Add(-90 * time.Minute), true},
		{"2026-01-01T00:00:00Z", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"-1h", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	} {
		got, err := app.ParseSince(tc.in, now)
		if (err == nil) != tc.ok || !got.Equal(tc.want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// A stored webhook endpoint's relay logs its attempts too, and what its
// receiver echoes of the request (here the endpoint's own gateway header,
// which no config knows) is redacted in the log.
func TestDeliveryLogOfAStoredEndpointRedactsItsHeaders(t *testing.T) {
	ctx := context.Background()
	const headerValue = "gateway-key-0123456789abcdef"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "crashed handling key "+r.Header.Get("X-Api-Key"))
	}))
	t.Cleanup(srv.Close)
	cfg := testConfig(t)
	cfg.Subscriptions.AllowCIDRs = []string{"127.0.0.0/8"}
	cfg.Subscriptions.RefreshInterval = 50 * time.Millisecond
	cfg.Subscriptions.RetrySchedule = []time.Duration{time.Hour}
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := webhooks.NewSecret()
	if _, err := a.Subscriptions.Add(ctx, subscriptions.Endpoint{Name: "crm", URL: srv.URL + "/hook", Enabled: true,
		Headers: map[string]string{"X-Api-Key": headerValue}, Secrets: []subscriptions.Secret{{Value: secret}}}); err != nil {
		t.Fatal(err)
	}
	run(t, a)
	eventually(t, "the routing to know the endpoint", func() bool {
		return len(a.Routing.Destinations("io.herald.test.port.updated")) == 1
	})
	ev, _ := event.New("io.herald.test.port.updated", "/test", map[string]int{"n": 1}, event.WithPartitionKey("p-1"))
	if err := outbox.Write(ctx, a.DB, ev); err != nil {
		t.Fatal(err)
	}
	var got []outbox.Attempt
	eventually(t, "the endpoint's failed attempt to be logged", func() bool {
		got, err = a.Store.Attempts(ctx, outbox.AttemptFilter{Destination: "webhook:crm"})
		return err == nil && len(got) == 1
	})
	// A first 500 with nothing ever delivered may be the endpoint's fault as
	// a whole (unavailable) or the event's (failed): either way not delivered.
	if a := got[0]; a.Outcome == outbox.AttemptDelivered || a.Status != http.StatusInternalServerError || a.EventID != ev.ID ||
		strings.Contains(a.Answer, headerValue) || !strings.Contains(a.Answer, "crashed handling key xxxxx") {
		t.Errorf("the endpoint's attempt = %+v, want not delivered, 500, the header value masked", a)
	}
}
