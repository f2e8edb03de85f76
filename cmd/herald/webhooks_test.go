package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/subscriptions"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// webhooksOutbox is a migrated SQLite outbox behind a config that lets
// stored endpoints reach receivers on 127.0.0.1, as httptest's do.
type webhooksOutbox struct {
	config string
	db     *gorm.DB
	store  *outbox.Store
}

func newWebhooksOutbox(t *testing.T) webhooksOutbox {
	t.Helper()
	return newWebhooksOutboxAllowing(t, `["127.0.0.1/32"]`)
}

// newWebhooksOutboxAllowing is newWebhooksOutbox with allowCIDRs (YAML) as
// subscriptions.allow_cidrs.
func newWebhooksOutboxAllowing(t *testing.T, allowCIDRs string) webhooksOutbox {
	t.Helper()
	dir := t.TempDir()
	o := webhooksOutbox{config: writeFile(t, "herald.yaml", `
database:
  driver: sqlite
  dsn: `+filepath.Join(dir, "outbox.db")+`
nats:
  url: embedded
  embedded_store_dir: `+filepath.Join(dir, "js")+`
log:
  level: warn
subscriptions:
  allow_cidrs: `+allowCIDRs+`
  secrets_key: `+testSecretsKey+`
`)}
	o.db, o.store = migrateAndOpen(t, o.config, dir)
	return o
}

// webhooks runs `herald webhooks args... --config o.config`.
func (o webhooksOutbox) webhooks(t *testing.T, args ...string) result {
	t.Helper()
	return herald(context.Background(), t, nil, append(append([]string{"webhooks"}, args...), "--config", o.config)...)
}

// add registers an endpoint and returns the secret add printed.
func (o webhooksOutbox) add(t *testing.T, args ...string) string {
	t.Helper()
	res := o.webhooks(t, append([]string{"add"}, args...)...)
	if res.code != exitOK {
		t.Fatalf("add %v: %+v", args, res)
	}
	return printedSecret(t, res)
}

var secretPattern = regexp.MustCompile(`whsec_[A-Za-z0-9+/=]+`)

// printedSecret is the one secret res printed.
func printedSecret(t *testing.T, res result) string {
	t.Helper()
	found := secretPattern.FindAllString(res.stdout+res.stderr, -1)
	if len(found) != 1 {
		t.Fatalf("want the secret printed exactly once, found %d times:\n%s", len(found), res.stdout)
	}
	return found[0]
}

