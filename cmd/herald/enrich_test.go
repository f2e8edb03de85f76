package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/outbox"
)

func TestEnrichTailErrorsRetry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := sqliteConfig(t, dir)
	if res := herald(ctx, t, nil, "migrate", "--config", cfg); res.code != exitOK {
		t.Fatalf("migrate: %+v", res)
	}
	db, err := outbox.OpenSQLite(filepath.Join(dir, "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	if err := portalsample.Load(ctx, db); err != nil {
		t.Fatal(err)
	}
	recs, err := portalsample.AuditRecords(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	unknownID := uuid.NewString()
	err = db.Exec(`INSERT INTO events (id, name, subject_id, subject_type, actor_id, created_on) VALUES (?, 'data_product_frobnicated', ?, 'data_product', ?, ?)`,
		unknownID, recs[0].SubjectID, recs[0].ActorID, time.Now().UTC().Format(time.RFC3339Nano)).Error
	if err != nil {
		t.Fatal(err)
	}

	// tail runs until its context ends, as on SIGINT.
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan result, 1)
	metricsAddr := freeAddr(t)
	go func() {
		done <- herald(tctx, t, nil, "enrich", "tail", "--config", cfg, "--poll-interval", "20ms", "--metrics-listen", metricsAddr)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int64
		// The unknown action is the latest row, so the tail handles it last.
		if err := db.Raw(`SELECT COUNT(*) FROM herald_enricher_quarantine WHERE audit_id = ?`, unknownID).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("tail did not reach the last record: %+v", <-done)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The tail's metrics count what it did, by source and status.
	scrape := func() string {
		resp, err := http.Get("http://" + metricsAddr + "/metrics") //nolint:noctx // a test against 127.0.0.1
		if err != nil {
			return ""
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	body := scrape()
	for _, want := range []string{
		`herald_enricher_records_total{source="tail",status="quarantined"} 1`,
		`herald_enricher_records_total{source="tail",status="enriched"}`,
		`herald_enricher_lag_seconds_count{source="tail"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("tail's /metrics lacks %s", want)
		}
	}
	cancel()
	if res := <-done; res.code != exitOK {
		t.Fatalf("enrich tail: %+v", res)
	}
	var events int64
	if err := db.Raw(`SELECT COUNT(*) FROM herald_outbox`).Scan(&events).Error; err != nil || events < int64(len(recs)/2) {
		t.Fatalf("tail wrote %d events for %d audit records (%v)", events, len(recs), err)
	}

	res := herald(ctx, t, nil, "enrich", "errors", "--config", cfg, "--output", "json")
	if res.code != exitOK {
		t.Fatalf("enrich errors: %+v", res)
	}
	var listed struct {
		Quarantined []struct {
			ID      string `json:"id"`
			AuditID string `json:"audit_record_id"`
			Kind    string `json:"kind"`
			Reason  string `json:"reason"`
		} `json:"quarantined"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &listed); err != nil {
		t.Fatalf("errors --output json: %v\n%s", err, res.stdout)
	}
	found := false
	for _, q := range listed.Quarantined {
		found = found || (q.AuditID == unknownID && q.Kind == "unmapped" && strings.Contains(q.Reason, "data_product_frobnicated"))
	}
	if !found {
		t.Fatalf("unknown action not listed: %s", res.stdout)
	}
	if res := herald(ctx, t, nil, "enrich", "errors", "--config", cfg); res.code != exitOK || !strings.Contains(res.stdout, unknownID) {
		t.Fatalf("enrich errors (text): %+v", res)
	}

	if res := herald(ctx, t, nil, "enrich", "retry", "--config", cfg); res.code != exitUsage {
		t.Errorf("retry without --id/--all: %+v, want usage error", res)
	}
	if res := herald(ctx, t, nil, "enrich", "retry", "--config", cfg, "--id", unknownID); res.code != exitError ||
		!strings.Contains(res.stdout, "still failing") {
		t.Errorf("retry before the fix: %+v", res)
	}
	rules := writeFile(t, "rules.yaml", "rules:\n  - action: data_product_frobnicated\n    event: data_product.updated\n")
	res = herald(ctx, t, nil, "enrich", "retry", "--config", cfg, "--rules", rules, "--id", unknownID)
	if res.code != exitOK || !strings.Contains(res.stdout, "enriched, 1 event") {
		t.Fatalf("retry after the fix: %+v", res)
	}
	if res := herald(ctx, t, nil, "enrich", "errors", "--config", cfg); strings.Contains(res.stdout, unknownID) {
		t.Errorf("retried record still listed: %s", res.stdout)
	}
	if res := herald(ctx, t, nil, "enrich", "retry", "--config", cfg, "--id", unknownID); res.code != exitUsage {
		t.Errorf("retry of a cleared id: %+v, want usage error", res)
	}
}

// freeAddr returns a 127.0.0.1 address no one listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// openSQLiteFile opens an SQLite file for the test's own reads and writes.
func openSQLiteFile(t *testing.T, path string) *gorm.DB {
	t.Helper()
	db, err := outbox.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db
}

// tailUntil runs `herald enrich tail` with args until done holds, then
// stops it as SIGINT would and checks that it exited cleanly.
func tailUntil(t *testing.T, environ []string, done func() bool, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan result, 1)
	go func() {
		exited <- herald(ctx, t, environ, append([]string{"enrich", "tail", "--poll-interval", "20ms"}, args...)...)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !done() {
		select {
		case res := <-exited:
			cancel()
			t.Fatalf("enrich tail exited early: %+v", res)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("enrich tail did not get there: %+v", <-exited)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if res := <-exited; res.code != exitOK {
		t.Fatalf("enrich tail: %+v", res)
	}
}

type quarantinedJSON struct {
	Quarantined []struct {
		AuditID  string `json:"audit_record_id"`
		Kind     string `json:"kind"`
		Reason   string `json:"reason"`
		Attempts int    `json:"attempts"`
	} `json:"quarantined"`
}

// listQuarantine is `herald enrich errors --output json` by audit id.
func listQuarantine(t *testing.T, environ []string, args ...string) map[string]int {
	t.Helper()
	res := herald(context.Background(), t, environ, append([]string{"enrich", "errors", "--output", "json"}, args...)...)
	if res.code != exitOK {
		t.Fatalf("enrich errors: %+v", res)
	}
	var l quarantinedJSON
	if err := json.Unmarshal([]byte(res.stdout), &l); err != nil {
		t.Fatalf("enrich errors --output json: %v\n%s", err, res.stdout)
	}
	out := map[string]int{}
	for _, q := range l.Quarantined {
		out[q.AuditID+" "+q.Kind] = q.Attempts
	}
	return out
}

// With a webhook main adapter, `herald enrich tail` needs neither the
// webhook's URL nor its secrets, which only serve uses: it starts, and
// quarantines an event larger than the webhook takes (its body limit),
// where `herald enrich retry` reaches it.
func TestEnrichTailWithAWebhookAdapterAndOversizeEvents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "outbox.db")
	cfg := writeFile(t, "herald.yaml", "database:\n  driver: sqlite\n  dsn: "+dbPath+"\nadapter: webhook\nlog:\n  level: warn\n")
	if res := herald(ctx, t, nil, "serve", "--config", cfg); res.code != exitUsage || !strings.Contains(res.stderr, "webhook.secrets") {
		t.Fatalf("serve without webhook secrets: %+v, want refused naming webhook.secrets", res)
	}
	db := openSQLiteFile(t, dbPath)
	if _, err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := portalsample.Load(ctx, db); err != nil {
		t.Fatal(err)
	}
	// A technical asset whose portal row has a 5 MB configuration.
	huge := `{"blob":"` + strings.Repeat("x", 5<<20) + `"}`
	if err := db.Exec(`UPDATE data_outputs SET configuration = ? WHERE id = '30000000-0000-4000-8000-000000000001'`, huge).Error; err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	err := db.Exec(`INSERT INTO events (id, name, subject_id, subject_type, actor_id, created_on)
VALUES (?, 'data_output_updated', '30000000-0000-4000-8000-000000000001', 'data_output', '00000000-0000-4000-8000-000000000001', ?)`,
		id, time.Now().UTC().Format(time.RFC3339Nano)).Error
	if err != nil {
		t.Fatal(err)
	}
	tailUntil(t, nil, func() bool {
		var n int64
		_ = db.Raw(`SELECT COUNT(*) FROM herald_enricher_quarantine WHERE audit_id = ?`, id).Scan(&n).Error
		return n == 1
	}, "--config", cfg)

	var kind, reason string
	if err := db.Raw(`SELECT kind, reason FROM herald_enricher_quarantine WHERE audit_id = ?`, id).Row().Scan(&kind, &reason); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("at most %d", webhook.DefaultMaxBodySize); kind != "too_large" || !strings.Contains(reason, want) {
		t.Fatalf("quarantined as %q: %.200s; want too_large with %q", kind, reason, want)
	}
	var events int64
	if err := db.Raw(`SELECT COUNT(*) FROM herald_outbox WHERE payload LIKE ?`, "%"+id+"%").Scan(&events).Error; err != nil || events != 0 {
		t.Fatalf("%d outbox rows for the oversize record (%v), want none", events, err)
	}
	res := herald(ctx, t, nil, "enrich", "retry", "--config", cfg, "--id", id)
	if res.code != exitError || !strings.Contains(res.stdout, "still failing") || !strings.Contains(res.stdout, "bytes, the main destination accepts at most") {
		t.Fatalf("retry of the oversize record: %+v, want it reached and still too large", res)
	}
	if got := listQuarantine(t, nil, "--config", cfg); got[id+" too_large"] != 2 {
		t.Errorf("after the retry: %v, want %s too_large with 2 attempts", got, id)
	}
}

// `herald enrich retry` without the portal's database, which is not the
// outbox's, cannot read the portal: it leaves the quarantine as it was,
// not_found and all, and says why. With the portal (--portal-dsn, or
// enricher.portal_dsn) it retries.
func TestEnrichRetryWithoutThePortalKeepsNotFound(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := sqliteConfig(t, dir)
	if res := herald(ctx, t, nil, "migrate", "--config", cfg); res.code != exitOK {
		t.Fatalf("migrate: %+v", res)
	}
	out := openSQLiteFile(t, filepath.Join(dir, "outbox.db"))
	portalPath := filepath.Join(dir, "portal.db")
	portal := openSQLiteFile(t, portalPath)
	if err := portalsample.Load(ctx, portal); err != nil {
		t.Fatal(err)
	}
	recs, err := portalsample.AuditRecords(ctx, portal)
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	err = portal.Exec(`INSERT INTO events (id, name, subject_id, subject_type, actor_id, created_on) VALUES (?, 'data_product_updated', ?, 'data_product', ?, ?)`,
		id, uuid.NewString(), recs[0].ActorID, time.Now().UTC().Format(time.RFC3339Nano)).Error
	if err != nil {
		t.Fatal(err)
	}
	tailUntil(t, nil, func() bool {
		var n int64
		_ = out.Raw(`SELECT COUNT(*) FROM herald_enricher_quarantine WHERE audit_id = ?`, id).Scan(&n).Error
		return n == 1
	}, "--config", cfg, "--portal-dsn", portalPath, "--portal-driver", "sqlite")
	if got := listQuarantine(t, nil, "--config", cfg); got[id+" not_found"] != 1 {
		t.Fatalf("quarantine after the tail: %v, want %s not_found", got, id)
	}

	res := herald(ctx, t, nil, "enrich", "retry", "--config", cfg, "--all")
	if res.code != exitError || !strings.Contains(res.stderr, "portal") || !strings.Contains(res.stderr, "cannot be read") {
		t.Fatalf("retry without the portal: %+v, want it to fail saying the portal cannot be read", res)
	}
	if got := listQuarantine(t, nil, "--config", cfg); got[id+" not_found"] != 1 {
		t.Fatalf("retry without the portal changed the quarantine: %v, want %s still not_found after 1 attempt", got, id)
	}
	// The config key does what --portal-dsn does.
	env := []string{"HERALD_ENRICHER_PORTAL_DSN=" + portalPath}
	res = herald(ctx, t, env, "enrich", "retry", "--config", cfg, "--id", id)
	if res.code != exitError || !strings.Contains(res.stdout, "still failing") {
		t.Fatalf("retry with enricher.portal_dsn: %+v, want it retried and still failing", res)
	}
	if got := listQuarantine(t, env, "--config", cfg); got[id+" not_found"] != 2 {
		t.Errorf("after the retry with the portal: %v, want %s not_found after 2 attempts", got, id)
	}
}

// `herald enrich verify` accounts for every audit record after the tail,
// finds one whose processed id is gone, and exits non-zero while one is.
func TestEnrichVerify(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := sqliteConfig(t, dir)
	if res := herald(ctx, t, nil, "migrate", "--config", cfg); res.code != exitOK {
		t.Fatalf("migrate: %+v", res)
	}
	db := openSQLiteFile(t, filepath.Join(dir, "outbox.db"))
	if err := portalsample.Load(ctx, db); err != nil {
		t.Fatal(err)
	}
	recent := uuid.NewString()
	err := db.Exec(`INSERT INTO events (id, name, subject_id, subject_type, actor_id, created_on)
VALUES (?, 'data_product_updated', '10000000-0000-4000-8000-000000000001', 'data_product', '00000000-0000-4000-8000-000000000001', ?)`,
		recent, time.Now().UTC().Format(time.RFC3339Nano)).Error
	if err != nil {
		t.Fatal(err)
	}
	var audit int64
	if err := db.Raw(`SELECT COUNT(*) FROM events`).Scan(&audit).Error; err != nil {
		t.Fatal(err)
	}
	tailUntil(t, nil, func() bool {
		var n int64
		_ = db.Raw(`SELECT COUNT(*) FROM herald_enricher_processed`).Scan(&n).Error
		return n == audit
	}, "--config", cfg)

	const allTime = "2000-01-01"
	res := herald(ctx, t, nil, "enrich", "verify", "--config", cfg, "--since", allTime)
	if want := fmt.Sprintf("%d audit record(s) created since 2000-01-01T00:00:00Z checked: every one was enriched or quarantined", audit); res.code != exitOK ||
		strings.TrimSpace(res.stdout) != want {
		t.Fatalf("verify after the tail: %+v, want exit 0 and %q", res, want)
	}

	// Processed ids lost: the sample's (a month old) and the recent one.
	var old string
	if err := db.Raw(`SELECT audit_id FROM herald_enricher_processed WHERE audit_id <> ? ORDER BY audit_id LIMIT 1`, recent).Scan(&old).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`DELETE FROM herald_enricher_processed WHERE audit_id IN (?, ?)`, old, recent).Error; err != nil {
		t.Fatal(err)
	}
	res = herald(ctx, t, nil, "enrich", "verify", "--config", cfg, "--since", allTime)
	if res.code != exitError || !strings.Contains(res.stdout, old) || !strings.Contains(res.stdout, recent) ||
		!strings.Contains(res.stdout, "data_product_updated") || !strings.Contains(res.stdout, "2 never handled") ||
		!strings.Contains(res.stderr, "2 audit record(s)") {
		t.Fatalf("verify with two processed ids lost: %+v", res)
	}
	// The default window is the retention of processed ids: the recent
	// record only.
	res = herald(ctx, t, nil, "enrich", "verify", "--config", cfg, "--output", "json")
	var rep struct {
		Since   time.Time `json:"since"`
		Checked int       `json:"checked"`
		Missing []struct {
			ID        string    `json:"id"`
			Name      string    `json:"name"`
			CreatedOn time.Time `json:"created_on"`
		} `json:"missing"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("verify --output json: %v\n%s", err, res.stdout)
	}
	if res.code != exitError || rep.Checked != 1 || len(rep.Missing) != 1 || rep.Missing[0].ID != recent ||
		time.Since(rep.Since) < enricher.DefaultProcessedRetention-time.Minute || rep.Missing[0].CreatedOn.IsZero() {
		t.Errorf("verify with the default --since: %+v (exit %d), want the recent record alone, since %s ago",
			rep, res.code, enricher.DefaultProcessedRetention)
	}
	for _, since := range []string{"yesterday", "-2h"} {
		if res := herald(ctx, t, nil, "enrich", "verify", "--config", cfg, "--since", since); res.code != exitUsage || !strings.Contains(res.stderr, "--since") {
			t.Errorf("--since %s: %+v, want a usage error naming --since", since, res)
		}
	}
	if res := herald(ctx, t, nil, "enrich", "verify", "--config", cfg, "--since", "30d"); res.code != exitError || !strings.Contains(res.stdout, recent) {
		t.Errorf("--since 30d: %+v, want the recent record found", res)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
	}{
		{"", now.Add(-enricher.DefaultProcessedRetention)},
		{"48h", now.Add(-48 * time.Hour)},
		{"7d", now.AddDate(0, 0, -7)},
		{"2026-11-01", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-11-01T10:00:00+02:00", time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)},
	} {
		got, err := parseSince(tt.in, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseSince(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"soon", "-1h", "2026-13-01", "d"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) accepted", bad)
		}
	}
}
