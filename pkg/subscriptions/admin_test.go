package subscriptions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/internal/testlog"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/subscriptions"
)

// Every helper here starts with "admin": other test files of the package
// are written alongside this one.

const (
	adminToken = "admin-token-for-tests-0123456789"
	// adminGivenSecret is a secret a request supplies, so a test can look
	// for its value in responses and logs.
	adminGivenSecret = "whsec_YWRtaW4tYXBpLXRlc3Qtc2VjcmV0LXZhbHVlLTAx"
	// adminHeaderValue and adminQueryToken are as secret as a secret.
	adminHeaderValue = "gateway-key-a1b2c3d4e5"
	adminQueryToken  = "query-token-f6e5d4c3b2"
)

// adminLocal lets endpoints on 127.0.0.1 be stored and delivered to over
// http, as the test receivers are.
var adminLocal = webhook.WithAllowCIDRs("127.0.0.1/32")

type adminEnv struct {
	db      testdb.DB
	srv     *httptest.Server
	changes atomic.Int32
	log     *testlog.Buffer
}

// newAdminEnv serves the admin API over a fresh SQLite outbox, with a real
// tester unless opts say otherwise.
func newAdminEnv(t *testing.T, opts ...subscriptions.AdminOption) *adminEnv {
	t.Helper()
	return newAdminEnvGuarded(t, []webhook.Option{adminLocal}, opts...)
}

// newAdminEnvGuarded is newAdminEnv whose store refuses what a publisher
// built with guard would refuse.
func newAdminEnvGuarded(t *testing.T, guard []webhook.Option, opts ...subscriptions.AdminOption) *adminEnv {
	t.Helper()
	env := &adminEnv{db: testdb.Migrated(t, "sqlite"), log: &testlog.Buffer{}}
	ob, err := outbox.NewStore(env.db.Gorm)
	if err != nil {
		t.Fatal(err)
	}
	store := subscriptions.NewStore(env.db.Gorm, ob, subscriptions.WithKeyring(testKeyring(t, keyOne)),
		subscriptions.WithValidator(subscriptions.Validator(guard...)))
	base := []subscriptions.AdminOption{
		subscriptions.WithTester(func(ctx context.Context, e subscriptions.Endpoint) (subscriptions.TestResult, error) {
			// The test publisher warns of a 410 as if it disabled the endpoint.
			return subscriptions.Test(ctx, e, adminLocal, webhook.WithLogger(slog.New(slog.DiscardHandler)))
		}),
		subscriptions.WithOnChange(func() { env.changes.Add(1) }),
		subscriptions.WithAdminLogger(slog.New(slog.NewTextHandler(env.log, &slog.HandlerOptions{Level: slog.LevelDebug}))),
	}
	h, err := subscriptions.NewAdminHandler(store, adminToken, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	env.srv = httptest.NewServer(h)
	t.Cleanup(env.srv.Close)
	t.Cleanup(func() {
		// Whatever a test did, the log never shows these.
		logs := env.log.String()
		for _, never := range []string{adminToken, adminGivenSecret, adminHeaderValue, adminQueryToken} {
			if strings.Contains(logs, never) {
				t.Errorf("log contains %q:\n%s", never, logs)
			}
		}
	})
	return env
}

type adminResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r adminResponse) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// call sends body (raw JSON, "" for none) with the right token.
func (env *adminEnv) call(t *testing.T, method, path, body string) adminResponse {
	t.Helper()
	return env.callAs(t, "Bearer "+adminToken, method, path, body)
}

func (env *adminEnv) callAs(t *testing.T, authorization, method, path, body string) adminResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, env.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := env.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return adminResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