// write commits one event bound for the endpoint (and, as every event, for
// main) and returns its id.
func (o webhooksOutbox) write(t *testing.T, endpoint string) string {
	t.Helper()
	ev, err := event.New("io.herald.test.thing.created", "/test", map[string]string{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Write(context.Background(), o.db, ev); err != nil {
		t.Fatal(err)
	}
	// Fanned out as serve's main relay does.
	store, _ := outbox.NewStore(o.db)
	if _, err := store.Route(context.Background(), outbox.AllBuckets(), outbox.Routes{{Destination: subscriptions.Destination(endpoint)}}, 10); err != nil {
		t.Fatal(err)
	}
	return ev.ID
}

func (o webhooksOutbox) kill(t *testing.T, endpoint, id string) {
	t.Helper()
	if err := o.db.Exec(`UPDATE herald_outbox SET state = 'dead', last_error = 'receiver said no' WHERE destination = ? AND event_id = ?`,
		subscriptions.Destination(endpoint), id).Error; err != nil {
		t.Fatal(err)
	}
}

func (o webhooksOutbox) row(t *testing.T, endpoint, id string) outbox.Row {
	t.Helper()
	r, err := o.store.ForDestination(subscriptions.Destination(endpoint)).Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// listedEndpoint is the part of `webhooks list --json` the tests read.
type listedEndpoint struct {
	Name           string            `json:"name"`
	URL            string            `json:"url"`
	Types          []string          `json:"types"`
	Headers        map[string]string `json:"headers"`
	Enabled        bool              `json:"enabled"`
	DisabledReason string            `json:"disabled_reason"`
	Secrets        []struct {
		Fingerprint string    `json:"fingerprint"`
		ExpiresAt   time.Time `json:"expires_at"`
	} `json:"secrets"`
	Pending int `json:"pending"`
	Dead    int `json:"dead"`
}

func (o webhooksOutbox) list(t *testing.T) map[string]listedEndpoint {
	t.Helper()
	var doc struct {
		Endpoints []listedEndpoint `json:"endpoints"`
	}
	decode(t, o.webhooks(t, "list", "--json"), &doc)
	out := map[string]listedEndpoint{}
	for _, ep := range doc.Endpoints {
		out[ep.Name] = ep
	}
	return out
}

func TestWebhooksAddShowsTheSecretOnceAndNothingElseDoes(t *testing.T) {
	o := newWebhooksOutbox(t)
	const headerValue, queryToken = "hv-do-not-print-7", "qt-do-not-print-9"

	res := o.webhooks(t, "add", "orders", "--url", "https://example.com/hook?token="+queryToken,
		"--type", "io.herald.portal.*", "--header", "X-Api-Key: "+headerValue, "--header", "x-tenant=acme")
	if res.code != exitOK {
		t.Fatalf("add: %+v", res)
	}
	secret := printedSecret(t, res)
	for _, want := range []string{`added webhook endpoint "orders"`, "will not be shown again", "X-Api-Key, X-Tenant (values hidden)",
		"io.herald.portal.*", "webhook:orders", "(signing)"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("add output lacks %q:\n%s", want, res.stdout)
		}
	}
	for _, leak := range []string{headerValue, "acme", queryToken} {
		if strings.Contains(res.stdout+res.stderr, leak) {
			t.Errorf("add printed %q:\n%s", leak, res.stdout)
		}
	}

	var added struct {
		Endpoint listedEndpoint `json:"endpoint"`
		Secret   string         `json:"secret"`
	}
	decode(t, o.webhooks(t, "add", "all-events", "--url", "https://example.org/in", "--disabled", "--json"), &added)
	if added.Endpoint.Name != "all-events" || added.Endpoint.Enabled || len(added.Endpoint.Secrets) != 1 ||
		added.Endpoint.Secrets[0].Fingerprint != (subscriptions.Secret{Value: added.Secret}).Fingerprint() {
		t.Errorf("add --json = %+v", added)
	}
	if _, err := webhooks.ParseSecret(added.Secret); err != nil {
		t.Errorf("add --json secret: %v", err)
	}

	for _, args := range [][]string{{"list"}, {"list", "--json"}, {"list", "-o", "json"}} {
		res := o.webhooks(t, args...)
		if res.code != exitOK {
			t.Fatalf("%v: %+v", args, res)
		}
		for _, leak := range []string{secret, added.Secret, headerValue, "acme", queryToken} {
			if strings.Contains(res.stdout+res.stderr, leak) {
				t.Errorf("%v printed %q:\n%s", args, leak, res.stdout)
			}
		}
	}
	res = o.webhooks(t, "list")
	for _, want := range []string{
		"NAME        ENABLED                   URL                                   TYPES               PENDING  DEAD  LAST ATTEMPT  LAST ERROR  FAILING SINCE",
		"all-events  disabled: added disabled  https://example.org/in                every event         0        0     -             -           -",
		"orders      yes                       https://example.com/hook?token=xxxxx  io.herald.portal.*  0        0     -             -           -",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("list lacks %q:\n%s", want, res.stdout)
		}
	}

	got := o.list(t)
	orders := got["orders"]
	if len(got) != 2 || !orders.Enabled || orders.Headers["X-Api-Key"] != "(redacted)" || len(orders.Secrets) != 1 ||
		orders.Secrets[0].Fingerprint != (subscriptions.Secret{Value: secret}).Fingerprint() ||
		len(orders.Types) != 1 || orders.Types[0] != "io.herald.portal.*" {
		t.Errorf("list --json = %+v", got)
	}
}

func TestWebhooksBadInvocationsAreUsageErrors(t *testing.T) {
	o := newWebhooksOutbox(t)
	o.add(t, "taken", "--url", "https://example.com/hook")
	const badSecret = "whsec_not-base64-do-not-print"
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"url scheme", []string{"add", "ftp", "--url", "ftp://example.com/x"}, []string{"url:", `scheme "ftp"`}},
		{"no url", []string{"add", "nourl"}, []string{"url: is required"}},
		{"bad name", []string{"add", "Not A Name", "--url", "https://example.com/x"}, []string{"name:", "a-z 0-9"}},
		{"http to a host not allowlisted", []string{"add", "plain", "--url", "http://example.com/x"}, []string{"url:", "http is only allowed"}},
		{"bad type glob", []string{"add", "glob", "--url", "https://example.com/x", "--type", "io.herald.[x"}, []string{"types:"}},
		{"bad secret", []string{"add", "sec", "--url", "https://example.com/x", "--secret", badSecret}, []string{"secrets:", "not base64"}},
		{"header without a value", []string{"add", "hdr", "--url", "https://example.com/x", "--header", "X-Key do-not-print"}, []string{"--header 1: want 'Name: value' or Name=value"}},
		{"reserved header", []string{"add", "hdr", "--url", "https://example.com/x", "--header", "Content-Type: text/plain"}, []string{"headers:", "set by the publisher"}},
		{"name taken", []string{"add", "taken", "--url", "https://example.com/x"}, []string{"already exists"}},
		{"no name", []string{"add", "--url", "https://example.com/x"}, []string{"takes one endpoint NAME (got 0 arguments)"}},
		{"two names", []string{"replay", "a", "b"}, []string{"takes one endpoint NAME (got 2 arguments)"}},
		{"update nothing", []string{"update", "taken"}, []string{"nothing to change"}},
		{"update types twice", []string{"update", "taken", "--type", "a.*", "--clear-types"}, []string{"--type and --clear-types"}},
		{"update bad url", []string{"update", "taken", "--url", "gopher://example.com"}, []string{"url:", `scheme "gopher"`}},
		{"replay without enabling", []string{"update", "taken", "--replay=false"}, []string{"--replay: only with --enabled=true"}},
		{"negative grace", []string{"rotate-secret", "taken", "--grace", "-1h"}, []string{"grace: must not be negative"}},
		{"rotate bad secret", []string{"rotate-secret", "taken", "--secret", badSecret}, []string{"secret:", "not base64"}},
		{"unknown output", []string{"list", "-o", "yaml"}, []string{`--output: "yaml" is neither text nor json`}},
		{"json and text", []string{"list", "--json", "-o", "text"}, []string{"--json contradicts --output text"}},
		{"unknown subcommand", []string{"frob"}, []string{`unknown command "frob" for "herald webhooks"`}},
		{"update unknown", []string{"update", "nope", "--enabled=false"}, []string{`no such webhook endpoint: "nope"`}},
		{"remove unknown", []string{"remove", "nope"}, []string{`no such webhook endpoint: "nope"`}},
		{"remove unknown --yes", []string{"remove", "nope", "--yes"}, []string{`no such webhook endpoint: "nope"`}},
		{"rotate unknown", []string{"rotate-secret", "nope"}, []string{`no such webhook endpoint: "nope"`}},
		{"test unknown", []string{"test", "nope"}, []string{`no such webhook endpoint: "nope"`}},
		{"replay unknown", []string{"replay", "nope"}, []string{`no such webhook endpoint: "nope"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := o.webhooks(t, tc.args...)
			if res.code != exitUsage {
				t.Errorf("exit code = %d, want %d (%+v)", res.code, exitUsage, res)
			}
			for _, want := range tc.want {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr %q does not contain %q", res.stderr, want)
				}
			}
			if res.stdout != "" {
				t.Errorf("stdout = %q, want nothing", res.stdout)
			}
			if strings.Contains(res.stderr, "do-not-print") {
				t.Errorf("stderr quotes a secret or header value: %q", res.stderr)
			}
		})
	}
	if got := o.list(t); len(got) != 1 {
		t.Errorf("endpoints after bad invocations: %+v, want only taken", got)
	}
}

// add and update refuse a URL that the SSRF guard would refuse at every
// delivery, with the config's allowlist: a usage error naming the url and
// why, without its query; an allowlisted internal address is accepted.
func TestWebhooksRefuseWhatDeliveryRefuses(t *testing.T) {
	o := newWebhooksOutboxAllowing(t, `["10.20.0.0/16"]`)
	o.add(t, "public", "--url", "https://93.184.216.34/hook")
	const queryToken = "qt-do-not-print-3"
	for _, tc := range []struct{ url, reason string }{
		{"https://127.0.0.1:8443/hook", "127.0.0.1 is loopback"},
		{"https://[::1]/hook", "::1 is loopback"},
		{"https://localhost:8443/hook", "an address of localhost, is loopback"},
		{"https://169.254.169.254/latest/meta-data/", "cloud metadata service"},
		{"https://169.254.10.10/", "link-local"},
		{"https://[fe80::1]/", "link-local"},
		{"https://10.0.0.5/", "private or unique-local"},
		{"https://10.21.0.7/", "private or unique-local"},
		{"https://172.16.0.1/", "private or unique-local"},
		{"https://192.168.1.1/", "private or unique-local"},
		{"https://[fd12::1]/", "private or unique-local"},
		{"https://[64:ff9b::a9fe:a9fe]/", "reserved range 64:ff9b::/96"},
		{"https://100.64.0.1/", "reserved range 100.64.0.0/10"},
		{"http://93.184.216.34/hook", "http is only allowed"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u := tc.url + "?token=" + queryToken
			for _, args := range [][]string{{"add", "inside", "--url", u}, {"update", "public", "--url", u}} {
				res := o.webhooks(t, args...)
				if res.code != exitUsage || res.stdout != "" {
					t.Errorf("%s: exit %d, stdout %q; want a usage error and nothing on stdout", args[0], res.code, res.stdout)
				}
				for _, want := range []string{"url:", tc.reason, "subscriptions.allow_"} {
					if !strings.Contains(res.stderr, want) {
						t.Errorf("%s: stderr %q does not say %q", args[0], res.stderr, want)
					}
				}
				if strings.Contains(res.stderr, queryToken) {
					t.Errorf("%s: stderr quotes the URL's query: %q", args[0], res.stderr)
				}
			}
		})
	}

	o.add(t, "internal", "--url", "https://10.20.0.7:8443/hook")
	o.add(t, "plain", "--url", "http://10.20.0.8:8080/hook")
	if res := o.webhooks(t, "update", "public", "--url", "https://10.20.1.1/hook"); res.code != exitOK {
		t.Errorf("update to an allowlisted address: %+v", res)
	}
	got := o.list(t)
	if len(got) != 3 || got["public"].URL != "https://10.20.1.1/hook" || got["internal"].URL != "https://10.20.0.7:8443/hook" ||
		got["plain"].URL != "http://10.20.0.8:8080/hook" {
		t.Errorf("endpoints: %+v, want public (moved inside the allowlist), internal and plain", got)
	}
}

func TestWebhooksReEnablingReplaysDeadLetters(t *testing.T) {
	o := newWebhooksOutbox(t)
	o.add(t, "crm", "--url", "https://example.com/hook")

	res := o.webhooks(t, "update", "crm", "--enabled=false")
	if res.code != exitOK || !strings.Contains(res.stdout, "no: disabled by an operator") || strings.Contains(res.stdout, "replayed") {
		t.Fatalf("disable: %+v", res)
	}
	if res := o.webhooks(t, "list"); !strings.Contains(res.stdout, "disabled: disabled by an operator") {
		t.Errorf("list of a disabled endpoint:\n%s", res.stdout)
	}

	id := o.write(t, "crm")
	o.kill(t, "crm", id)
	if got := o.list(t)["crm"]; got.Dead != 1 || got.Pending != 0 || got.Enabled {
		t.Fatalf("listed after a dead letter: %+v", got)
	}

	res = o.webhooks(t, "update", "crm", "--enabled=true")
	if res.code != exitOK || !strings.HasPrefix(res.stdout, "replayed 1 dead events") || !strings.Contains(res.stdout, "enabled  yes") {
		t.Fatalf("re-enable: %+v", res)
	}
	if r := o.row(t, "crm", id); r.State != outbox.StatePending || r.Attempts != 0 {
		t.Errorf("replayed row = %s, %d attempts; want pending, 0", r.State, r.Attempts)
	}
	if got := o.list(t)["crm"]; got.Dead != 0 || got.Pending != 1 || !got.Enabled {
		t.Errorf("listed after re-enabling: %+v", got)
	}

	// replay serves an enabled endpoint's dead letters.
	o.kill(t, "crm", id)
	var replayed struct{ Replayed *int }
	decode(t, o.webhooks(t, "replay", "crm", "--json"), &replayed)
	if replayed.Replayed == nil || *replayed.Replayed != 1 || o.row(t, "crm", id).State != outbox.StatePending {
		t.Errorf("replay --json = %+v", replayed)
	}
	if res := o.webhooks(t, "replay", "crm"); res.code != exitOK || !strings.Contains(res.stdout, "replayed 0 dead events") {
		t.Errorf("second replay: %+v", res)
	}

	// --type and --header replace; --clear-* empty.
	res = o.webhooks(t, "update", "crm", "--type", "a.*", "--type", "b.*", "--header", "X-One: 1")
	if res.code != exitOK || !strings.Contains(res.stdout, "a.*,b.*") || !strings.Contains(res.stdout, "X-One (values hidden)") {
		t.Fatalf("update types and headers: %+v", res)
	}
	res = o.webhooks(t, "update", "crm", "--clear-types", "--clear-headers", "--url", "https://example.com/v2")
	if res.code != exitOK || !strings.Contains(res.stdout, "every event") || !strings.Contains(res.stdout, "headers  none") ||
		!strings.Contains(res.stdout, "https://example.com/v2") {
		t.Fatalf("update clear: %+v", res)
	}
}

func TestWebhooksRotateSecret(t *testing.T) {
	o := newWebhooksOutbox(t)
	first := o.add(t, "erp", "--url", "https://example.com/hook")

	res := o.webhooks(t, "rotate-secret", "erp", "--grace", "2h")
	if res.code != exitOK {
		t.Fatalf("rotate-secret: %+v", res)
	}
	second := printedSecret(t, res)
	if second == first {
		t.Fatal("rotate-secret printed the old secret")
	}
	oldFingerprint := (subscriptions.Secret{Value: first}).Fingerprint()
	for _, want := range []string{"will not be shown again", "previous secret " + oldFingerprint + " keeps signing until", "(in 1h59m)"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("rotate-secret output lacks %q:\n%s", want, res.stdout)
		}
	}
	got := o.list(t)["erp"]
	if len(got.Secrets) != 2 || got.Secrets[0].Fingerprint != (subscriptions.Secret{Value: second}).Fingerprint() ||
		got.Secrets[1].Fingerprint != oldFingerprint || !got.Secrets[0].ExpiresAt.IsZero() ||
		time.Until(got.Secrets[1].ExpiresAt) < time.Hour || time.Until(got.Secrets[1].ExpiresAt) > 2*time.Hour {
		t.Errorf("list after rotating = %+v", got.Secrets)
	}
	for _, args := range [][]string{{"list"}, {"list", "--json"}} {
		if res := o.webhooks(t, args...); strings.Contains(res.stdout, first) || strings.Contains(res.stdout, second) {
			t.Errorf("%v printed a secret:\n%s", args, res.stdout)
		}
	}

	// The config's subscriptions.secret_grace is the default grace.
	res = o.webhooks(t, "rotate-secret", "erp")
	if res.code != exitOK || !strings.Contains(res.stdout, "(in 23h59m)") {
		t.Errorf("rotate-secret with the default grace: %+v", res)
	}

	var rotated struct {
		Endpoint listedEndpoint `json:"endpoint"`
		Secret   string         `json:"secret"`
	}
	const given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	decode(t, o.webhooks(t, "rotate-secret", "erp", "--secret", given, "--grace", "0", "--json"), &rotated)
	if rotated.Secret != given || len(rotated.Endpoint.Secrets) != 1 ||
		rotated.Endpoint.Secrets[0].Fingerprint != (subscriptions.Secret{Value: given}).Fingerprint() {
		t.Errorf("rotate-secret --grace 0 --json = %+v", rotated)
	}
}

// receiver is an httptest server that checks each request's signature
// with the secrets it holds, as a subscriber would.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	secrets  [][]byte
	verified []error
	apiKeys  []string
	types    []string
}

func newReceiver(t *testing.T, status int) *receiver {
	t.Helper()
	rx := &receiver{}
	rx.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct{ Type string }
		_ = json.Unmarshal(body, &ev)
		rx.mu.Lock()
		rx.verified = append(rx.verified, webhooks.Verify(rx.secrets, r.Header, body, time.Now(), 0))
		rx.apiKeys = append(rx.apiKeys, r.Header.Get("X-Api-Key"))
		rx.types = append(rx.types, ev.Type)
		rx.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rx.Close)
	return rx
}

func (rx *receiver) hold(t *testing.T, secret string) {
	t.Helper()
	b, err := webhooks.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	rx.mu.Lock()
	rx.secrets = [][]byte{b}
	rx.mu.Unlock()
}

// seen is what the receiver saw of one request.
type seen struct {
	verified    error // the signature check's outcome
	apiKey, typ string
}

// last returns what the receiver saw of the latest request.
func (rx *receiver) last(t *testing.T) seen {
	t.Helper()
	rx.mu.Lock()
	defer rx.mu.Unlock()
	if len(rx.verified) == 0 {
		t.Fatal("the receiver got no request")
	}
	n := len(rx.verified) - 1
	return seen{verified: rx.verified[n], apiKey: rx.apiKeys[n], typ: rx.types[n]}
}

func TestWebhooksTestSendsASignedPing(t *testing.T) {
	o := newWebhooksOutbox(t)
	rx := newReceiver(t, http.StatusNoContent)
	rx.hold(t, o.add(t, "rx", "--url", rx.URL+"/hook", "--header", "X-Api-Key: gateway-key", "--disabled"))

	// A disabled endpoint is tested too: that is how an operator checks it
	// is back before enabling it.
	res := o.webhooks(t, "test", "rx")
	if res.code != exitOK {
		t.Fatalf("test: %+v", res)
	}
	for _, want := range []string{"delivered  yes", "status     204", "duration   ", "event id   "} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("test output lacks %q:\n%s", want, res.stdout)
		}
	}
	got := rx.last(t)
	verified, apiKey, typ := got.verified, got.apiKey, got.typ
	if verified != nil || apiKey != "gateway-key" || typ != subscriptions.TestEventType {
		t.Errorf("receiver saw signature check %v, X-Api-Key %q, type %q", verified, apiKey, typ)
	}

	// After a rotation a receiver holding only the new secret accepts it.
	res = o.webhooks(t, "rotate-secret", "rx")
	if res.code != exitOK {
		t.Fatalf("rotate-secret: %+v", res)
	}
	rx.hold(t, printedSecret(t, res))
	var tested subscriptions.TestResult
	decode(t, o.webhooks(t, "test", "rx", "--json"), &tested)
	if verified := rx.last(t).verified; !tested.Delivered || tested.StatusCode != http.StatusNoContent || tested.EventID == "" || verified != nil {
		t.Errorf("test --json after rotating = %+v, signature check %v", tested, verified)
	}
}

func TestWebhooksTestOfAFailingReceiverExitsOne(t *testing.T) {
	o := newWebhooksOutbox(t)
	rx := newReceiver(t, http.StatusInternalServerError)
	o.add(t, "down", "--url", rx.URL)

	res := o.webhooks(t, "test", "down")
	if res.code != exitError {
		t.Fatalf("test of a 500: exit %d, want %d (%+v)", res.code, exitError, res)
	}
	for _, want := range []string{"delivered  no", "status     500", "error      ", "500 Internal Server Error"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("test output lacks %q:\n%s", want, res.stdout)
		}
	}
	if !strings.Contains(res.stderr, `webhook endpoint "down" did not accept the test event`) {
		t.Errorf("stderr = %q", res.stderr)
	}

	res = o.webhooks(t, "test", "down", "--json")
	var tested subscriptions.TestResult
	if err := json.Unmarshal([]byte(res.stdout), &tested); err != nil || res.code != exitError || tested.Delivered || tested.StatusCode != http.StatusInternalServerError {
		t.Errorf("test --json of a 500: %+v, %v (%+v)", tested, err, res)
	}
}

func TestWebhooksRemoveDiscardsTheEndpointsEvents(t *testing.T) {
	o := newWebhooksOutbox(t)
	o.add(t, "gone", "--url", "https://example.com/hook")
	o.add(t, "stays", "--url", "https://example.com/other")
	pending := o.write(t, "gone")
	dead := o.write(t, "gone")
	o.kill(t, "gone", dead)
	kept := o.write(t, "stays")

	res := o.webhooks(t, "remove", "gone")
	if res.code != exitUsage || !strings.Contains(res.stderr, `removing webhook endpoint "gone" would discard 1 pending and 1 dead events: pass --yes`) {
		t.Fatalf("remove without --yes: %+v", res)
	}
	if got := o.list(t); got["gone"].Pending != 1 || got["gone"].Dead != 1 {
		t.Fatalf("remove without --yes changed something: %+v", got)
	}

	res = o.webhooks(t, "remove", "gone", "--yes")
	if res.code != exitOK || !strings.Contains(res.stdout, `removed webhook endpoint "gone" and discarded its 2 outbox events`) {
		t.Fatalf("remove --yes: %+v", res)
	}
	var left int64
	if err := o.db.Raw(`SELECT COUNT(*) FROM herald_outbox WHERE destination = ?`, subscriptions.Destination("gone")).Scan(&left).Error; err != nil || left != 0 {
		t.Errorf("outbox rows of the removed endpoint: %d, %v", left, err)
	}
	// Main's rows of the same events, and other endpoints' rows, stay.
	for _, id := range []string{pending, dead, kept} {
		if _, err := o.store.Get(context.Background(), id); err != nil {
			t.Errorf("main row of %s: %v", id, err)
		}
	}
	if r := o.row(t, "stays", kept); r.State != outbox.StatePending {
		t.Errorf("other endpoint's row = %s", r.State)
	}
	if got := o.list(t); len(got) != 1 || got["stays"].Pending != 1 {
		t.Errorf("list after remove = %+v", got)
	}

	var removed struct {
		Removed   string
		Discarded *int
	}
	decode(t, o.webhooks(t, "remove", "stays", "--yes", "--json"), &removed)
	if removed.Removed != "stays" || removed.Discarded == nil || *removed.Discarded != 1 {
		t.Errorf("remove --json = %+v", removed)
	}
	if res := o.webhooks(t, "list"); !strings.Contains(res.stdout, "no webhook endpoints") {
		t.Errorf("list of none: %+v", res)
	}
}

// testSecretsKey seals the secrets of newWebhooksOutbox's endpoints;
// otherSecretsKey and thirdSecretsKey are keys it rotates to.
const (
	testSecretsKey  = "XI83WkSVvoWO1NOiqjCb0f/mMIQ9BKHO4DgiY7Bnw/Q="
	otherSecretsKey = "YauWDKm/usVvTk9S5Olt/RGKTJ7ulcVErkE/L90sbKs="
	thirdSecretsKey = "wADgWXc9KIui7fZlMK19AuWlWLLv+RV6adlVTxsjNTs="
)

// secretsColumns reads every endpoint's secrets column with plain SQL.
func (o webhooksOutbox) secretsColumns(t *testing.T) map[string]string {
	t.Helper()
	var rows []struct{ Name, Secrets string }
	if err := o.db.Raw(`SELECT name, secrets FROM ` + subscriptions.Table + ` ORDER BY name`).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rows {
		out[r.Name] = r.Secrets
	}
	return out
}

// keyOf is the key id a column is sealed under, "" for plaintext.
func keyOf(column string) string {
	if m := regexp.MustCompile(`^v1:([0-9a-f]{8}):`).FindStringSubmatch(column); m != nil {
		return m[1]
	}
	return ""
}

// An operator's whole story: plaintext rows from before the key, sealed
// with one command; a key rotation, finished with the same command; a
// wrong key, which changes nothing and says which endpoint and key.
func TestWebhooksReencrypt(t *testing.T) {
	ctx := context.Background()
	o := newWebhooksOutbox(t)
	run := func(environ []string, args ...string) result {
		t.Helper()
		return herald(ctx, t, environ, append(append([]string{"webhooks"}, args...), "--config", o.config)...)
	}
	noKey := []string{"HERALD_SUBSCRIPTIONS_SECRETS_KEY="}
	plaintext := append(noKey, "HERALD_SUBSCRIPTIONS_ALLOW_PLAINTEXT_SECRETS=true")

	// Without a key, a new secret is refused, naming the settings.
	res := run(noKey, "add", "refused", "--url", "https://example.com/hook")
	if res.code != exitUsage || !strings.Contains(res.stderr, "subscriptions.secrets_key") ||
		!strings.Contains(res.stderr, "subscriptions.allow_plaintext_secrets") {
		t.Fatalf("add without a key: %+v", res)
	}
	// Plaintext rows, as from before there was a key.
	var legacy []string
	for _, name := range []string{"legacy-1", "legacy-2", "legacy-3"} {
		res := run(plaintext, "add", name, "--url", "https://example.com/"+name)
		if res.code != exitOK {
			t.Fatalf("add %s with plaintext allowed: %+v", name, res)
		}
		legacy = append(legacy, printedSecret(t, res))
	}
	sealed := o.add(t, "sealed", "--url", "https://example.com/sealed")
	// Reading plaintext rows works without a key.
	if res := run(noKey, "update", "legacy-1", "--type", "io.herald.*"); res.code != exitOK {
		t.Fatalf("update of a plaintext row without a key: %+v", res)
	}
	one, two, three := keyID(t, testSecretsKey), keyID(t, otherSecretsKey), keyID(t, thirdSecretsKey)
	cols := o.secretsColumns(t)
	for name, col := range cols {
		if want := map[bool]string{true: one, false: ""}[name == "sealed"]; keyOf(col) != want {
			t.Fatalf("before: %s is under key %q, want %q", name, keyOf(col), want)
		}
	}

	res = o.webhooks(t, "reencrypt", "--dry-run")
	if res.code != exitOK || !strings.Contains(res.stdout, "would re-encrypt") || !regexp.MustCompile(`sealed, were plaintext\s+3`).MatchString(res.stdout) {
		t.Fatalf("reencrypt --dry-run: %+v", res)
	}
	if got := o.secretsColumns(t); !reflect.DeepEqual(got, cols) {
		t.Fatal("--dry-run changed rows")
	}
	// Migrating the plaintext rows is one command.
	res = o.webhooks(t, "reencrypt", "--batch-size", "2")
	for _, want := range []*regexp.Regexp{regexp.MustCompile(`sealed, were plaintext\s+3`), regexp.MustCompile(`already under ` + one + `, left alone\s+1`)} {
		if res.code != exitOK || !want.MatchString(res.stdout) {
			t.Fatalf("reencrypt: output lacks %s: %+v", want, res)
		}
	}
	cols = o.secretsColumns(t)
	for name, col := range cols {
		if keyOf(col) != one {
			t.Errorf("after reencrypt: %s is under key %q, want %s", name, keyOf(col), one)
		}
		for _, s := range append(legacy, sealed) {
			if strings.Contains(col, s) || strings.Contains(col, strings.TrimPrefix(s, webhooks.SecretPrefix)) {
				t.Errorf("after reencrypt: %s's column shows a secret", name)
			}
		}
	}
	if res := o.webhooks(t, "reencrypt", "--json"); res.code != exitOK || !strings.Contains(res.stdout, `"current": 4`) {
		t.Errorf("reencrypt again: %+v", res)
	}
	if got := o.secretsColumns(t); !reflect.DeepEqual(got, cols) {
		t.Error("a second reencrypt changed rows")
	}

	// A wrong key: exit 1, each endpoint and the key named, nothing changed.
	res = run([]string{"HERALD_SUBSCRIPTIONS_SECRETS_KEY=" + thirdSecretsKey}, "reencrypt")
	if res.code != exitError {
		t.Errorf("reencrypt with a wrong key: exit %d, want %d", res.code, exitError)
	}
	for _, want := range []string{"nothing changed", `"legacy-1"`, `"sealed"`, "sealed under key " + one, three} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("reencrypt with a wrong key does not say %q:\n%s", want, res.stderr)
		}
	}
	if strings.Contains(res.stdout+res.stderr, thirdSecretsKey) || strings.Contains(res.stdout+res.stderr, testSecretsKey) {
		t.Error("reencrypt with a wrong key printed a key")
	}
	if got := o.secretsColumns(t); !reflect.DeepEqual(got, cols) {
		t.Error("reencrypt with a wrong key changed rows")
	}

	// A rotation: the new key current, the old one previous, one command.
	rotating := []string{"HERALD_SUBSCRIPTIONS_SECRETS_KEY=" + otherSecretsKey, "HERALD_SUBSCRIPTIONS_PREVIOUS_SECRETS_KEYS=" + testSecretsKey}
	res = run(rotating, "reencrypt")
	if res.code != exitOK || !regexp.MustCompile(`re-sealed, were under a previous key\s+4`).MatchString(res.stdout) ||
		!strings.Contains(res.stdout, "no row needs key "+one+" any more") {
		t.Fatalf("reencrypt under the new key: %+v", res)
	}
	for name, col := range o.secretsColumns(t) {
		if keyOf(col) != two {
			t.Errorf("after the rotation: %s is under key %q, want %s", name, keyOf(col), two)
		}
	}
	// The old key is no longer needed.
	newOnly := []string{"HERALD_SUBSCRIPTIONS_SECRETS_KEY=" + otherSecretsKey}
	var doc struct {
		Endpoints []listedEndpoint `json:"endpoints"`
	}
	decode(t, run(newOnly, "list", "--json"), &doc)
	if len(doc.Endpoints) != 4 || doc.Endpoints[3].Secrets[0].Fingerprint != (subscriptions.Secret{Value: sealed}).Fingerprint() {
		t.Errorf("list with the new key only = %+v", doc.Endpoints)
	}
	// An invalid key is refused by name, before anything opens.
	res = run([]string{"HERALD_SUBSCRIPTIONS_SECRETS_KEY=c2hvcnQ="}, "reencrypt")
	if res.code != exitUsage || !strings.Contains(res.stderr, "subscriptions.secrets_key: must be 32 bytes in base64") {
		t.Errorf("reencrypt with a short key: %+v", res)
	}
}

func keyID(t *testing.T, key string) string {
	t.Helper()
	b, err := subscriptions.ParseSecretsKey(key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := subscriptions.NewKeyring(b)
	if err != nil {
		t.Fatal(err)
	}
	return k.KeyID()
}
