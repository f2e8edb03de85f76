package console_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/console"
	"github.com/heraldhq/herald/internal/redact"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/subscriptions"
)

const token = "console-test-token-0123456789"

// fixture is a console over real stores of a migrated database, served by
// a real server on 127.0.0.1.
type fixture struct {
	srv   *httptest.Server
	store *outbox.Store
	subs  *subscriptions.Store
	db    testdb.DB
}

func newFixture(t *testing.T, dialect string, readOnly bool, secrets *redact.Secrets) *fixture {
	t.Helper()
	db := testdb.Migrated(t, dialect)
	store, err := outbox.NewStore(db.Gorm)
	if err != nil {
		t.Fatal(err)
	}
	subs := subscriptions.NewStore(db.Gorm, store, subscriptions.WithPlaintextSecrets())
	c, err := console.New(console.Config{Store: store, Endpoints: subs, AdminToken: token, ReadOnly: readOnly,
		Secrets: secrets, Logger: slog.New(slog.DiscardHandler),
		Destinations: []console.Destination{{Name: outbox.MainDestination, Adapter: "nats", Target: "nats://127.0.0.1:4222"}}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(console.Prefix+"/", c)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, store: store, subs: subs, db: db}
}

// deadLetter writes an event and makes its row a dead letter with reason.
// The relay does this in production; the test sets the state in SQL, as a
// relay's Record would, to keep the console tests free of a broker.
func (f *fixture) deadLetter(t *testing.T, typ string, data any, reason string) event.Event {
	t.Helper()
	ev, err := event.New(typ, "/test", data)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Write(context.Background(), f.db.Gorm, ev); err != nil {
		t.Fatal(err)
	}
	if err := f.db.Gorm.Exec(`UPDATE herald_outbox SET state = 'dead', attempts = 3, last_error = ? WHERE event_id = ?`, reason, ev.ID).Error; err != nil {
		t.Fatal(err)
	}
	return ev
}

// client returns a client that keeps cookies and does not follow redirects.
func client(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// response is what do read of an answer, its body already closed.
type response struct {
	StatusCode int
	Header     http.Header
	cookies    []*http.Cookie
}

func (r response) Cookies() []*http.Cookie { return r.cookies }

func do(t *testing.T, c *http.Client, method, u string, form url.Values) (response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return response{StatusCode: resp.StatusCode, Header: resp.Header, cookies: resp.Cookies()}, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs c in and returns the session's CSRF token.
func (f *fixture) signIn(t *testing.T, c *http.Client) string {
	t.Helper()
	resp, _ := do(t, c, http.MethodPost, f.srv.URL+"/console/sign-in", url.Values{"token": {token}, "next": {"/console/"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	_, body := do(t, c, http.MethodGet, f.srv.URL+"/console/", nil)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no CSRF token on the overview")
	}
	return m[1]
}

func TestSignInSessionAndCSRF(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			f := newFixture(t, dialect, false, nil)
			ev := f.deadLetter(t, "shop.order.created", map[string]int{"n": 1}, "rejected: 422")
			anon := client(t)

			resp, _ := do(t, anon, http.MethodGet, f.srv.URL+"/console/dead-letters", nil)
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/sign-in?next=") {
				t.Fatalf("GET without a session: %d %s, want a redirect to sign-in", resp.StatusCode, resp.Header.Get("Location"))
			}
			retry := url.Values{"selected": {"main|" + ev.ID}}
			if resp, _ := do(t, anon, http.MethodPost, f.srv.URL+"/console/dead-letters/retry", retry); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("POST without a session: %d, want 403", resp.StatusCode)
			}
			if resp, _ := do(t, anon, http.MethodPost, f.srv.URL+"/console/sign-in", url.Values{"token": {"wrong-token-0123456789"}}); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("wrong token: %d, want 401", resp.StatusCode)
			}

			c := client(t)
			resp, _ = do(t, c, http.MethodPost, f.srv.URL+"/console/sign-in", url.Values{"token": {token}})
			ck := resp.Cookies()
			if len(ck) != 1 || ck[0].Name != console.CookieName || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode ||
				ck[0].Path != "/console" || ck[0].Secure || strings.Contains(ck[0].Value, token) {
				t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/console, not Secure over plain HTTP, no token", ck)
			}
			csrf := f.signIn(t, c)

			if resp, _ := do(t, c, http.MethodPost, f.srv.URL+"/console/dead-letters/retry", retry); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("POST without the CSRF token: %d, want 403", resp.StatusCode)
			}
			bad := url.Values{"selected": {"main|" + ev.ID}, "csrf": {csrf + "x"}}
			if resp, _ := do(t, c, http.MethodPost, f.srv.URL+"/console/dead-letters/retry", bad); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("POST with a wrong CSRF token: %d, want 403", resp.StatusCode)
			}
			// A cross-site POST is refused even with the token.
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, f.srv.URL+"/console/dead-letters/retry",
				strings.NewReader(url.Values{"selected": {"main|" + ev.ID}, "csrf": {csrf}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			req.Header.Set("Origin", "https://evil.example")
			raw, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = raw.Body.Close()
			if raw.StatusCode != http.StatusForbidden {
				t.Fatalf("cross-site POST: %d, want 403", raw.StatusCode)
			}
			if row, _ := f.store.ForDestination("main").Get(context.Background(), ev.ID); row.State != outbox.StateDead {
				t.Fatalf("a refused POST changed the row: %s", row.State)
			}

			resp, _ = do(t, c, http.MethodPost, f.srv.URL+"/console/dead-letters/retry", url.Values{"selected": {"main|" + ev.ID}, "csrf": {csrf}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("retry: %d", resp.StatusCode)
			}
			if row, _ := f.store.ForDestination("main").Get(context.Background(), ev.ID); row.State != outbox.StatePending {
				t.Fatalf("retried row is %s, want pending", row.State)
			}
			_, body := do(t, c, http.MethodGet, f.srv.URL+"/console/dead-letters", nil)
			if !strings.Contains(body, "1 dead letter(s) retried") {
				t.Error("no message about the retry on the next page")
			}

			// The CSRF token also works as htmx sends it, in a header.
			req, _ = http.NewRequestWithContext(context.Background(), http.MethodPost, f.srv.URL+"/console/sign-out", nil)
			req.Header.Set(console.CSRFHeader, csrf)
			raw, err = c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = raw.Body.Close()
			if raw.StatusCode != http.StatusSeeOther {
				t.Fatalf("sign-out: %d", raw.StatusCode)
			}
			if resp, _ := do(t, c, http.MethodGet, f.srv.URL+"/console/", nil); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("after sign-out: %d, want a redirect to sign-in", resp.StatusCode)
			}
		})
	}
}

