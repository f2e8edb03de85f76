package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// planted are the secrets the test puts in a config, each a value no
// output may show: every command's stdout and stderr, serve's logs at
// debug level, and what its HTTP endpoints answer.
type planted struct {
	natsPassword, dsnPassword, hookToken, signingSecret, ingestToken, adminToken string
	storedToken, headerValue, portalPassword                                     string
	secretsKey, previousKey                                                      string
}

func plant(t *testing.T) planted {
	t.Helper()
	word := func(prefix string) string {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return prefix + hex.EncodeToString(b[:])
	}
	secret, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	key := func() string {
		var b [32]byte
		_, _ = rand.Read(b[:])
		return base64.StdEncoding.EncodeToString(b[:])
	}
	return planted{secretsKey: key(), previousKey: key(),
		natsPassword: word("natsPw"), dsnPassword: word("dsnPw"), hookToken: word("hookTok"), signingSecret: secret,
		ingestToken: word("ingestTok"), adminToken: word("adminTok"), storedToken: word("storedTok"),
		headerValue: word("headerKey"), portalPassword: word("portalPw"),
	}
}

func (p planted) all() map[string]string {
	return map[string]string{
		"NATS URL password":              p.natsPassword,
		"database DSN password":          p.dsnPassword,
		"webhook URL query token":        p.hookToken,
		"webhook signing secret":         p.signingSecret,
		"signing key without its prefix": strings.TrimPrefix(p.signingSecret, webhooks.SecretPrefix),
		"http.ingest_token":              p.ingestToken,
		"http.admin_token":               p.adminToken,
		"stored endpoint's query token":  p.storedToken,
		"stored endpoint's header value": p.headerValue,
		"--portal-dsn password":          p.portalPassword,
		"subscriptions.secrets_key":      p.secretsKey,
		"a previous secrets key":         p.previousKey,
	}
}

// check fails the test for every planted secret that text shows.
func (p planted) check(t *testing.T, what, text string) {
	t.Helper()
	for name, secret := range p.all() {
		if strings.Contains(text, secret) {
			t.Errorf("%s shows the %s:\n%s", what, name, text)
		}
	}
}