func (r adminResponse) want(t *testing.T, status int) adminResponse {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// wantError checks an error answer and the field it names.
func (r adminResponse) wantError(t *testing.T, status int, field string) {
	t.Helper()
	r.want(t, status)
	var e struct {
		Error string `json:"error"`
		Field string `json:"field"`
	}
	r.decode(t, &e)
	if e.Error == "" || e.Field != field {
		t.Errorf("error %s: want a message and field %q", r.body, field)
	}
}

type adminSecretJSON struct {
	Fingerprint string    `json:"fingerprint"`
	ExpiresAt   time.Time `json:"expires_at"`
}

type adminEndpointJSON struct {
	Name           string            `json:"name"`
	URL            string            `json:"url"`
	Types          []string          `json:"types"`
	Headers        map[string]string `json:"headers"`
	Secrets        []adminSecretJSON `json:"secrets"`
	Enabled        bool              `json:"enabled"`
	DisabledReason string            `json:"disabled_reason"`
	Revision       int64             `json:"revision"`
	Destination    string            `json:"destination"`
}

type adminEndpointResponse struct {
	Endpoint adminEndpointJSON `json:"endpoint"`
	Secret   string            `json:"secret"`
	Replayed int               `json:"replayed"`
}

// adminReceiver is a webhook receiver answering status.
func adminReceiver(t *testing.T, status int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Webhook-Signature") == "" {
			t.Errorf("receiver: request without a signature")
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func adminAdd(t *testing.T, env *adminEnv, name, url string) adminEndpointResponse {
	t.Helper()
	var out adminEndpointResponse
	env.call(t, http.MethodPost, subscriptions.AdminPrefix, fmt.Sprintf(`{"name": %q, "url": %q}`, name, url)).
		want(t, http.StatusCreated).decode(t, &out)
	return out
}

// adminDeadLetter puts one dead row in the outbox for endpoint name.
func adminDeadLetter(t *testing.T, env *adminEnv, name string) {
	t.Helper()
	ev, err := event.New("io.herald.test.order.created", "/test", map[string]string{"id": "o1"})
	if err != nil {
		t.Fatal(err)
	}
	dest := subscriptions.Destination(name)
	if err := outbox.Write(t.Context(), env.db.Gorm, ev); err != nil {
		t.Fatal(err)
	}
	store, _ := outbox.NewStore(env.db.Gorm)
	if _, err := store.Route(t.Context(), outbox.AllBuckets(), outbox.Routes{{Destination: dest}}, 10); err != nil {
		t.Fatal(err)
	}
	if err := env.db.Gorm.Exec(`UPDATE herald_outbox SET state = 'dead' WHERE destination = ?`, dest).Error; err != nil {
		t.Fatal(err)
	}
}

func adminStates(t *testing.T, env *adminEnv, name string) []string {
	t.Helper()
	var states []string
	if err := env.db.Gorm.Raw(`SELECT state FROM herald_outbox WHERE destination = ? ORDER BY seq`,
		subscriptions.Destination(name)).Scan(&states).Error; err != nil {
		t.Fatal(err)
	}
	return states
}

func TestNewAdminHandlerRefuses(t *testing.T) {
	db := testdb.Migrated(t, "sqlite")
	ob, err := outbox.NewStore(db.Gorm)
	if err != nil {
		t.Fatal(err)
	}
	store := subscriptions.NewStore(db.Gorm, ob)
	for _, tc := range []struct {
		name  string
		store *subscriptions.Store
		token string
		opts  []subscriptions.AdminOption
	}{
		{"empty token", store, "", nil},
		{"15 characters", store, "short-token-015", nil},
		{"surrounded by space", store, " token-with-a-space-around ", nil},
		{"negative grace", store, adminToken, []subscriptions.AdminOption{subscriptions.WithSecretGrace(-time.Hour)}},
		{"no store", nil, adminToken, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := subscriptions.NewAdminHandler(tc.store, tc.token, tc.opts...)
			if err == nil || h != nil {
				t.Fatalf("got %v, %v; want an error", h, err)
			}
			if strings.TrimSpace(tc.token) != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.token)) {
				t.Errorf("error %q shows the token", err)
			}
		})
	}
	if _, err := subscriptions.NewAdminHandler(store, "exactly-16-chars"); err != nil {
		t.Errorf("16 characters: %v", err)
	}
}

func TestAdminAuth(t *testing.T) {
	env := newAdminEnv(t)
	adminAdd(t, env, "orders", "https://receiver.example/hook")
	for _, tc := range []struct {
		name, authorization string
	}{
		{"no header", ""},
		{"wrong token", "Bearer " + strings.Repeat("x", len(adminToken))},
		{"token with a suffix", "Bearer " + adminToken + "x"},
		{"token prefix", "Bearer " + adminToken[:len(adminToken)-1]},
		{"basic scheme", "Basic " + adminToken},
		{"bare token", adminToken},
		{"empty bearer", "Bearer "},
	} {
		for _, route := range []struct{ method, path, body string }{
			{http.MethodGet, subscriptions.AdminPrefix, ""},
			{http.MethodGet, subscriptions.AdminPrefix + "/orders", ""},
			{http.MethodPost, subscriptions.AdminPrefix, `{"name": "other", "url": "https://receiver.example/"}`},
			{http.MethodDelete, subscriptions.AdminPrefix + "/orders", ""},
			{http.MethodGet, "/v1/elsewhere", ""},
		} {
			t.Run(tc.name+"/"+route.method+" "+route.path, func(t *testing.T) {
				r := env.callAs(t, tc.authorization, route.method, route.path, route.body)
				r.wantError(t, http.StatusUnauthorized, "Authorization")
				if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate %q, want Bearer", got)
				}
				if bytes.Contains(r.body, []byte(adminToken[:12])) {
					t.Errorf("body shows the token: %s", r.body)
				}
			})
		}
	}
	// Nothing above got through.
	var list struct{ Endpoints []adminEndpointJSON }
	env.callAs(t, "bearer "+adminToken, http.MethodGet, subscriptions.AdminPrefix, "").want(t, http.StatusOK).decode(t, &list)
	if len(list.Endpoints) != 1 || list.Endpoints[0].Name != "orders" {
		t.Errorf("endpoints %+v, want orders alone", list.Endpoints)
	}
	if n := env.changes.Load(); n != 1 {
		t.Errorf("OnChange called %d times, want 1", n)
	}
}

