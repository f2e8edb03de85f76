package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/bench"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// benchArgs keep a bench run to a few seconds; nothing asserts on speed.
var benchArgs = []string{"bench", "--events", "500", "--duration", "1s", "--rate", "200", "--output", "json"}

func runBench(t *testing.T, extra ...string) bench.Report {
	t.Helper()
	res := herald(context.Background(), t, nil, append(append([]string(nil), benchArgs...), extra...)...)
	if res.code != exitOK {
		t.Fatalf("bench: exit %d\nstderr: %s\nstdout: %s", res.code, res.stderr, res.stdout)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("bench --output json: %v\n%s", err, res.stdout)
	}
	return rep
}

// checkReport asserts the report is complete and every event is accounted
// for: sent, acked once, in the stream once.
func checkReport(t *testing.T, rep bench.Report, events, relays int) {
	t.Helper()
	if rep.Load == nil || rep.DrainCeiling == nil || rep.PublishCeiling == nil || rep.Relay == nil || rep.Latency == nil || rep.Checks == nil {
		t.Fatalf("report incomplete: %+v", rep)
	}
	if rep.Setup.Relays != relays {
		t.Errorf("relays = %d, want %d", rep.Setup.Relays, relays)
	}
	for name, tp := range map[string]*bench.Throughput{
		"load": rep.Load, "drain ceiling": rep.DrainCeiling, "publish ceiling": rep.PublishCeiling, "relay": &rep.Relay.Throughput,
	} {
		if tp.Events != events || tp.Seconds <= 0 || tp.EventsPerSecond <= 0 {
			t.Errorf("%s: %+v, want %d events in a positive time", name, *tp, events)
		}
	}
	r := rep.Relay
	if r.Acked != int64(events) || r.Duplicates != 0 || r.Failed != 0 || r.DeadLettered != 0 || r.Lost != 0 {
		t.Errorf("relay phase: %+v, want every event acked once", *r)
	}
	if r.PercentOfCeiling <= 0 || (r.Ceiling != "drain" && r.Ceiling != "publish") {
		t.Errorf("relay phase compares with %q: %.1f%%", r.Ceiling, r.PercentOfCeiling)
	}
	l := rep.Latency
	if l.Committed < 1 || l.Committed > 201 || l.Acked != l.Committed || l.Lost != 0 {
		t.Errorf("latency phase: %d committed, %d acked, %d lost; want at most 201 committed, all acked", l.Committed, l.Acked, l.Lost)
	}
	if !(0 <= l.P50Ms && l.P50Ms <= l.P95Ms && l.P95Ms <= l.P99Ms && l.P99Ms <= l.MaxMs) {
		t.Errorf("percentiles out of order: p50 %v p95 %v p99 %v max %v", l.P50Ms, l.P95Ms, l.P99Ms, l.MaxMs)
	}
	want := uint64(2*events + l.Committed)
	if rep.Checks.StreamMessages != want || rep.Checks.Expected != want {
		t.Errorf("stream holds %d messages, expected %d; want %d", rep.Checks.StreamMessages, rep.Checks.Expected, want)
	}
	if runtime.GOOS == "linux" {
		res := rep.Resources
		if res.RSSSamples < 1 || res.SteadyRSSMiB <= 0 || res.MaxSampledRSSMiB < res.SteadyRSSMiB || res.PeakRSSMiB <= 0 {
			t.Errorf("resources: %+v", res)
		}
	}
}

func TestBenchOnTheEmbeddedDefault(t *testing.T) {
	// The default config names ./herald.db and ./herald-data: the bench
	// must use temporary ones instead.
	t.Chdir(t.TempDir())
	rep := runBench(t)
	checkReport(t, rep, 500, 1)
	if !strings.Contains(rep.Setup.Database, "SQLite") || !strings.HasPrefix(rep.Setup.Broker, "in-process") {
		t.Errorf("setup: %+v", rep.Setup)
	}
	left, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("bench left %v in the working directory", left)
	}
}

func TestBenchOnPostgreSQLWithTwoRelays(t *testing.T) {
	db := testdb.Migrated(t, "postgres")
	cfg := writeFile(t, "herald.yaml", `
database:
  driver: postgres
  dsn: `+db.DSN+`
nats:
  url: embedded
  embedded_store_dir: `+filepath.Join(t.TempDir(), "js")+`
`)
	rep := runBench(t, "--config", cfg, "--relays", "2")
	checkReport(t, rep, 500, 2)
	if !strings.Contains(rep.Setup.Wakeup, "LISTEN/NOTIFY") {
		t.Errorf("wake-up on PostgreSQL: %q", rep.Setup.Wakeup)
	}
	var rows int64
	if err := db.Gorm.Table(outbox.Table).Count(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Errorf("bench left %d rows in the outbox", rows)
	}
}

func TestBenchRefusesAnOutboxInUse(t *testing.T) {
	db := testdb.Migrated(t, "postgres")
	ev, err := event.New("io.herald.portal.data_product.created", "/portal", map[string]string{"id": "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Write(context.Background(), db.Gorm, ev); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "herald.yaml", "database:\n  driver: postgres\n  dsn: "+db.DSN+"\n")
	res := herald(context.Background(), t, nil, append(append([]string(nil), benchArgs...), "--config", cfg)...)
	if res.code != exitError || !strings.Contains(res.stderr, "outbox not empty") || !strings.Contains(res.stderr, "1 rows (1 pending") {
		t.Fatalf("bench on an outbox holding a row: %+v", res)
	}
	store, err := outbox.NewStore(db.Gorm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(context.Background(), ev.ID); err != nil {
		t.Errorf("the producer's row is gone: %v", err)
	}
}

func TestBenchBadInvocationsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--relays", "2"}, // SQLite takes one relay
		{"bench", "--output", "yaml"},
		{"bench", "--events", "-1"},
	} {
		res := herald(context.Background(), t, nil, args...)
		if res.code != exitUsage {
			t.Errorf("%v: exit %d, want %d; stderr %s", args, res.code, exitUsage, res.stderr)
		}
	}
}
