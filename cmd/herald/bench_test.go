package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
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
// for: sent, acked once, in the stream once, phase by phase.
func checkReport(t *testing.T, rep bench.Report, events, relays int, backlogs ...int) {
	t.Helper()
	if len(backlogs) == 0 {
		backlogs = []int{events}
	}
	if rep.Load == nil || rep.BrokerCeiling == nil || rep.Reference == nil || len(rep.Relays) != len(backlogs) ||
		rep.Writers == nil || rep.Latency == nil || rep.Checks == nil {
		t.Fatalf("report incomplete: %+v", rep)
	}
	if rep.Setup.Relays != relays {
		t.Errorf("relays = %d, want %d", rep.Setup.Relays, relays)
	}
	tps := map[string]*bench.Throughput{"load": rep.Load, "broker ceiling": rep.BrokerCeiling, "reference relay": &rep.Reference.Throughput}
	for name, tp := range tps {
		if tp.Events != events || tp.Seconds <= 0 || tp.EventsPerSecond <= 0 {
			t.Errorf("%s: %+v, want %d events in a positive time", name, *tp, events)
		}
	}
	ref := rep.Reference
	if ref.Workers != relays || ref.Acked != int64(events) || ref.Duplicates != 0 || ref.Transactions < 1 {
		t.Errorf("reference relay: %+v, want %d workers and every event acked once", *ref, relays)
	}
	for i, r := range rep.Relays {
		n := backlogs[i]
		if r.Events != n || r.Seconds <= 0 || r.Acked != int64(n) || r.Duplicates != 0 || r.Failed != 0 || r.DeadLettered != 0 || r.Lost != 0 {
			t.Errorf("herald relay, backlog %d: %+v, want every event acked once", n, r)
		}
		// The ratios are of the figures in the same report.
		if !near(r.VsReference, r.EventsPerSecond/ref.EventsPerSecond) || !near(r.VsBrokerCeiling, r.EventsPerSecond/rep.BrokerCeiling.EventsPerSecond) ||
			!near(r.MicrosPerEvent, 1e6/r.EventsPerSecond) {
			t.Errorf("herald relay, backlog %d: ratios %.3f × reference, %.3f × broker, %.1f µs/event do not match its %.0f events/s",
				n, r.VsReference, r.VsBrokerCeiling, r.MicrosPerEvent, r.EventsPerSecond)
		}
	}
	w := rep.Writers
	if w.Outbox.Table != outbox.Table || w.Copy.Table != bench.CopyTable || w.Outbox.Commits < 1 || w.Copy.Commits < 1 ||
		len(w.Outbox.Turns) != 2 || len(w.Copy.Turns) != 2 ||
		!near(w.Ratio, w.Outbox.PerSecond/w.Copy.PerSecond) {
		t.Errorf("writers: %+v", *w)
	}
	l := rep.Latency
	if l.Committed < 1 || l.Committed > 201 || l.Acked != l.Committed || l.Lost != 0 {
		t.Errorf("latency phase: %d committed, %d acked, %d lost; want at most 201 committed, all acked", l.Committed, l.Acked, l.Lost)
	}
	if !(0 <= l.P50Ms && l.P50Ms <= l.P95Ms && l.P95Ms <= l.P99Ms && l.P99Ms <= l.MaxMs) {
		t.Errorf("percentiles out of order: p50 %v p95 %v p99 %v max %v", l.P50Ms, l.P95Ms, l.P99Ms, l.MaxMs)
	}
	// Every publishing phase is checked on its own, the stream purged
	// after it; the writers' phase publishes nothing.
	want := []bench.PhaseCheck{{Phase: "broker ceiling", Expected: uint64(events)}, {Phase: "reference relay", Expected: uint64(events)}}
	for _, n := range backlogs {
		want = append(want, bench.PhaseCheck{Phase: fmt.Sprintf("herald relay, backlog %d", n), Expected: uint64(n)})
	}
	want = append(want, bench.PhaseCheck{Phase: "latency", Expected: uint64(l.Committed)})
	var total uint64
	for i := range want {
		want[i].StreamMessages = want[i].Expected
		total += want[i].Expected
	}
	if !slices.Equal(rep.Checks.Phases, want) || rep.Checks.StreamMessages != total || rep.Checks.Expected != total {
		t.Errorf("checks: %+v\nwant phases %+v, %d messages in all", *rep.Checks, want, total)
	}
	if runtime.GOOS == "linux" {
		res := rep.Resources
		if res.RSSSamples < 1 || res.SteadyRSSMiB <= 0 || res.MaxSampledRSSMiB < res.SteadyRSSMiB || res.PeakRSSMiB <= 0 || res.RelayPhaseCPUCores <= 0 {
			t.Errorf("resources: %+v", res)
		}
	}
}

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-6*math.Abs(want) }

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

func TestBenchWithTwoRelays(t *testing.T) {
	for _, dialect := range []string{"postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			db := testdb.Migrated(t, dialect)
			cfg := writeFile(t, "herald.yaml", `
database:
  driver: `+dialect+`
  dsn: '`+db.DSN+`'
nats:
  url: embedded
  embedded_store_dir: `+filepath.Join(t.TempDir(), "js")+`
`)
			rep := runBench(t, "--config", cfg, "--relays", "2")
			checkReport(t, rep, 500, 2)
			if dialect == "postgres" {
				if !strings.Contains(rep.Setup.Wakeup, "LISTEN/NOTIFY") {
					t.Errorf("wake-up on PostgreSQL: %q", rep.Setup.Wakeup)
				}
				// Read from the catalog, so whatever the migrations install.
				if len(rep.Writers.Triggers) == 0 || rep.Writers.Listeners != 2 {
					t.Errorf("writers on PostgreSQL: triggers %q, %d listeners; want the outbox's triggers and one LISTEN per relay",
						rep.Writers.Triggers, rep.Writers.Listeners)
				}
			}
			var rows int64
			if err := db.Gorm.Table(outbox.Table).Count(&rows).Error; err != nil {
				t.Fatal(err)
			}
			if rows != 0 {
				t.Errorf("bench left %d rows in the outbox", rows)
			}
			if db.Gorm.Migrator().HasTable(bench.CopyTable) {
				t.Errorf("bench left its table %s behind", bench.CopyTable)
			}
		})
	}
}

func TestBenchRunsEveryBacklogWithOneHotKey(t *testing.T) {
	t.Chdir(t.TempDir())
	rep := runBench(t, "--backlogs", "200,400", "--keys", "1")
	checkReport(t, rep, 500, 1, 200, 400)
	if rep.Setup.PartitionKeys != 1 {
		t.Errorf("partition keys: %d, want 1", rep.Setup.PartitionKeys)
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
		{"bench", "--backlogs", "1000,0"},
		{"bench", "--backlogs", "many"},
	} {
		res := herald(context.Background(), t, nil, args...)
		if res.code != exitUsage {
			t.Errorf("%v: exit %d, want %d; stderr %s", args, res.code, exitUsage, res.stderr)
		}
	}
}