func TestAdminAddShowsSecretOnce(t *testing.T) {
	env := newAdminEnv(t)
	never := []string{adminHeaderValue, adminQueryToken}

	created := env.call(t, http.MethodPost, subscriptions.AdminPrefix, fmt.Sprintf(`{"name": "orders",
		"url": "https://receiver.example/hook?token=%s", "types": ["io.herald.test.order.*"],
		"headers": {"X-Api-Key": %q}}`, adminQueryToken, adminHeaderValue)).want(t, http.StatusCreated)
	var out adminEndpointResponse
	created.decode(t, &out)
	secret := out.Secret
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q, want a generated whsec_ secret", secret)
	}
	if cc := created.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	e := out.Endpoint
	if e.Name != "orders" || e.Destination != "webhook:orders" || !e.Enabled || e.Revision != 1 || len(e.Types) != 1 {
		t.Errorf("endpoint %+v", e)
	}
	if e.URL != "https://receiver.example/hook?token=xxxxx" || e.Headers["X-Api-Key"] != "(redacted)" {
		t.Errorf("endpoint not redacted: url %q, headers %v", e.URL, e.Headers)
	}
	if len(e.Secrets) != 1 || e.Secrets[0].Fingerprint != (subscriptions.Secret{Value: secret}).Fingerprint() {
		t.Errorf("secrets %+v, want the fingerprint of the one returned", e.Secrets)
	}
	for _, v := range never {
		if bytes.Contains(created.body, []byte(v)) {
			t.Errorf("create response shows %q: %s", v, created.body)
		}
	}

	given := adminEndpointResponse{}
	env.call(t, http.MethodPost, subscriptions.AdminPrefix, fmt.Sprintf(`{"name": "given", "url": "https://receiver.example/",
		"secret": %q, "enabled": false}`, adminGivenSecret)).want(t, http.StatusCreated).decode(t, &given)
	if given.Secret != adminGivenSecret || given.Endpoint.Enabled {
		t.Errorf("secret %q enabled %v, want the given secret and disabled", given.Secret, given.Endpoint.Enabled)
	}

	never = append(never, secret, adminGivenSecret)
	for _, path := range []string{subscriptions.AdminPrefix, subscriptions.AdminPrefix + "/orders", subscriptions.AdminPrefix + "/given"} {
		r := env.call(t, http.MethodGet, path, "").want(t, http.StatusOK)
		for _, v := range never {
			if bytes.Contains(r.body, []byte(v)) {
				t.Errorf("GET %s shows %q: %s", path, v, r.body)
			}
		}
		if !bytes.Contains(r.body, []byte(`"destination":"webhook:orders"`)) && !strings.HasSuffix(path, "given") {
			t.Errorf("GET %s: no destination: %s", path, r.body)
		}
	}
	var list struct{ Endpoints []adminEndpointJSON }
	env.call(t, http.MethodGet, subscriptions.AdminPrefix, "").decode(t, &list)
	if len(list.Endpoints) != 2 || list.Endpoints[0].Name != "given" || list.Endpoints[1].Name != "orders" {
		t.Errorf("list %+v, want given and orders", list.Endpoints)
	}
}

// TestAdminEmptyLists checks that "none" reads the same from every route:
// [] rather than null.
func TestAdminEmptyLists(t *testing.T) {
	env := newAdminEnv(t)
	r := env.call(t, http.MethodGet, subscriptions.AdminPrefix, "").want(t, http.StatusOK)
	if got := strings.TrimSpace(string(r.body)); got != `{"endpoints":[]}` {
		t.Errorf("body %s, want an empty list", got)
	}
	created := env.call(t, http.MethodPost, subscriptions.AdminPrefix, `{"name": "all", "url": "https://receiver.example/"}`).
		want(t, http.StatusCreated)
	read := env.call(t, http.MethodGet, subscriptions.AdminPrefix+"/all", "").want(t, http.StatusOK)
	for _, r := range []adminResponse{created, read} {
		if !bytes.Contains(r.body, []byte(`"types":[]`)) {
			t.Errorf("types of an endpoint for every event: %s", r.body)
		}
	}
}