func TestReadOnlyRendersNoButtonsAndRefusesEveryChange(t *testing.T) {
	f := newFixture(t, "sqlite", true, nil)
	ev := f.deadLetter(t, "shop.order.created", map[string]int{"n": 1}, "rejected: 422")
	if _, err := f.subs.Add(context.Background(), subscriptions.Endpoint{Name: "shop", URL: "https://shop.example/hook", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	c := client(t)
	csrf := f.signIn(t, c)
	for _, path := range []string{"/console/", "/console/dead-letters", "/console/dead-letter?destination=main&id=" + ev.ID,
		"/console/endpoints", "/console/endpoints/shop", "/console/events?id=" + ev.ID} {
		resp, body := do(t, c, http.MethodGet, f.srv.URL+path, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		for _, button := range []string{"retry-one", "retry-all", "retry-selected", "ep-add", "ep-test", "ep-disable", "ep-rotate", "ep-save", "ep-remove"} {
			if strings.Contains(body, `id="`+button+`"`) {
				t.Errorf("%s shows %s in read-only mode", path, button)
			}
		}
		if !strings.Contains(body, "read-only") {
			t.Errorf("%s does not say it is read-only", path)
		}
	}
	for path, form := range map[string]url.Values{
		"/console/dead-letters/retry":     {"selected": {"main|" + ev.ID}},
		"/console/endpoints":              {"name": {"other"}, "url": {"https://other.example/"}},
		"/console/endpoints/shop/rotate":  {},
		"/console/endpoints/shop/disable": {},
		"/console/endpoints/shop/remove":  {"confirm": {"shop"}},
	} {
		form.Set("csrf", csrf)
		if resp, _ := do(t, c, http.MethodPost, f.srv.URL+path, form); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s in read-only mode: %d, want 403", path, resp.StatusCode)
		}
	}
	if row, _ := f.store.ForDestination("main").Get(context.Background(), ev.ID); row.State != outbox.StateDead {
		t.Fatalf("read-only console changed the row: %s", row.State)
	}
}

// Removing an endpoint takes its name typed out, and then discards its
// outbox rows with it, as the admin API's DELETE does.
func TestRemoveEndpointNeedsItsNameTyped(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "sqlite", false, nil)
	if _, err := f.subs.Add(ctx, subscriptions.Endpoint{Name: "shop", URL: "https://shop.example/hook", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	c := client(t)
	csrf := f.signIn(t, c)
	remove := func(confirm string) response {
		t.Helper()
		resp, _ := do(t, c, http.MethodPost, f.srv.URL+"/console/endpoints/shop/remove", url.Values{"csrf": {csrf}, "confirm": {confirm}})
		return resp
	}
	if resp := remove("sho"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("remove with a wrong name: %d", resp.StatusCode)
	}
	if _, err := f.subs.Get(ctx, "shop"); err != nil {
		t.Fatalf("removed without its name typed: %v", err)
	}
	if resp := remove("shop"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/endpoints" {
		t.Fatalf("remove: %d to %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, err := f.subs.Get(ctx, "shop"); !errors.Is(err, subscriptions.ErrNotFound) {
		t.Fatalf("after remove: %v, want not found", err)
	}
}

// The error filter is the outbox's: the page lists, and "retry all"
// retries, exactly the dead letters whose error contains the text.
func TestDeadLetterErrorFilter(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "sqlite", false, nil)
	gone := f.deadLetter(t, "shop.order.created", map[string]int{"n": 1}, "410 Gone")
	refused := f.deadLetter(t, "shop.order.created", map[string]int{"n": 2}, "connection refused")
	c := client(t)
	csrf := f.signIn(t, c)
	_, body := do(t, c, http.MethodGet, f.srv.URL+"/console/dead-letters?error=GONE", nil)
	if !strings.Contains(body, gone.ID) || strings.Contains(body, refused.ID) {
		t.Fatalf("filtered by error: want only %s listed", gone.ID)
	}
	resp, _ := do(t, c, http.MethodPost, f.srv.URL+"/console/dead-letters/retry", url.Values{"csrf": {csrf}, "all": {"1"}, "error": {"gone"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("retry all matching: %d", resp.StatusCode)
	}
	for id, want := range map[string]outbox.State{gone.ID: outbox.StatePending, refused.ID: outbox.StateDead} {
		if row, _ := f.store.ForDestination("main").Get(ctx, id); row.State != want {
			t.Errorf("%s is %s after retrying those that match \"gone\", want %s", id, row.State, want)
		}
	}
}

func TestPagesEscapeAndShowNoSecret(t *testing.T) {
	secrets := &redact.Secrets{}
	const brokerPassword = "broker-pa55word-xyz"
	secrets.Add(brokerPassword)
	f := newFixture(t, "sqlite", false, secrets)
	ev := f.deadLetter(t, "shop.order.created", map[string]string{"note": "<script>alert(1)</script>"},
		"<script>alert(2)</script> nats: authorization violation for user herald:"+brokerPassword)
	const urlToken, headerValue = "tok3n-in-the-url-abcdef", "header-secret-value-123"
	c := client(t)
	csrf := f.signIn(t, c)

	// Adding an endpoint shows its secret once, on the answer.
	resp, body := do(t, c, http.MethodPost, f.srv.URL+"/console/endpoints", url.Values{"csrf": {csrf}, "name": {"shop"},
		"url": {"https://shop.example/hook?token=" + urlToken}, "types": {"shop.order.*"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("add endpoint: %d %s", resp.StatusCode, body)
	}
	e, err := f.subs.Get(context.Background(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	secret := e.Secrets[0].Value
	if !shows(body, secret) {
		t.Fatal("the new secret is not on the page that answers its creation")
	}
	if strings.Contains(body, urlToken) {
		t.Error("the answer to the creation shows the URL's token")
	}
	headers := map[string]string{"X-Api-Key": headerValue}
	if _, _, err := f.subs.Update(context.Background(), "shop", subscriptions.Patch{Headers: &headers}); err != nil {
		t.Fatal(err)
	}
	resp, body = do(t, c, http.MethodPost, f.srv.URL+"/console/endpoints/shop/rotate", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("rotate: %d", resp.StatusCode)
	}
	e, _ = f.subs.Get(context.Background(), "shop")
	rotated := e.Secrets[0].Value
	if rotated == secret || !shows(body, rotated) {
		t.Fatalf("the rotated-in secret is not on the page that answers the rotation: %v %s", e.Secrets, body)
	}

	for _, path := range []string{"/console/", "/console/dead-letters", "/console/dead-letter?destination=main&id=" + ev.ID,
		"/console/endpoints", "/console/endpoints/shop", "/console/events?id=" + ev.ID} {
		resp, body := do(t, c, http.MethodGet, f.srv.URL+path, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		for what, s := range map[string]string{"first secret": secret, "rotated secret": rotated, "URL token": urlToken,
			"header value": headerValue, "broker password": brokerPassword, "admin token": token,
			"unescaped script": "<script>alert("} {
			if shows(body, s) {
				t.Errorf("%s shows the %s", path, what)
			}
		}
	}
	_, body = do(t, c, http.MethodGet, f.srv.URL+"/console/dead-letter?destination=main&id="+ev.ID, nil)
	// encoding/json escapes < in the payload already; the reason is text
	// as the relay stored it, which the template must escape.
	if !strings.Contains(body, `\u003cscript\u003ealert(1)`) {
		t.Error("the payload is not shown")
	}
	if !strings.Contains(body, "&lt;script&gt;alert(2)&lt;/script&gt;") {
		t.Error("the reason is not shown, escaped")
	}
	if !strings.Contains(body, "authorization violation for user herald:"+redact.Mask) {
		t.Error("the reason is not shown with its secret masked")
	}
}

// shows reports whether body holds s, as text or as html/template writes
// it (a secret's + becomes &#43;).
func shows(body, s string) bool {
	return strings.Contains(body, s) || strings.Contains(body, strings.ReplaceAll(s, "+", "&#43;"))
}

func TestNewValidatesConfig(t *testing.T) {
	db := testdb.Migrated(t, "sqlite")
	store, err := outbox.NewStore(db.Gorm)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]console.Config{
		"no store":          {AdminToken: token},
		"short token":       {Store: store, AdminToken: "short"},
		"negative interval": {Store: store, AdminToken: token, SampleEvery: -1},
		"duplicate names":   {Store: store, AdminToken: token, Destinations: []console.Destination{{Name: "main"}, {Name: "main"}}},
	} {
		if _, err := console.New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		} else if strings.Contains(err.Error(), "short") && name == "short token" && strings.Contains(err.Error(), "short\"") {
			t.Errorf("%s: the error quotes the token: %v", name, err)
		}
	}
}
