package bench

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/config"
)

func TestPercentileIsNearestRank(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	sorted := ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	for _, tc := range []struct {
		q    float64
		want float64
	}{{0.5, 5}, {0.95, 10}, {0.99, 10}, {0.1, 1}, {0, 1}} {
		if got := percentile(sorted, tc.q); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := percentile(ms(7), 0.99); got != 7 {
		t.Errorf("percentile of one sample = %v", got)
	}
}

func TestGroup(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 20000: "20,000", 1234567: "1,234,567", -4500: "-4,500"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
}

type fakePublisher struct{ got []adapters.Message }

func (f *fakePublisher) Publish(_ context.Context, msgs []adapters.Message) []adapters.Result {
	f.got = append(f.got, msgs...)
	return make([]adapters.Result, len(msgs))
}

func (f *fakePublisher) Close() error { return nil }

func TestRecorderRefusesForeignEventsAndStopsThePhase(t *testing.T) {
	ctx, abort := context.WithCancelCause(context.Background())
	defer abort(nil)
	tr := newTracker(abort, 2, 0)
	pub := &fakePublisher{}
	rec := &recorder{inner: pub, tracker: tr}
	res := rec.Publish(ctx, []adapters.Message{
		{ID: "a", Type: EventType},
		{ID: "x", Type: "io.herald.portal.data_product.created"},
		{ID: "b", Type: EventType},
	})
	if len(res) != 3 || res[0].Err != nil || !errors.Is(res[1].Err, ErrForeignEvent) || res[2].Err != nil {
		t.Fatalf("results: %+v", res)
	}
	if len(pub.got) != 2 || pub.got[0].ID != "a" || pub.got[1].ID != "b" {
		t.Errorf("the broker got %+v, want only the bench's events", pub.got)
	}
	if !errors.Is(context.Cause(ctx), ErrForeignEvent) {
		t.Errorf("phase not stopped: cause %v", context.Cause(ctx))
	}
	select {
	case <-tr.done:
	default:
		t.Error("two acks of a target of two did not complete the phase")
	}
}

func TestTrackerMatchesAcksToCommits(t *testing.T) {
	tr := newTracker(func(error) {}, 1<<62, 3)
	tr.register("a", 0)
	tr.register("b", 1)
	tr.committed(0, tr.base.Add(time.Millisecond))
	tr.record([]adapters.Message{{ID: "a"}, {ID: "b"}, {ID: "unknown"}}, make([]adapters.Result, 3), tr.base.Add(5*time.Millisecond))
	tr.committed(1, tr.base.Add(6*time.Millisecond)) // its ack came first
	if got := tr.ack[0] - tr.commit[0]; got != 4*time.Millisecond {
		t.Errorf("latency of a = %v, want 4ms", got)
	}
	if tr.ack[1]-tr.commit[1] >= 0 {
		t.Errorf("b's ack before its commit returned should show as negative, got %v", tr.ack[1]-tr.commit[1])
	}
	tr.setTarget(3)
	if err := tr.wait(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestWriteTextShowsEveryPhaseAndWhatDidNotRun(t *testing.T) {
	rep := Report{
		Setup: Setup{Database: "PostgreSQL 127.0.0.1:5432/test", Broker: "NATS JetStream nats://127.0.0.1:4222", Relays: 1, BatchSize: 100,
			ReferenceBatch: 500, MaxPendingAcks: 1024, CPUs: 2},
		Load:          &Throughput{Events: 20000, Seconds: 1, EventsPerSecond: 20000},
		BrokerCeiling: &Throughput{Events: 20000, Seconds: 0.5, EventsPerSecond: 40000},
		Reference:     &Reference{Throughput: Throughput{Events: 20000, Seconds: 2, EventsPerSecond: 10000}, Workers: 1, Transactions: 40, MeanBatch: 500},
	}
	var partial bytes.Buffer
	if err := rep.WriteText(&partial); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1 broker ceiling: async publish, 1,024 acks pending", "40,000", "2 reference relay: DELETE … RETURNING 500", "10,000",
		"3 herald relay ", "4 writers' commit rate: not run", "5 latency: not run"} {
		if !strings.Contains(partial.String(), want) {
			t.Errorf("partial report lacks %q:\n%s", want, partial.String())
		}
	}
	rep.Relays = []Relay{
		{Throughput: Throughput{Events: 20000, Seconds: 2.5, EventsPerSecond: 8000}, MicrosPerEvent: 125, VsReference: 0.8, VsBrokerCeiling: 0.2},
		{Throughput: Throughput{Events: 200000, Seconds: 25, EventsPerSecond: 8000}, MicrosPerEvent: 125, VsReference: 0.8, VsBrokerCeiling: 0.2},
	}
	rep.Writers = &Writers{Writers: 16, Seconds: 5, Triggers: []string{"herald_outbox_notify"},
		Outbox: WriteRate{Table: "herald_outbox", Commits: 9000, Seconds: 5, PerSecond: 1800, Turns: []float64{1700, 1900.4}},
		Copy:   WriteRate{Table: CopyTable, Commits: 10000, Seconds: 5, PerSecond: 2000}, Ratio: 0.9}
	rep.Latency = &Latency{OfferedRate: 1000, Seconds: 10, Committed: 10000, Acked: 10000, P50Ms: 3, P95Ms: 9.5, P99Ms: 21.25, MaxMs: 40}
	rep.Checks = &Checks{StreamMessages: 60000, Expected: 60000, Phases: []PhaseCheck{
		{Phase: "broker ceiling", StreamMessages: 20000, Expected: 20000}, {Phase: "latency", StreamMessages: 40000, Expected: 40000}}}
	var full bytes.Buffer
	if err := rep.WriteText(&full); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"3 herald relay, backlog 20,000 ", "3 herald relay, backlog 200,000",
		"0.80 × reference, 0.20 × broker ceiling; 125.0 µs/event",
		"1,800 tps (turns 1,700, 1,900)  trigger herald_outbox_notify", "2,000 tps  copy without triggers",
		"with/without the wake-up: 0.90 ×", "5s on each table",
		"p50 3.00ms  p95 9.50ms  p99 21.2ms  max 40.0ms", "holds 60,000 messages in all", "no event lost or duplicated",
	} {
		if !strings.Contains(full.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, full.String())
		}
	}
	rep.Checks.Phases[1].StreamMessages--
	rep.Checks.StreamMessages--
	var failed bytes.Buffer
	if err := rep.WriteText(&failed); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(failed.String(), "MISMATCH") || strings.Contains(failed.String(), "no event lost") {
		t.Errorf("a failed check reads as passed:\n%s", failed.String())
	}
}