func TestAdminAddInvalid(t *testing.T) {
	env := newAdminEnv(t)
	adminAdd(t, env, "taken", "https://receiver.example/")
	for _, tc := range []struct {
		name   string
		body   string
		status int
		field  string
	}{
		{"duplicate", `{"name": "taken", "url": "https://receiver.example/"}`, http.StatusConflict, ""},
		{"bad name", `{"name": "Bad Name", "url": "https://receiver.example/"}`, http.StatusBadRequest, "name"},
		{"no name", `{"url": "https://receiver.example/"}`, http.StatusBadRequest, "name"},
		{"no url", `{"name": "a"}`, http.StatusBadRequest, "url"},
		{"ftp url", `{"name": "a", "url": "ftp://receiver.example/"}`, http.StatusBadRequest, "url"},
		{"http to a host not allowlisted", `{"name": "a", "url": "http://receiver.example/"}`, http.StatusBadRequest, "url"},
		{"bad type glob", `{"name": "a", "url": "https://receiver.example/", "types": ["io.herald.[x"]}`, http.StatusBadRequest, "types"},
		{"empty type glob", `{"name": "a", "url": "https://receiver.example/", "types": [""]}`, http.StatusBadRequest, "types"},
		{"reserved header", `{"name": "a", "url": "https://receiver.example/", "headers": {"Webhook-Signature": "x"}}`, http.StatusBadRequest, "headers"},
		{"bad secret", `{"name": "a", "url": "https://receiver.example/", "secret": "not-a-secret"}`, http.StatusBadRequest, "secret"},
		{"unknown field", `{"name": "a", "url": "https://receiver.example/", "colour": "red"}`, http.StatusBadRequest, "colour"},
		{"wrong type", `{"name": "a", "url": "https://receiver.example/", "types": "io.herald.*"}`, http.StatusBadRequest, "types"},
		{"not an object", `["a"]`, http.StatusBadRequest, ""},
		{"not JSON", `{"name": "a",`, http.StatusBadRequest, ""},
		{"garbage", `name=a`, http.StatusBadRequest, ""},
		{"two objects", `{"name": "a", "url": "https://receiver.example/"} {}`, http.StatusBadRequest, ""},
		{"empty body", ``, http.StatusBadRequest, ""},
		{"over 64 KiB", `{"name": "a", "url": "https://receiver.example/", "headers": {"X-Big": "` + strings.Repeat("b", 64<<10) + `"}}`,
			http.StatusRequestEntityTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env.call(t, http.MethodPost, subscriptions.AdminPrefix, tc.body).wantError(t, tc.status, tc.field)
		})
	}
	t.Run("not JSON content", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, env.srv.URL+subscriptions.AdminPrefix,
			strings.NewReader(`name=a&url=https://receiver.example/`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := env.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("status %d, want 415", resp.StatusCode)
		}
	})
	if n := env.changes.Load(); n != 1 {
		t.Errorf("OnChange called %d times, want 1 (the first add)", n)
	}
}

// adminRefusedURLs are endpoint URLs that no delivery would reach without an
// allowlist, with what the refusal must say. Each carries a query token the
// error must not quote.
func adminRefusedURLs() []struct{ url, reason string } {
	return []struct{ url, reason string }{
		{"https://127.0.0.1:8443/hook", "127.0.0.1 is loopback"},
		{"https://[::1]/hook", "::1 is loopback"},
		{"https://localhost:8443/hook", "an address of localhost, is loopback"},
		{"https://169.254.169.254/latest/meta-data/", "cloud metadata service"},
		{"https://169.254.10.10/", "link-local"},
		{"https://[fe80::1]/", "link-local"},
		{"https://10.0.0.5/", "private or unique-local"},
		{"https://172.16.0.1/", "private or unique-local"},
		{"https://192.168.1.1/", "private or unique-local"},
		{"https://[fd12::1]/", "private or unique-local"},
		{"https://[64:ff9b::a9fe:a9fe]/", "reserved range 64:ff9b::/96"},
		{"https://100.64.0.1/", "reserved range 100.64.0.0/10"},
	}
}

// TestAdminRefusesWhatDeliveryRefuses: POST and PATCH refuse a URL that the
// SSRF guard would refuse at every delivery, naming the url field and
// without quoting its query, and store nothing.
func TestAdminRefusesWhatDeliveryRefuses(t *testing.T) {
	env := newAdminEnvGuarded(t, nil)
	adminAdd(t, env, "public", "https://93.184.216.34/hook")
	for _, tc := range adminRefusedURLs() {
		u := tc.url + "?token=" + adminQueryToken
		check := func(t *testing.T, r adminResponse) {
			t.Helper()
			r.wantError(t, http.StatusBadRequest, "url")
			var e struct {
				Error string `json:"error"`
			}
			r.decode(t, &e)
			if !strings.Contains(e.Error, tc.reason) || !strings.Contains(e.Error, "subscriptions.allow_cidrs") {
				t.Errorf("error %q: want why (%q) and the key that would allow it", e.Error, tc.reason)
			}
			if strings.Contains(e.Error, adminQueryToken) {
				t.Errorf("error quotes the URL's query: %q", e.Error)
			}
		}
		t.Run(tc.url, func(t *testing.T) {
			check(t, env.call(t, http.MethodPost, subscriptions.AdminPrefix, fmt.Sprintf(`{"name": "inside", "url": %q}`, u)))
			check(t, env.call(t, http.MethodPatch, subscriptions.AdminPrefix+"/public", fmt.Sprintf(`{"url": %q}`, u)))
		})
	}
	var list struct {
		Endpoints []adminEndpointJSON `json:"endpoints"`
	}
	env.call(t, http.MethodGet, subscriptions.AdminPrefix, "").want(t, http.StatusOK).decode(t, &list)
	if len(list.Endpoints) != 1 || list.Endpoints[0].URL != "https://93.184.216.34/hook" || list.Endpoints[0].Revision != 1 {
		t.Errorf("after refused requests: %+v, want public alone and unchanged", list.Endpoints)
	}
	if n := env.changes.Load(); n != 1 {
		t.Errorf("OnChange called %d times, want 1 (the first add)", n)
	}
}