// startNATS starts a JetStream server that takes user alice with password.
func startNATS(t *testing.T, password string) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), Username: "alice", Password: password, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestNoCommandShowsAPlantedSecret plants every kind of secret Herald's
// config holds, runs every command that ends by itself (and serve, until
// it has relayed), and greps all they print, log and serve for them.
func TestNoCommandShowsAPlantedSecret(t *testing.T) {
	ctx := context.Background()
	p := plant(t)
	nats := startNATS(t, p.natsPassword)
	natsURL := "nats://alice:" + p.natsPassword + "@" + strings.TrimPrefix(nats.ClientURL(), "nats://")
	db := testdb.New(t, "postgres")
	dsn, err := url.Parse(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	// The server trusts local connections, so any password is accepted.
	dsn.User = url.UserPassword(dsn.User.Username(), p.dsnPassword)
	httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := writeFile(t, "herald.yaml", `
database:
  driver: postgres
  dsn: "`+dsn.String()+`"
nats:
  url: "`+natsURL+`"
relay:
  poll_interval: 20ms
  backoff_min: 50ms
  backoff_max: 100ms
log:
  level: debug
http:
  listen: "`+httpAddr+`"
destinations:
  - name: partner
    adapter: webhook
    webhook:
      url: "https://127.0.0.1:1/hook?token=`+p.hookToken+`"
      secrets: ["`+p.signingSecret+`"]
      allow_cidrs: [127.0.0.0/8]
      timeout: 1s
subscriptions:
  allow_cidrs: [127.0.0.0/8]
  refresh_interval: 100ms
  timeout: 1s
  retry_schedule: [50ms]
`)
	environ := []string{"HERALD_HTTP_INGEST_TOKEN=" + p.ingestToken, "HERALD_HTTP_ADMIN_TOKEN=" + p.adminToken,
		"HERALD_SUBSCRIPTIONS_SECRETS_KEY=" + p.secretsKey}
	var mu sync.Mutex
	var outputs []string // what every command printed, for the checks that redaction happened
	cmd := func(want int, args ...string) result {
		t.Helper()
		res := herald(ctx, t, environ, args...)
		what := "herald " + strings.Join(args, " ")
		if res.code != want {
			t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", what, res.code, want, res.stdout, res.stderr)
		}
		p.check(t, what+" stdout", res.stdout)
		p.check(t, what+" stderr", res.stderr)
		mu.Lock()
		outputs = append(outputs, res.stdout, res.stderr)
		mu.Unlock()
		return res
	}

	cmd(exitOK, "migrate", "--config", cfg)
	cmd(exitOK, "migrate", "--print", "--config", cfg)
	// Nothing provisioned the stream yet: status fails, with the adapter's error.
	cmd(exitError, "status", "--config", cfg)
	cmd(exitOK, "webhooks", "list", "--config", cfg)
	cmd(exitOK, "webhooks", "add", "stored", "--config", cfg, "--url", "https://127.0.0.1:1/hook?token="+p.storedToken,
		"--header", "X-Api-Key: "+p.headerValue)
	cmd(exitOK, "webhooks", "add", "stored-json", "--config", cfg, "-o", "json", "--url", "https://127.0.0.1:1/h?token="+p.storedToken)
	cmd(exitOK, "webhooks", "list", "--config", cfg)
	cmd(exitOK, "webhooks", "list", "--config", cfg, "-o", "json")
	cmd(exitError, "webhooks", "test", "stored", "--config", cfg)
	cmd(exitError, "webhooks", "test", "stored", "--config", cfg, "-o", "json")
	cmd(exitOK, "webhooks", "update", "stored-json", "--config", cfg, "--url", "https://127.0.0.1:1/h2?token="+p.storedToken)
	cmd(exitOK, "webhooks", "remove", "stored-json", "--config", cfg, "--yes")

	// serve relays what a producer commits, to main and, failing, to the
	// partner and the stored endpoint.
	for range 3 {
		ev, _ := event.New("io.herald.test.thing.created", "/test", map[string]string{"a": "b"})
		if err := outbox.Write(ctx, db.Gorm, ev); err != nil {
			t.Fatal(err)
		}
	}
	store, err := outbox.NewStore(db.Gorm)
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var served result
	wg.Go(func() { served = herald(serveCtx, t, environ, "serve", "--config", cfg) })
	stopServe := func() {
		stop()
		wg.Wait()
	}
	defer stopServe()
	base := "http://" + httpAddr
	waitFor(t, "serve to relay to main", func() bool {
		n, err := store.Count(ctx, outbox.Filter{State: outbox.StatePending, Destination: outbox.MainDestination})
		return err == nil && n == 0
	})
	// Give the failing endpoints time for a few attempts, which log their
	// errors (a destination found down as a whole records none on its rows).
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		rows, err := store.ListRows(ctx, outbox.Filter{Destination: "partner"})
		if err == nil && len(rows) > 0 && rows[0].LastError != "" {
			break
		}
	}
	for _, path := range []string{"/metrics", "/readyz", "/healthz"} {
		p.check(t, "GET "+path, httpGet(t, base+path, ""))
	}
	p.check(t, "admin API", httpGet(t, base+"/v1/webhooks", p.adminToken))
	p.check(t, "admin API, a wrong token", httpGet(t, base+"/v1/webhooks", "wrong-"+p.adminToken[:4]))
	p.check(t, "ingest, a wrong token", httpPost(t, base+"/v1/audit-records", "wrong", `{"records":[]}`))
	stopServe()
	if served.code != exitOK {
		t.Errorf("serve: exit %d\n%s", served.code, served.stderr)
	}
	p.check(t, "serve stdout", served.stdout)
	p.check(t, "serve logs", served.stderr)
	if !strings.Contains(served.stderr, "broker=nats://alice:xxxxx@127.0.0.1") {
		t.Errorf("serve's startup log does not name the broker, redacted:\n%s", served.stderr)
	}
	outputs = append(outputs, served.stderr)

	// A dead letter whose reason quotes secrets, as a careless adapter or
	// driver error would: the operator's commands show it without them.
	partner := store.ForDestination("partner")
	rows, err := partner.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 1})
	if err != nil || len(rows) != 1 {
		t.Fatalf("read a partner row: %d rows, %v", len(rows), err)
	}
	leak := fmt.Errorf("post %s (signed with %s, broker %s, ingest %s)", "https://127.0.0.1:1/hook?token="+p.hookToken, p.signingSecret, natsURL, p.ingestToken)
	if err := partner.Record(ctx, []outbox.Outcome{{Seq: rows[0].Seq, Err: leak, Dead: true}}); err != nil {
		t.Fatal(err)
	}
	res := cmd(exitOK, "outbox", "list", "--dead", "--config", cfg, "-o", "json")
	if !strings.Contains(res.stdout, "token=xxxxx (signed with xxxxx, broker nats://alice:xxxxx@") {
		t.Errorf("outbox list shows the dead letter's reason unredacted, or not at all:\n%s", res.stdout)
	}
	cmd(exitOK, "status", "--config", cfg)
	res = cmd(exitOK, "status", "--config", cfg, "-o", "json")
	if !strings.Contains(res.stdout, `"target": "nats://alice:xxxxx@127.0.0.1`) || !strings.Contains(res.stdout, `"target": "https://127.0.0.1:1/hook?token=xxxxx"`) {
		t.Errorf("status -o json shows no redacted targets:\n%s", res.stdout)
	}
	cmd(exitOK, "outbox", "stats", "--config", cfg)
	cmd(exitOK, "outbox", "stats", "--config", cfg, "-o", "json")
	cmd(exitOK, "outbox", "list", "--config", cfg)
	cmd(exitOK, "outbox", "list", "--config", cfg, "-o", "json")
	cmd(exitOK, "outbox", "list", "--dead", "--config", cfg)
	cmd(exitOK, "outbox", "retry", "--all", "--config", cfg)
	cmd(exitUsage, "outbox", "retry", "--config", cfg)
	cmd(exitOK, "outbox", "purge", "--dead", "--dry-run", "--config", cfg)
	cmd(exitUsage, "outbox", "purge", "--config", cfg)
	cmd(exitOK, "webhooks", "replay", "stored", "--config", cfg)
	cmd(exitOK, "webhooks", "rotate-secret", "stored", "--config", cfg)
	cmd(exitOK, "webhooks", "reencrypt", "--config", cfg)
	cmd(exitOK, "webhooks", "reencrypt", "--config", cfg, "-o", "json", "--dry-run")
	// A rotation there and back, a wrong key and an invalid one: what they
	// print names key ids, never a key.
	keys := func(current string, previous ...string) []string {
		env := []string{"HERALD_HTTP_INGEST_TOKEN=" + p.ingestToken, "HERALD_HTTP_ADMIN_TOKEN=" + p.adminToken,
			"HERALD_SUBSCRIPTIONS_SECRETS_KEY=" + current}
		if len(previous) > 0 {
			env = append(env, "HERALD_SUBSCRIPTIONS_PREVIOUS_SECRETS_KEYS="+strings.Join(previous, ","))
		}
		return env
	}
	cmdWithEnv(t, p, keys(p.previousKey, p.secretsKey), exitOK, "webhooks", "reencrypt", "--config", cfg)
	cmdWithEnv(t, p, keys(p.secretsKey), exitError, "webhooks", "list", "--config", cfg)
	cmdWithEnv(t, p, keys(p.secretsKey, p.previousKey), exitOK, "webhooks", "reencrypt", "--config", cfg, "-o", "json")
	cmdWithEnv(t, p, keys(p.secretsKey[:20]), exitUsage, "webhooks", "reencrypt", "--config", cfg)
	cmdWithEnv(t, p, keys(p.secretsKey[:20]), exitUsage, "serve", "--config", cfg)
	cmd(exitOK, "webhooks", "remove", "stored", "--config", cfg, "--yes")
	cmd(exitOK, "enrich", "errors", "--config", cfg)
	cmd(exitOK, "enrich", "errors", "--config", cfg, "-o", "json")
	cmd(exitUsage, "enrich", "retry", "--config", cfg)
	cmd(exitUsage, "enrich", "tail", "--config", cfg, "--poll-interval", "0s")
	cmd(exitUsage, "enrich", "errors", "--config", cfg, "--portal-dsn", "postgres://portal:"+p.portalPassword+"@127.0.0.1:1/portal?connect_timeout=2")

	// The broker down: status reports the adapter's error.
	down := strings.Replace(readFile(t, cfg), natsURL, "nats://alice:"+p.natsPassword+"@127.0.0.1:1", 1)
	cmd(exitError, "status", "--config", writeFile(t, "down.yaml", down))
	cmd(exitError, "status", "--config", writeFile(t, "down.yaml", down), "-o", "json")

	// Config validation failures echo URLs, redacted, and never a secret.
	bad := func(name, content string) string {
		return writeFile(t, name, "database:\n  driver: postgres\n  dsn: \""+dsn.String()+"\"\n"+content)
	}
	res = cmd(exitUsage, "serve", "--config", bad("hook.yaml", "adapter: webhook\nwebhook:\n  url: \"ftp://127.0.0.1/hook?token="+p.hookToken+"\"\n  secrets: [\""+p.signingSecret+"\"]\n"))
	if !strings.Contains(res.stderr, `webhook.url: must be an http(s) URL (got "ftp://127.0.0.1/hook?token=xxxxx")`) {
		t.Errorf("webhook.url's error does not show the URL redacted: %s", res.stderr)
	}
	cmd(exitUsage, "status", "--config", bad("nats.yaml", "nats:\n  url: \"nats://h:4222,ws://alice:"+p.natsPassword+"@h:80\"\n"))
	cmd(exitUsage, "migrate", "--config", bad("section.yaml", "nats: \"nats://alice:"+p.natsPassword+"@h:4222\"\n"))
	cmd(exitUsage, "outbox", "stats", "--config", bad("types.yaml", "nats:\n  password: ["+p.natsPassword+"]\nhttp:\n  listen: \":0\"\n  admin_token: 12345\n"))
	cmd(exitUsage, "outbox", "stats", "--config", bad("dest.yaml", "destinations:\n  - name: partner\n    adapter: webhook\n    webhook:\n      url: \"ftp://h/?token="+p.hookToken+"\"\n      secrets: [\"whsec_"+p.natsPassword+"\"]\n"))
	cmdWithEnv(t, p, []string{"HERALD_NATS_URL=ws://alice:" + p.natsPassword + "@h:80"}, exitUsage, "serve")
	res = cmdWithEnv(t, p, []string{"HERALD_NATS_URL=ws://alice:" + p.natsPassword + "@h:80"}, exitUsage, "status")
	if !strings.Contains(res.stderr, "ws://alice:xxxxx@h:80") {
		t.Errorf("nats.url's error does not show the URL redacted: %s", res.stderr)
	}
	// A wrong password: the broker refuses, and says so without it.
	wrong := strings.Replace(readFile(t, cfg), p.natsPassword, p.dsnPassword, 1)
	cmd(exitError, "serve", "--config", writeFile(t, "wrong.yaml", wrong))

	for _, out := range outputs {
		if strings.Contains(out, "xxxxx") {
			return
		}
	}
	t.Error("no output shows a redacted value: the test proves nothing")
}

// cmdWithEnv runs herald with only environ, checking its output.
func cmdWithEnv(t *testing.T, p planted, environ []string, want int, args ...string) result {
	t.Helper()
	res := herald(context.Background(), t, environ, args...)
	if res.code != want {
		t.Errorf("herald %v: exit %d, want %d: %s", args, res.code, want, res.stderr)
	}
	p.check(t, "herald "+strings.Join(args, " ")+" stdout", res.stdout)
	p.check(t, "herald "+strings.Join(args, " ")+" stderr", res.stderr)
	return res
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, target, token string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

func httpPost(t *testing.T, target, token, body string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

func do(t *testing.T, req *http.Request) string {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status + "\n" + string(b)
}
