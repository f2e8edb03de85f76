package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	natsadapter "github.com/heraldhq/herald/adapters/nats"
	"github.com/heraldhq/herald/adapters/servicebus"
	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/pkg/enricher"
)

// countRows counts what an ingest request can leave behind.
func countRows(t *testing.T, a *app.App) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, table := range []string{"herald_outbox", enricher.ProcessedTable, enricher.QuarantineTable} {
		var n int64
		if err := a.DB.Raw("SELECT COUNT(*) FROM " + table).Scan(&n).Error; err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		out[table] = n
	}
	return out
}

// serve reads the portal of enricher.portal_dsn, booting even while it is
// down: a record it cannot be read for is answered 503 and recorded
// nowhere, whether the portal is unreachable or reached without its tables,
// and the same record goes through once the portal is there.
func TestServeIngestReadsThePortalSetting(t *testing.T) {
	for _, tt := range []struct {
		name, driver, dsn string
	}{
		{"unreachable", "postgres", "postgres://herald@127.0.0.1:1/portal?sslmode=disable&connect_timeout=2"},
		{"tables missing", "sqlite", ""}, // a fresh file
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.HTTP.Listen, cfg.HTTP.IngestToken = "127.0.0.1:0", "s3cret"
			cfg.Enricher.PortalDriver, cfg.Enricher.PortalDSN = tt.driver, tt.dsn
			if tt.dsn == "" {
				cfg.Enricher.PortalDSN = filepath.Join(t.TempDir(), "portal.db")
			}
			a, err := open(t, cfg)
			if err != nil {
				t.Fatalf("serve did not boot with the portal %s: %v", tt.name, err)
			}
			if a.Portal == nil {
				t.Fatal("App.Portal is nil with enricher.portal_dsn set")
			}
			// The portal's tables in the outbox's database are not the
			// portal: serve must not look there.
			if err := portalsample.Load(context.Background(), a.DB); err != nil {
				t.Fatal(err)
			}
			run(t, a)
			none := countRows(t, a)
			const id = "bbbbbbbb-0000-4000-8000-000000000001"
			code, resp := postAuditRecord(t, a, "s3cret", id, "data_product_updated")
			if code != http.StatusServiceUnavailable || !strings.Contains(resp, `"portal_unavailable"`) {
				t.Fatalf("ingest with the portal %s: %d %s, want 503 portal_unavailable", tt.name, code, resp)
			}
			if got := countRows(t, a); got["herald_outbox"] != none["herald_outbox"] ||
				got[enricher.ProcessedTable] != none[enricher.ProcessedTable] || got[enricher.QuarantineTable] != none[enricher.QuarantineTable] {
				t.Fatalf("the record was recorded: %v, before %v", got, none)
			}
			if tt.driver != "sqlite" {
				return
			}
			if err := portalsample.Load(context.Background(), a.Portal); err != nil {
				t.Fatal(err)
			}
			if code, resp := postAuditRecord(t, a, "s3cret", id, "data_product_updated"); code != http.StatusOK || !strings.Contains(resp, `"enriched"`) {
				t.Fatalf("ingest once the portal has its tables: %d %s", code, resp)
			}
		})
	}
}