// TestAdminAllowlistedInternalURL: the allowlist deliveries use lets an
// internal endpoint be registered, over http too, and nothing more.
func TestAdminAllowlistedInternalURL(t *testing.T) {
	env := newAdminEnvGuarded(t, []webhook.Option{webhook.WithAllowCIDRs("10.20.0.0/16", "169.254.0.0/16", "::1")})
	adminAdd(t, env, "internal", "https://10.20.0.7:8443/hook")
	adminAdd(t, env, "plain", "http://10.20.0.8:8080/hook")
	adminAdd(t, env, "local6", "https://[::1]:8443/hook")
	env.call(t, http.MethodPatch, subscriptions.AdminPrefix+"/internal", `{"url": "https://10.20.9.9/hook"}`).want(t, http.StatusOK)
	for _, u := range []string{"https://10.21.0.7/hook", "https://169.254.169.254/latest/meta-data/", "https://127.0.0.1:8443/hook"} {
		env.call(t, http.MethodPost, subscriptions.AdminPrefix, fmt.Sprintf(`{"name": "outside", "url": %q}`, u)).
			wantError(t, http.StatusBadRequest, "url")
		env.call(t, http.MethodPatch, subscriptions.AdminPrefix+"/internal", fmt.Sprintf(`{"url": %q}`, u)).
			wantError(t, http.StatusBadRequest, "url")
	}
}

func TestAdminUpdate(t *testing.T) {
	env := newAdminEnv(t)
	adminAdd(t, env, "orders", "https://receiver.example/old")

	var out adminEndpointResponse
	env.call(t, http.MethodPatch, subscriptions.AdminPrefix+"/orders", `{"url": "https://receiver.example/new",
		"types": ["io.herald.*"], "headers": {"X-Api-Key": "`+adminHeaderValue+`"}}`).want(t, http.StatusOK).decode(t, &out)
	if e := out.Endpoint; e.URL != "https://receiver.example/new" || len(e.Types) != 1 || e.Headers["X-Api-Key"] != "(redacted)" || e.Revision != 2 {
		t.Errorf("endpoint %+v", e)
	}
	out = adminEndpointResponse{}
	env.call(t, http.MethodPatch, subscriptions.AdminPrefix+"/orders", `{"types": [], "headers": {}}`).want(t, http.StatusOK).decode(t, &out)
	if e := out.Endpoint; len(e.Types) != 0 || len(e.Headers) != 0 || e.URL != "https://receiver.example/new" {
		t.Errorf("after clearing types and headers: %+v", e)
	}

	for _, tc := range []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"unknown endpoint", "/nobody", `{"enabled": false}`, http.StatusNotFound, ""},
		{"bad url", "/orders", `{"url": "ftp://receiver.example/"}`, http.StatusBadRequest, "url"},
		{"bad types", "/orders", `{"types": ["["]}`, http.StatusBadRequest, "types"},
		{"nothing to change", "/orders", `{}`, http.StatusBadRequest, ""},
		{"replay alone", "/orders", `{"replay": true}`, http.StatusBadRequest, ""},
		{"name cannot change", "/orders", `{"name": "other"}`, http.StatusBadRequest, "name"},
		{"wrong type", "/orders", `{"enabled": "yes"}`, http.StatusBadRequest, "enabled"},
		{"no body", "/orders", ``, http.StatusBadRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env.call(t, http.MethodPatch, subscriptions.AdminPrefix+tc.path, tc.body).wantError(t, tc.status, tc.field)
		})
	}
	if n := env.changes.Load(); n != 3 {
		t.Errorf("OnChange called %d times, want 3", n)
	}
}

