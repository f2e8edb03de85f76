package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsadapter "github.com/heraldhq/herald/adapters/nats"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // a test against 127.0.0.1
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testConfig is the embedded default in a fresh directory, polling often.
func testConfig(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Database.DSN = filepath.Join(dir, "outbox.db")
	cfg.NATS.EmbeddedStoreDir = filepath.Join(dir, "js")
	cfg.Relay.PollInterval = 20 * time.Millisecond
	// Stored endpoints' secrets are sealed, as in production.
	cfg.Subscriptions.SecretsKey = testSecretsKey
	return cfg
}

// testSecretsKey is the subscriptions.secrets_key of testConfig.
const testSecretsKey = "XI83WkSVvoWO1NOiqjCb0f/mMIQ9BKHO4DgiY7Bnw/Q="

// open opens Herald with cfg, closed at cleanup.
func open(t *testing.T, cfg config.Config) (*app.App, error) {
	t.Helper()
	a, err := app.Open(context.Background(), cfg, app.Options{Migrate: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = a.Close() })
	return a, nil
}

// run runs a until stop, which waits for Run to return; stop also runs at
// cleanup, before a is closed.
func run(t *testing.T, a *app.App) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Run(ctx) })
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

// An operator's view of a running Herald: counters move while events flow,
// and readiness follows the broker down and back up.
func TestMetricsMoveAndReadinessFollowsTheBroker(t *testing.T) {
	ctx := context.Background()
	storeDir := t.TempDir()
	srv, err := natsadapter.StartEmbedded(natsadapter.EmbeddedOptions{StoreDir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })

	cfg := testConfig(t)
	cfg.NATS.URL = srv.ClientURL()
	cfg.HTTP.Listen = "127.0.0.1:0"
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, a)
	base := "http://" + a.HTTPAddr

	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	eventually(t, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == http.StatusOK })

	for i := range 10 {
		ev, _ := event.New("io.herald.test.thing.created", "/test", map[string]int{"n": i})
		if err := outbox.Write(ctx, a.DB, ev); err != nil {
			t.Fatal(err)
		}
	}
	want := `herald_events_published_total{destination="main",type="io.herald.test.thing.created"} 10`
	eventually(t, "the published counter to reach 10", func() bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, want)
	})
	_, body := get(t, base+"/metrics")
	for _, m := range []string{`herald_commit_to_ack_seconds_count{destination="main"} 10`, `herald_publish_batch_seconds_count{destination="main"}`, "herald_outbox_scrape_error 0"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}

	port := srv.Port()
	srv.Shutdown()
	eventually(t, "not ready while the broker is down", func() bool {
		code, body := get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "broker")
	})
	if srv, err = natsadapter.StartEmbedded(natsadapter.EmbeddedOptions{StoreDir: storeDir, Port: port}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ready again after the broker restarts", func() bool {
		code, _ := get(t, base+"/readyz")
		return code == http.StatusOK
	})
}

// ingestApp opens Herald with the HTTP ingest on (token "s3cret") and
// rulesFile as enricher.rules_file, on a fresh SQLite outbox holding the
// portal sample.
func ingestApp(t *testing.T, rulesFile string) (*app.App, error) {
	t.Helper()
	cfg := testConfig(t)
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.IngestToken = "s3cret"
	cfg.Enricher.RulesFile = rulesFile
	a, err := open(t, cfg)
	if err != nil {
		return nil, err
	}
	if err := portalsample.Load(context.Background(), a.DB); err != nil {
		t.Fatal(err)
	}
	run(t, a)
	return a, nil
}

// postAuditRecord posts one audit record with the given action name and
// returns the response's status and body.
func postAuditRecord(t *testing.T, a *app.App, token, id, action string) (int, string) {
	t.Helper()
	body := `{"records":[{"id":"` + id + `","name":"` + action + `",
	  "subject_id":"10000000-0000-4000-8000-000000000001","subject_type":"data_product",
	  "actor_id":"00000000-0000-4000-8000-000000000001","created_on":"2026-11-02T09:00:00Z"}]}`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+a.HTTPAddr+"/v1/audit-records", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// With http.ingest_token, serve accepts audit records over HTTP, enriches
// them into the outbox and relays them.
func TestServeIngestsAuditRecordsOverHTTP(t *testing.T) {
	a, err := ingestApp(t, "")
	if err != nil {
		t.Fatal(err)
	}
	const id = "aaaaaaaa-0000-4000-8000-000000000001"
	if code, _ := postAuditRecord(t, a, "wrong", id, "data_product_updated"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	code, resp := postAuditRecord(t, a, "s3cret", id, "data_product_updated")
	if code != http.StatusOK || !strings.Contains(resp, `"enriched"`) {
		t.Fatalf("ingest: %d %s", code, resp)
	}
	eventually(t, "the ingested event to be relayed", func() bool { return a.Relay.Stats().Published == 1 })
	_, metrics := get(t, "http://"+a.HTTPAddr+"/metrics")
	for _, want := range []string{`herald_enricher_records_total{source="ingest",status="enriched"} 1`, `herald_enricher_lag_seconds_count{source="ingest"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// enricher.rules_file is read at boot: a bad file stops Open with the key's
// name, a good one is what the ingest endpoint maps with.
func TestEnricherRulesFileIsCheckedAtBootAndUsedByIngest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	bad := write("bad.yaml", "rules:\n  - action: data_product_frobnicated\n    event: no_such.event\n")
	good := write("good.yaml", "rules:\n  - action: data_product_frobnicated\n    event: data_product.updated\n")

	for _, path := range []string{filepath.Join(dir, "missing.yaml"), bad} {
		if _, err := ingestApp(t, path); err == nil {
			t.Errorf("%s: Open succeeded", path)
		} else if !strings.Contains(err.Error(), "enricher.rules_file") {
			t.Errorf("%s: error does not name the key: %v", path, err)
		}
	}

	a, err := ingestApp(t, good)
	if err != nil {
		t.Fatal(err)
	}
	code, resp := postAuditRecord(t, a, "s3cret", "aaaaaaaa-0000-4000-8000-000000000002", "data_product_frobnicated")
	if code != http.StatusOK || !strings.Contains(resp, `"enriched"`) {
		t.Fatalf("ingest of an action only the rules file maps: %d %s", code, resp)
	}
	eventually(t, "the event to be relayed", func() bool { return a.Relay.Stats().Published == 1 })
}
