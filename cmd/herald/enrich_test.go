package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/internal/portalsample"
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