func TestAdminDisableEnableReplays(t *testing.T) {
	for _, tc := range []struct {
		name         string
		enable       string
		wantReplayed int
		wantState    string
	}{
		{"replay by default", `{"enabled": true}`, 1, "pending"},
		{"replay asked", `{"enabled": true, "replay": true}`, 1, "pending"},
		{"no replay", `{"enabled": true, "replay": false}`, 0, "dead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newAdminEnv(t)
			adminAdd(t, env, "orders", "https://receiver.example/")
			path := subscriptions.AdminPrefix + "/orders"

			var out adminEndpointResponse
			env.call(t, http.MethodPatch, path, `{"enabled": false}`).want(t, http.StatusOK).decode(t, &out)
			if out.Endpoint.Enabled || out.Endpoint.DisabledReason == "" || out.Replayed != 0 {
				t.Fatalf("after disabling: %+v", out)
			}
			adminDeadLetter(t, env, "orders")

			out = adminEndpointResponse{}
			env.call(t, http.MethodPatch, path, tc.enable).want(t, http.StatusOK).decode(t, &out)
			if !out.Endpoint.Enabled || out.Endpoint.DisabledReason != "" || out.Replayed != tc.wantReplayed {
				t.Errorf("after enabling: enabled %v reason %q replayed %d, want replayed %d",
					out.Endpoint.Enabled, out.Endpoint.DisabledReason, out.Replayed, tc.wantReplayed)
			}
			if got := adminStates(t, env, "orders"); len(got) != 1 || got[0] != tc.wantState {
				t.Errorf("outbox rows %v, want one %s", got, tc.wantState)
			}

			// POST replay picks up what enabling left dead.
			var replay struct{ Replayed int }
			env.call(t, http.MethodPost, path+"/replay", "").want(t, http.StatusOK).decode(t, &replay)
			if replay.Replayed != 1-tc.wantReplayed {
				t.Errorf("replay: %d, want %d", replay.Replayed, 1-tc.wantReplayed)
			}
			if got := adminStates(t, env, "orders"); len(got) != 1 || got[0] != "pending" {
				t.Errorf("outbox rows after replay %v, want one pending", got)
			}
			if n := env.changes.Load(); n != 4 {
				t.Errorf("OnChange called %d times, want 4 (add, disable, enable, replay)", n)
			}
		})
	}
	t.Run("replay of an unknown endpoint", func(t *testing.T) {
		env := newAdminEnv(t)
		env.call(t, http.MethodPost, subscriptions.AdminPrefix+"/nobody/replay", "").wantError(t, http.StatusNotFound, "")
		env.call(t, http.MethodPost, subscriptions.AdminPrefix+"/nobody/replay", `{"all": true}`).wantError(t, http.StatusBadRequest, "all")
		if n := env.changes.Load(); n != 0 {
			t.Errorf("OnChange called %d times, want 0", n)
		}
	})
}

func TestAdminRotateSecret(t *testing.T) {
	const grace = 2 * time.Hour
	env := newAdminEnv(t, subscriptions.WithSecretGrace(grace))
	path := subscriptions.AdminPrefix + "/orders"
	old := adminAdd(t, env, "orders", "https://receiver.example/").Secret
	fingerprint := func(v string) string { return subscriptions.Secret{Value: v}.Fingerprint() }
	near := func(got time.Time, want time.Duration) bool {
		d := time.Until(got)
		return d > want-time.Minute && d <= want
	}

	// Without a body: a fresh secret, and the configured grace.
	var out adminEndpointResponse
	r := env.call(t, http.MethodPost, path+"/rotate-secret", "").want(t, http.StatusOK)
	r.decode(t, &out)
	fresh := out.Secret
	if !strings.HasPrefix(fresh, "whsec_") || fresh == old {
		t.Fatalf("secret %q, want a new one", fresh)
	}
	if bytes.Contains(r.body, []byte(old)) {
		t.Errorf("rotate shows the old secret: %s", r.body)
	}
	var got adminEndpointResponse
	env.call(t, http.MethodGet, path, "").want(t, http.StatusOK).decode(t, &got)
	s := got.Endpoint.Secrets
	if len(s) != 2 || s[0].Fingerprint != fingerprint(fresh) || !s[0].ExpiresAt.IsZero() ||
		s[1].Fingerprint != fingerprint(old) || !near(s[1].ExpiresAt, grace) {
		t.Errorf("secrets %+v, want %s (no expiry) then %s expiring in %s", s, fingerprint(fresh), fingerprint(old), grace)
	}

	// A given secret and grace.
	out = adminEndpointResponse{}
	env.call(t, http.MethodPost, path+"/rotate-secret", `{"secret": "`+adminGivenSecret+`", "grace": "30m"}`).
		want(t, http.StatusOK).decode(t, &out)
	if out.Secret != adminGivenSecret {
		t.Errorf("secret %q, want the given one", out.Secret)
	}
	s = out.Endpoint.Secrets
	if len(s) != 3 || s[0].Fingerprint != fingerprint(adminGivenSecret) || !near(s[1].ExpiresAt, 30*time.Minute) ||
		!near(s[2].ExpiresAt, 30*time.Minute) {
		t.Errorf("secrets %+v, want the given one then two expiring in 30m", s)
	}

	for _, tc := range []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"bad grace", path, `{"grace": "a day"}`, http.StatusBadRequest, "grace"},
		{"negative grace", path, `{"grace": "-1h"}`, http.StatusBadRequest, "grace"},
		{"bad secret", path, `{"secret": "whsec_short"}`, http.StatusBadRequest, "secret"},
		{"unknown field", path, `{"secrets": []}`, http.StatusBadRequest, "secrets"},
		{"unknown endpoint", subscriptions.AdminPrefix + "/nobody", `{}`, http.StatusNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env.call(t, http.MethodPost, tc.path+"/rotate-secret", tc.body).wantError(t, tc.status, tc.field)
		})
	}
	if n := env.changes.Load(); n != 3 {
		t.Errorf("OnChange called %d times, want 3", n)
	}
}