func TestPhaseTableColumnsLineUp(t *testing.T) {
	rep := Report{
		Setup:         Setup{ReferenceBatch: 500, MaxPendingAcks: 1024},
		BrokerCeiling: &Throughput{Events: 20000, Seconds: 0.5, EventsPerSecond: 40000},
		Reference:     &Reference{Throughput: Throughput{Events: 20000, Seconds: 2, EventsPerSecond: 10000}},
	}
	var out bytes.Buffer
	rep.writePhases(&printer{w: &out})
	// The events/s column ends where its header does, in characters: the
	// "…" of the reference's label is three bytes.
	end := func(line, field string) int {
		return utf8.RuneCountInString(line[:strings.Index(line, field)+len(field)])
	}
	lines := strings.Split(out.String(), "\n")
	want := end(lines[0], "events/s")
	for _, l := range []struct{ line, value string }{{lines[2], "40,000"}, {lines[3], "10,000"}} {
		if got := end(l.line, l.value); got != want {
			t.Errorf("%q ends at column %d, its header at %d:\n%s", l.value, got, want, out.String())
		}
		if strings.HasSuffix(l.line, " ") {
			t.Errorf("trailing space in %q", l.line)
		}
	}
}

func TestOptionsRefuseBadBacklogsAndDefaultThem(t *testing.T) {
	o, err := Options{Events: 300, Config: natsConfig()}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Backlogs) != 1 || o.Backlogs[0] != 300 || o.WriteDuration != DefaultDuration/2 {
		t.Errorf("defaults: backlogs %v, write duration %s", o.Backlogs, o.WriteDuration)
	}
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"zero backlog", Options{Backlogs: []int{1000, 0}}},
		{"negative backlog", Options{Backlogs: []int{-5}}},
		{"negative write duration", Options{WriteDuration: -time.Second}},
	} {
		tc.opts.Config = natsConfig()
		if _, err := tc.opts.withDefaults(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: %v, want ErrInvalidOptions", tc.name, err)
		}
	}
}

func TestAcksKeepTheLatestAck(t *testing.T) {
	var a acks
	if !a.lastAck().IsZero() {
		t.Fatal("no ack yet, but a last ack time")
	}
	a.add(3, 1)
	first := a.lastAck()
	a.last.Store(first.Add(time.Hour).UnixNano()) // a later ack from another worker
	a.add(2, 0)
	if got := a.lastAck(); !got.Equal(first.Add(time.Hour)) {
		t.Errorf("last ack went back from %v to %v", first.Add(time.Hour), got)
	}
	if a.acked.Load() != 5 || a.stored() != 4 {
		t.Errorf("acked %d, stored %d; want 5 and 4", a.acked.Load(), a.stored())
	}
}

func TestSQLiteCopyRenamesTheTableAndItsIndexes(t *testing.T) {
	for _, tc := range []struct {
		name string
		objs []sqliteObject
		want []string
		bad  bool
	}{{
		name: "renamed by a migration, quoted",
		objs: []sqliteObject{
			{Type: "index", Name: "herald_outbox_pending", SQL: `CREATE INDEX herald_outbox_pending ON "herald_outbox" (destination, seq) WHERE state = 'pending'`},
			{Type: "table", Name: "herald_outbox", SQL: `CREATE TABLE "herald_outbox" (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  UNIQUE (event_id, destination))`},
			{Type: "index", Name: "by_key", SQL: `CREATE UNIQUE INDEX by_key ON herald_outbox(partition_key)`},
		},
		want: []string{
			"CREATE TABLE herald_bench_nowake (\n  seq INTEGER PRIMARY KEY AUTOINCREMENT,\n  UNIQUE (event_id, destination))",
			"CREATE INDEX herald_bench_nowake_pending ON herald_bench_nowake (destination, seq) WHERE state = 'pending'",
			"CREATE UNIQUE INDEX herald_bench_nowake_by_key ON herald_bench_nowake (partition_key)",
		},
	}, {
		name: "no table statement",
		objs: []sqliteObject{{Type: "index", Name: "herald_outbox_dead", SQL: `CREATE INDEX herald_outbox_dead ON herald_outbox (seq)`}},
		bad:  true,
	}, {
		name: "an index of another table",
		objs: []sqliteObject{
			{Type: "table", Name: "herald_outbox", SQL: `CREATE TABLE herald_outbox (seq INTEGER)`},
			{Type: "index", Name: "x", SQL: `CREATE INDEX x ON herald_outbox_relays (seq)`},
		},
		bad: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sqliteCopy(tc.objs, "herald_outbox", CopyTable)
			if tc.bad {
				if err == nil {
					t.Fatalf("no error; statements %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("statements:\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func natsConfig() config.Config {
	var c config.Config
	c.Adapter = "nats"
	return c
}