// serve's ingest keeps out of the outbox an event larger than the main
// destination takes (here the embedded server's max_payload).
func TestServeIngestQuarantinesWhatMainCannotTake(t *testing.T) {
	a, err := ingestApp(t, "")
	if err != nil {
		t.Fatal(err)
	}
	huge := `{"blob":"` + strings.Repeat("x", 5<<20) + `"}`
	if err := a.DB.Exec(`UPDATE data_outputs SET configuration = ? WHERE id = '30000000-0000-4000-8000-000000000001'`, huge).Error; err != nil {
		t.Fatal(err)
	}
	body := `{"records":[{"id":"cccccccc-0000-4000-8000-000000000001","name":"data_output_updated",
	  "subject_id":"30000000-0000-4000-8000-000000000001","subject_type":"data_output",
	  "actor_id":"00000000-0000-4000-8000-000000000001","created_on":"2026-11-02T09:00:00Z"}]}`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+a.HTTPAddr+enricher.IngestPath, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer s3cret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: %d", resp.StatusCode)
	}
	var kind, reason string
	if err := a.DB.Raw("SELECT kind, reason FROM "+enricher.QuarantineTable+" WHERE audit_id = 'cccccccc-0000-4000-8000-000000000001'").
		Row().Scan(&kind, &reason); err != nil {
		t.Fatalf("the oversize record is not quarantined: %v", err)
	}
	limit := a.Publisher.(interface{ MaxMessageBytes() int }).MaxMessageBytes()
	if kind != enricher.KindTooLarge || !strings.Contains(reason, "at most "+strconv.Itoa(limit)) {
		t.Errorf("quarantined as %q: %.200s; want too_large naming the publisher's limit %d", kind, reason, limit)
	}
}

// MaxEventBytes, for `herald enrich`: the broker's word where the broker
// sets the limit, the configuration's where it does, and a default, with a
// warning, where the broker cannot be asked.
func TestMaxEventBytes(t *testing.T) {
	// A server whose max_payload is not the default, so that asking it
	// shows.
	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, MaxPayload: 64 << 10, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server not ready")
	}
	asked := natsadapter.PayloadLimit(64<<10, natsadapter.Structured)
	defaultNATS := natsadapter.PayloadLimit(natsadapter.DefaultMaxPayload, natsadapter.Structured)
	for _, tt := range []struct {
		name   string
		mutate func(*config.Config)
		want   int
	}{
		{"nats server", func(c *config.Config) { c.NATS.URL = srv.ClientURL() }, asked},
		{"nats unreachable", func(c *config.Config) { c.NATS.URL = "nats://127.0.0.1:1" }, defaultNATS},
		{"nats embedded", func(*config.Config) {}, defaultNATS},
		{"nats embedded, binary", func(c *config.Config) { c.NATS.Binding = "binary" },
			natsadapter.PayloadLimit(natsadapter.DefaultMaxPayload, natsadapter.Binary)},
		{"webhook", func(c *config.Config) { c.Adapter = "webhook" }, webhook.DefaultMaxBodySize},
		{"servicebus default", func(c *config.Config) { c.Adapter = "servicebus" }, servicebus.PayloadLimit(servicebus.DefaultMaxMessageSize)},
		{"servicebus premium", func(c *config.Config) { c.Adapter, c.ServiceBus.MaxMessageSize = "servicebus", 1<<20 },
			servicebus.PayloadLimit(1 << 20)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			tt.mutate(&cfg)
			if got := app.MaxEventBytes(t.Context(), cfg, slog.New(slog.DiscardHandler)); got != tt.want {
				t.Errorf("MaxEventBytes = %d, want %d", got, tt.want)
			}
		})
	}
}

// OpenPortalDB opens without connecting, so that a portal that is down
// does not stop a boot; only a DSN that cannot be read fails.
func TestOpenPortalDB(t *testing.T) {
	for _, tt := range []struct{ driver, dsn string }{
		{"postgres", "postgres://herald@127.0.0.1:1/portal?sslmode=disable"},
		{"mysql", "herald@tcp(127.0.0.1:1)/portal"},
		{"sqlite", filepath.Join(t.TempDir(), "portal.db")},
	} {
		db, err := app.OpenPortalDB(tt.driver, tt.dsn)
		if err != nil {
			t.Errorf("%s: %v", tt.driver, err)
			continue
		}
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	}
	if _, err := app.OpenPortalDB("mysql", "not a dsn"); err == nil {
		t.Error("a MySQL DSN that does not parse was accepted")
	}
	if _, err := app.OpenPortalDB("oracle", "x"); err == nil || !strings.Contains(err.Error(), "oracle") {
		t.Errorf("an unknown driver: %v", err)
	}
}