func TestAdminTestDelivery(t *testing.T) {
	env := newAdminEnv(t)
	for _, tc := range []struct {
		name      string
		status    int
		delivered bool
		code      int
	}{
		{"no content", http.StatusNoContent, true, http.StatusNoContent},
		{"server error", http.StatusInternalServerError, false, http.StatusInternalServerError},
		{"gone", http.StatusGone, false, http.StatusGone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("r%d", tc.status)
			adminAdd(t, env, name, adminReceiver(t, tc.status).URL+"/hook")
			var out struct {
				Result subscriptions.TestResult `json:"result"`
			}
			env.call(t, http.MethodPost, subscriptions.AdminPrefix+"/"+name+"/test", "").want(t, http.StatusOK).decode(t, &out)
			res := out.Result
			if res.Delivered != tc.delivered || res.StatusCode != tc.code || res.EventID == "" || (res.Error == "") != tc.delivered {
				t.Errorf("result %+v, want delivered %v status %d", res, tc.delivered, tc.code)
			}
		})
	}
	env.call(t, http.MethodPost, subscriptions.AdminPrefix+"/nobody/test", "").wantError(t, http.StatusNotFound, "")
	if n := env.changes.Load(); n != 3 {
		t.Errorf("OnChange called %d times, want 3 (the adds; a test changes nothing)", n)
	}

	t.Run("without a tester", func(t *testing.T) {
		env := newAdminEnv(t, subscriptions.WithTester(nil))
		adminAdd(t, env, "orders", adminReceiver(t, http.StatusNoContent).URL)
		env.call(t, http.MethodPost, subscriptions.AdminPrefix+"/orders/test", "").wantError(t, http.StatusNotImplemented, "")
	})
}

func TestAdminRemove(t *testing.T) {
	env := newAdminEnv(t)
	adminAdd(t, env, "orders", "https://receiver.example/")
	adminDeadLetter(t, env, "orders")
	path := subscriptions.AdminPrefix + "/orders"

	var out struct {
		Removed   string
		Discarded int
	}
	env.call(t, http.MethodDelete, path, "").want(t, http.StatusOK).decode(t, &out)
	if out.Removed != "orders" || out.Discarded != 1 {
		t.Errorf("got %+v, want orders removed with 1 row discarded", out)
	}
	if got := adminStates(t, env, "orders"); len(got) != 0 {
		t.Errorf("outbox rows left: %v", got)
	}
	env.call(t, http.MethodGet, path, "").wantError(t, http.StatusNotFound, "")
	env.call(t, http.MethodDelete, path, "").wantError(t, http.StatusNotFound, "")
	if n := env.changes.Load(); n != 2 {
		t.Errorf("OnChange called %d times, want 2", n)
	}
}

// TestAdminOnChange walks an endpoint's life and counts the calls.
func TestAdminOnChange(t *testing.T) {
	env := newAdminEnv(t)
	receiver := adminReceiver(t, http.StatusNoContent).URL
	path := subscriptions.AdminPrefix + "/orders"
	for i, step := range []struct {
		method, path, body string
		status             int
		changed            bool
	}{
		{http.MethodPost, subscriptions.AdminPrefix, `{"name": "orders", "url": "` + receiver + `"}`, http.StatusCreated, true},
		{http.MethodPost, subscriptions.AdminPrefix, `{"name": "orders", "url": "` + receiver + `"}`, http.StatusConflict, false},
		{http.MethodPost, subscriptions.AdminPrefix, `{"name": "BAD", "url": "` + receiver + `"}`, http.StatusBadRequest, false},
		{http.MethodGet, subscriptions.AdminPrefix, ``, http.StatusOK, false},
		{http.MethodGet, path, ``, http.StatusOK, false},
		{http.MethodPatch, path, `{"url": "ftp://x/"}`, http.StatusBadRequest, false},
		{http.MethodPatch, path, `{"enabled": false}`, http.StatusOK, true},
		{http.MethodPatch, path, `{"enabled": true}`, http.StatusOK, true},
		{http.MethodPost, path + "/rotate-secret", `{"grace": "soon"}`, http.StatusBadRequest, false},
		{http.MethodPost, path + "/rotate-secret", ``, http.StatusOK, true},
		{http.MethodPost, path + "/test", ``, http.StatusOK, false},
		{http.MethodPost, path + "/replay", ``, http.StatusOK, true},
		{http.MethodDelete, path, ``, http.StatusOK, true},
		{http.MethodDelete, path, ``, http.StatusNotFound, false},
		{http.MethodPost, path + "/replay", ``, http.StatusNotFound, false},
	} {
		before := env.changes.Load()
		env.call(t, step.method, step.path, step.body).want(t, step.status)
		if got := env.changes.Load() - before; got != map[bool]int32{true: 1, false: 0}[step.changed] {
			t.Errorf("step %d, %s %s → %d: OnChange called %d times", i, step.method, step.path, step.status, got)
		}
	}
	logs := env.log.String()
	for _, op := range []string{"op=add", "op=update", "op=rotate-secret", "op=replay", "op=remove"} {
		if !strings.Contains(logs, "endpoint changed") || !strings.Contains(logs, op+" endpoint=orders") {
			t.Errorf("log has no change line with %s:\n%s", op, logs)
		}
	}
}

