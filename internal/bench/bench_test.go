package bench

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters"
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
		Setup:          Setup{Database: "PostgreSQL 127.0.0.1:5432/test", Broker: "NATS JetStream nats://127.0.0.1:4222", Relays: 1, BatchSize: 100, CPUs: 2},
		Load:           &Throughput{Events: 20000, Seconds: 1, EventsPerSecond: 20000},
		DrainCeiling:   &Throughput{Events: 20000, Seconds: 2, EventsPerSecond: 10000},
		PublishCeiling: &Throughput{Events: 20000, Seconds: 0.5, EventsPerSecond: 40000},
	}
	var partial bytes.Buffer
	if err := rep.WriteText(&partial); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1 ceiling: database drain", "10,000", "40,000", "4 latency: not run"} {
		if !strings.Contains(partial.String(), want) {
			t.Errorf("partial report lacks %q:\n%s", want, partial.String())
		}
	}
	rep.Relay = &Relay{Throughput: Throughput{Events: 20000, Seconds: 2.5, EventsPerSecond: 8000}, PercentOfCeiling: 80, Ceiling: "drain"}
	rep.Latency = &Latency{OfferedRate: 1000, Seconds: 10, Committed: 10000, Acked: 10000, P50Ms: 3, P95Ms: 9.5, P99Ms: 21.25, MaxMs: 40}
	rep.Checks = &Checks{StreamMessages: 50000, Expected: 50000}
	var full bytes.Buffer
	if err := rep.WriteText(&full); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"80% of the lower ceiling (drain)", "p50 3.00ms  p95 9.50ms  p99 21.2ms  max 40.0ms", "holds 50,000 messages"} {
		if !strings.Contains(full.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, full.String())
		}
	}
}