func TestAdminUnrouted(t *testing.T) {
	env := newAdminEnv(t)
	env.call(t, http.MethodGet, "/v1/elsewhere", "").wantError(t, http.StatusNotFound, "")
	env.call(t, http.MethodGet, subscriptions.AdminPrefix+"/orders/secrets", "").wantError(t, http.StatusNotFound, "")
	r := env.call(t, http.MethodPut, subscriptions.AdminPrefix+"/orders", `{}`)
	r.wantError(t, http.StatusMethodNotAllowed, "")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, http.MethodPatch) || !strings.Contains(allow, http.MethodDelete) {
		t.Errorf("Allow %q, want GET, PATCH and DELETE", allow)
	}
}

func TestAdminInternalError(t *testing.T) {
	env := newAdminEnv(t)
	sqlDB, err := env.db.Gorm.DB()
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlDB.Close(); err != nil {
		t.Fatal(err)
	}
	r := env.call(t, http.MethodGet, subscriptions.AdminPrefix, "")
	r.wantError(t, http.StatusInternalServerError, "")
	if bytes.Contains(r.body, []byte("sql")) {
		t.Errorf("body shows the cause: %s", r.body)
	}
	if logs := env.log.String(); !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "sql") {
		t.Errorf("log has no error line with the cause:\n%s", logs)
	}
	env.call(t, http.MethodPost, subscriptions.AdminPrefix, `{"name": "a", "url": "https://receiver.example/"}`).
		wantError(t, http.StatusInternalServerError, "")
	if n := env.changes.Load(); n != 0 {
		t.Errorf("OnChange called %d times, want 0", n)
	}
}

// The admin API registers an endpoint, shows its secret once, and lists it
// without. Herald mounts it when http.admin_token is set.
func ExampleNewAdminHandler() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "admin-example-")
	defer func() { _ = os.RemoveAll(dir) }()
	db, _ := outbox.OpenSQLite(filepath.Join(dir, "outbox.db"))
	if _, err := outbox.Migrate(ctx, db); err != nil {
		fmt.Println(err)
		return
	}
	ob, _ := outbox.NewStore(db)
	// The key that seals the secrets in the table: subscriptions.secrets_key,
	// 32 random bytes in base64 (openssl rand -base64 32).
	key, _ := subscriptions.ParseSecretsKey("XI83WkSVvoWO1NOiqjCb0f/mMIQ9BKHO4DgiY7Bnw/Q=")
	keys, _ := subscriptions.NewKeyring(key)
	store := subscriptions.NewStore(db, ob, subscriptions.WithKeyring(keys))

	const token = "an-admin-token-of-32-characters!"
	h, err := subscriptions.NewAdminHandler(store, token, subscriptions.WithAdminLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	call := func(method, path, body string) map[string]any {
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			fmt.Println(err)
			return nil
		}
		defer func() { _ = resp.Body.Close() }()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		fmt.Println(method, path, resp.StatusCode)
		return out
	}
	created := call(http.MethodPost, subscriptions.AdminPrefix,
		`{"name": "billing", "url": "https://billing.example/hooks", "types": ["io.herald.portal.*"]}`)
	secret, _ := created["secret"].(string)
	fmt.Println("secret for the receiver:", strings.HasPrefix(secret, "whsec_"))

	listed := call(http.MethodGet, subscriptions.AdminPrefix, "")
	for _, e := range listed["endpoints"].([]any) {
		e := e.(map[string]any)
		fmt.Println(e["name"], e["destination"], e["url"], e["enabled"])
	}
	// Output:
	// POST /v1/webhooks 201
	// secret for the receiver: true
	// GET /v1/webhooks 200
	// billing webhook:billing https://billing.example/hooks true
}
