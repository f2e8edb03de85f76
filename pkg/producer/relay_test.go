package producer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/adapters"
	natsadapter "github.com/heraldhq/herald/adapters/nats"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// rig is one outbox and one embedded JetStream server: all real, nothing mocked.
type rig struct {
	t        testing.TB
	db       *gorm.DB
	store    *outbox.Store
	srv      *natsadapter.EmbeddedServer
	dsn      string
	dialect  string
	storeDir string
	stream   string
}

func newRig(t testing.TB, dialect string) *rig {
	t.Helper()
	db := testdb.Migrated(t, dialect)
	store, err := outbox.NewStore(db.Gorm, outbox.WithOrdering(true))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, db: db.Gorm, dsn: db.DSN, dialect: dialect, store: store, storeDir: t.TempDir(), stream: "HERALD"}
	r.startBroker(0)
	t.Cleanup(func() { r.srv.Shutdown() })
	return r
}

// eachDialect runs fn with a rig on every outbox dialect.
func eachDialect(t *testing.T, fn func(t *testing.T, r *rig)) {
	for _, d := range testdb.Dialects() {
		t.Run(d, func(t *testing.T) { fn(t, newRig(t, d)) })
	}
}

func (r *rig) startBroker(port int) {
	r.t.Helper()
	srv, err := natsadapter.StartEmbedded(natsadapter.EmbeddedOptions{StoreDir: r.storeDir, Port: port})
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv = srv
}

// publisher connects an adapter with the default subject template and stream.
func (r *rig) publisher() adapters.Publisher {
	r.t.Helper()
	pub, err := natsadapter.Connect(context.Background(), r.srv.ClientURL(),
		natsadapter.WithStream(r.stream, "herald.>"),
		natsadapter.WithAckTimeout(2*time.Second), natsadapter.WithLogger(quiet()))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = pub.Close() })
	return pub
}

// write stores n events in producer transactions of up to 10 events each and
// returns their serialized bytes by id.
func (r *rig) write(n int, typ string) map[string][]byte {
	r.t.Helper()
	written := map[string][]byte{}
	for start := 0; start < n; start += 10 {
		var evs []event.Event
		for i := start; i < min(start+10, n); i++ {
			ev, err := event.New(typ, "/test", map[string]int{"n": i},
				event.WithSubject(fmt.Sprintf("things/%d", i)), event.WithPartitionKey(fmt.Sprint(i))) // one key each: ordering holds nothing back
			if err != nil {
				r.t.Fatal(err)
			}
			b, _ := ev.MarshalJSON()
			written[ev.ID] = b
			evs = append(evs, ev)
		}
		if err := r.db.Transaction(func(tx *gorm.DB) error { return outbox.Write(context.Background(), tx, evs...) }); err != nil {
			r.t.Fatal(err)
		}
	}
	return written
}

// runRelay starts relay.Run and returns a stop function that cancels it and
// waits for it to return.
func runRelay(t testing.TB, relay *producer.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = relay.Run(ctx) })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if runErr != nil {
				t.Errorf("relay.Run: %v", runErr)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (r *rig) jetstream() (*natsgo.Conn, jetstream.JetStream) {
	r.t.Helper()
	nc, err := natsgo.Connect(r.srv.ClientURL())
	if err != nil {
		r.t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		r.t.Fatal(err)
	}
	return nc, js
}

func (r *rig) narrowStream(subjects ...string) {
	r.t.Helper()
	nc, js := r.jetstream()
	defer nc.Close()
	ctx := context.Background()
	st, err := js.Stream(ctx, r.stream)
	if err != nil {
		r.t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Subjects = subjects
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		r.t.Fatal(err)
	}
}

// streamMessages reads every message in the stream, in order.
func (r *rig) streamMessages() []jetstream.Msg {
	r.t.Helper()
	nc, err := natsgo.Connect(r.srv.ClientURL())
	if err != nil {
		r.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, r.stream)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		r.t.Fatal(err)
	}
	var out []jetstream.Msg
	for uint64(len(out)) < info.State.Msgs {
		batch, err := cons.Fetch(min(500, int(info.State.Msgs)-len(out)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			r.t.Fatal(err)
		}
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if batch.Error() != nil {
			r.t.Fatal(batch.Error())
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) pending() int {
	st, err := r.store.Stats(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return st.Pending
}

// exactlyOnce checks that the stream holds each written event exactly once,
// with the bytes that were written.
func (r *rig) exactlyOnce(written map[string][]byte) {
	r.t.Helper()
	msgs := r.streamMessages()
	seen := map[string]bool{}
	for _, m := range msgs {
		id := m.Headers().Get("Nats-Msg-Id")
		want, ok := written[id]
		switch {
		case !ok:
			r.t.Errorf("stream holds unknown event %q", id)
		case seen[id]:
			r.t.Errorf("event %s is in the stream twice", id)
		case !bytes.Equal(m.Data(), want):
			r.t.Errorf("event %s bytes changed:\n got %s\nwant %s", id, m.Data(), want)
		}
		seen[id] = true
	}
	if len(seen) != len(written) {
		r.t.Errorf("stream holds %d distinct events, want %d", len(seen), len(written))
	}
}

func quiet() *slog.Logger {
	if os.Getenv("HERALD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func TestRelayDeliversEveryEventOnceWithIdenticalBytes(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		relay := producer.New(r.store, r.publisher(), producer.WithName("relay-1"),
			producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
		stop := runRelay(t, relay)
		written := r.write(1000, "io.herald.test.thing.created")

		eventually(t, "the outbox to drain", func() bool { return r.pending() == 0 })
		stop()
		r.exactlyOnce(written)
		if s := relay.Stats(); s.Published != 1000 || s.Duplicates != 0 || s.DeadLettered != 0 {
			t.Fatalf("relay stats = %+v", s)
		}
	})
}

func TestCrashedRelaysBatchIsRepublishedAndDeduplicatedByTheBroker(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		written := r.write(50, "io.herald.test.thing.created")

		// Relay A leases the buckets, reads and publishes, then dies before
		// recording anything: these are exactly the calls a relay makes,
		// stopped where a crash would stop them.
		const lease = 300 * time.Millisecond
		held, err := r.store.Lease(ctx, "relay-a", outbox.Buckets, lease)
		if err != nil || len(held.Held) != outbox.Buckets {
			t.Fatalf("relay A leased %v, err %v", held.Held, err)
		}
		rows, err := r.store.Read(ctx, outbox.ReadQuery{Buckets: held.Held, Limit: 100})
		if err != nil || len(rows) != 50 {
			t.Fatalf("relay A read %d rows, err %v", len(rows), err)
		}
		msgs := make([]adapters.Message, len(rows))
		for i, row := range rows {
			msgs[i] = adapters.Message{ID: row.EventID, Type: row.EventType, PartitionKey: row.PartitionKey, Payload: row.Payload}
		}
		pubA := r.publisher()
		for i, res := range pubA.Publish(ctx, msgs) {
			if res.Err != nil || res.Duplicate {
				t.Fatalf("relay A publish %d: %+v", i, res)
			}
		}
		_ = pubA.Close()

		// Relay B must wait out A's lease, then takes the rows and publishes them again.
		relayB := producer.New(r.store, r.publisher(), producer.WithName("relay-b"), producer.WithLease(lease),
			producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
		stop := runRelay(t, relayB)
		eventually(t, "relay B to deliver A's batch", func() bool { return r.pending() == 0 })
		stop()

		if s := relayB.Stats(); s.Published != 50 || s.Duplicates != 50 {
			t.Fatalf("relay B stats = %+v; want 50 published, all 50 reported duplicate by JetStream", s)
		}
		r.exactlyOnce(written)

		// A comes back to life and records its batch, late and failed: the
		// rows are gone (delivered), and recording a failure of a row that is
		// no longer pending writes nothing.
		outcomes := make([]outbox.Outcome, len(rows))
		for i, row := range rows {
			outcomes[i] = outbox.Outcome{Seq: row.Seq, Err: errors.New("late"), RetryAt: time.Now()}
		}
		if err := r.store.Record(ctx, outcomes); err != nil {
			t.Fatalf("late record by A: %v", err)
		}
		if n := r.pending(); n != 0 {
			t.Fatalf("A's late record brought %d rows back", n)
		}
	})
}

// A broker outage is the destination's fault, not the events': they wait
// with no attempt spent, and once the broker is back the good events go and
// the poison one, whose subject no stream captures, spends its attempts and
// is dead-lettered.
func TestBrokerDownCostsNoAttemptAndPoisonIsDeadLetteredAfterwards(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		written := r.write(20, "io.herald.test.thing.created")
		poison, err := event.New("com.example.unrouted", "/test", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := outbox.Write(context.Background(), r.db, poison); err != nil {
			t.Fatal(err)
		}

		pub := r.publisher()
		// An operator narrows the stream after Herald started: no stream takes
		// the poison event's subject any more, so JetStream answers "no
		// responders" every time, a failure that looks transient but never heals.
		r.narrowStream("herald.io.>")
		port := r.srv.Port()
		r.srv.Shutdown()

		relay := producer.New(r.store, pub, producer.WithName("relay-1"), producer.WithMaxAttempts(4),
			producer.WithBackoff(100*time.Millisecond, 400*time.Millisecond),
			producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
		stop := runRelay(t, relay)

		// With these backoffs the old relay spent all 4 attempts in about
		// a second; an outage must spend none.
		time.Sleep(3 * time.Second)
		for id := range written {
			row, err := r.store.Get(context.Background(), id)
			if err != nil || row.State != outbox.StatePending || row.Attempts != 0 || row.LastError != "" {
				t.Fatalf("row during the outage = %+v, %v; want pending with no attempt spent", row, err)
			}
		}
		if s := relay.Stats(); s.Published != 0 || s.Failed != 0 || s.DeadLettered != 0 {
			t.Fatalf("relay stats during the outage = %+v; want nothing done", s)
		}

		r.startBroker(port)
		eventually(t, "the good events to be delivered", func() bool { return r.pending() <= 1 })
		eventually(t, "the poison event to be dead-lettered", func() bool {
			row, err := r.store.Get(context.Background(), poison.ID)
			return err == nil && row.State == outbox.StateDead
		})
		stop()

		dead, _ := r.store.Get(context.Background(), poison.ID)
		if !strings.Contains(dead.LastError, "gave up after 4 attempts") {
			t.Errorf("dead letter reason = %q", dead.LastError)
		}
		r.exactlyOnce(written)
		if s := relay.Stats(); s.Published != 20 || s.DeadLettered != 1 || s.Failed != 3 {
			t.Fatalf("relay stats = %+v; want 20 published, the poison failed 3 times then dead", s)
		}
	})
}

func TestPermanentFailureIsDeadLetteredAtOnceAndOthersFlow(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		written := r.write(5, "io.herald.test.thing.created")
		huge, err := event.New("io.herald.test.thing.created", "/test",
			map[string]string{"blob": strings.Repeat("x", 2<<20)})
		if err != nil {
			t.Fatal(err)
		}
		if err := outbox.Write(context.Background(), r.db, huge); err != nil {
			t.Fatal(err)
		}
		relay := producer.New(r.store, r.publisher(), producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
		stop := runRelay(t, relay)
		eventually(t, "the outbox to settle", func() bool { return r.pending() == 0 })
		stop()
		row, err := r.store.Get(context.Background(), huge.ID)
		if err != nil || row.State != outbox.StateDead || row.Attempts != 1 {
			t.Fatalf("oversize row = %+v, %v", row, err)
		}
		if !strings.Contains(row.LastError, "permanent") {
			t.Errorf("dead letter reason %q does not say it is permanent", row.LastError)
		}
		r.exactlyOnce(written)
	})
}

func TestShutdownFinishesTheBatchInFlight(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		written := r.write(300, "io.herald.test.thing.created")
		relay := producer.New(r.store, r.publisher(), producer.WithBatchSize(300), producer.WithLogger(quiet()))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- relay.Run(ctx) }()
		eventually(t, "the batch to be claimed", func() bool {
			st, _ := r.store.Stats(context.Background())
			return st.InFlight > 0 || st.Pending == 0
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// Nothing may stay leased: the batch was either published and recorded,
		// or handed back for the next relay at once.
		st, _ := r.store.Stats(context.Background())
		if st.InFlight != 0 {
			t.Fatalf("shutdown left %d rows leased: %+v", st.InFlight, st)
		}
		if st.Pending != 0 && st.Pending != 300 {
			t.Fatalf("shutdown left %d of a 300-row batch pending: a batch is finished or released whole", st.Pending)
		}
		next := producer.New(r.store, r.publisher(), producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
		stop := runRelay(t, next)
		eventually(t, "the next relay to drain the rest", func() bool { return r.pending() == 0 })
		stop()
		r.exactlyOnce(written)
	})
}

// A row inserted with plain SQL whose payload is not a valid CloudEvent (or
// disagrees with its columns) is dead-lettered with the reason; the rows
// around it are delivered.
func TestMalformedRowIsQuarantinedNotPublished(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		written := r.write(3, "io.herald.test.thing.created")
		good, _ := event.New("io.herald.test.thing.created", "/test", nil)
		goodBytes, _ := good.MarshalJSON()
		for _, row := range []struct{ id, typ, payload, reason string }{
			{"0195a1e2-0000-7000-8000-000000000001", "io.herald.test.thing.created", `{"broken":`, "invalid event payload"},
			{"0195a1e2-0000-7000-8000-000000000002", "io.herald.test.thing.created", string(goodBytes), "differs from event_id column"},
		} {
			if err := r.db.Exec(`INSERT INTO herald_outbox (event_id, event_type, payload) VALUES (?, ?, ?)`, row.id, row.typ, row.payload).Error; err != nil {
				t.Fatal(err)
			}
			defer func() {
				got, err := r.store.Get(context.Background(), row.id)
				if err != nil || got.State != outbox.StateDead || !strings.Contains(got.LastError, row.reason) {
					t.Errorf("row %s = %+v, %v; want dead with %q", row.id, got, err, row.reason)
				}
			}()
		}
		relay := producer.New(r.store, r.publisher(), producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
		stop := runRelay(t, relay)
		eventually(t, "the outbox to settle", func() bool { return r.pending() == 0 })
		stop()
		r.exactlyOnce(written)
	})
}

func TestDeliveredRowsArePrunedAfterRetentionDeadOnesKept(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		store, _ := outbox.NewStore(r.db, outbox.WithKeepDelivered(true), outbox.WithOrdering(true))
		r.write(5, "io.herald.test.thing.created")
		poison, _ := event.New("io.herald.test.thing.created", "/test", map[string]string{"blob": strings.Repeat("x", 2<<20)})
		if err := outbox.Write(context.Background(), r.db, poison); err != nil {
			t.Fatal(err)
		}
		relay := producer.New(store, r.publisher(), producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()),
			producer.WithDeliveredRetention(300*time.Millisecond), producer.WithPruneEvery(50*time.Millisecond))
		stop := runRelay(t, relay)
		eventually(t, "delivered rows to be kept, then pruned", func() bool {
			st, _ := store.Stats(context.Background())
			return st.Pending == 0 && st.Delivered == 0 && relay.Stats().Published == 5
		})
		stop()
		if st, _ := store.Stats(context.Background()); st.Dead != 1 {
			t.Fatalf("stats %+v: the dead letter must outlive delivered-row retention", st)
		}
	})
}

// An operator fixes what killed an event and retries the dead letter (what
// `herald outbox retry` does); the running relay then delivers it.
func TestRetriedDeadLetterIsDelivered(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		stray, _ := event.New("com.example.unrouted", "/test", map[string]int{"n": 1})
		if err := outbox.Write(ctx, r.db, stray); err != nil {
			t.Fatal(err)
		}
		pub := r.publisher()
		r.narrowStream("herald.io.>") // nothing takes the stray's subject
		relay := producer.New(r.store, pub, producer.WithMaxAttempts(2), producer.WithBackoff(10*time.Millisecond, 20*time.Millisecond),
			producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
		stop := runRelay(t, relay)
		eventually(t, "the stray to be dead-lettered", func() bool {
			row, err := r.store.Get(ctx, stray.ID)
			return err == nil && row.State == outbox.StateDead
		})

		r.narrowStream("herald.>") // the fix
		n, err := r.store.Retry(ctx, outbox.Filter{IDs: []string{stray.ID}}, nil)
		if err != nil || n != 1 {
			t.Fatalf("retry: %d, %v", n, err)
		}
		relay.Notify()
		eventually(t, "the retried event to be delivered", func() bool { return r.pending() == 0 })
		stop()
		b, _ := stray.MarshalJSON()
		r.exactlyOnce(map[string][]byte{stray.ID: b})
	})
}

// The producer's trace context, written with the event, reaches the broker
// as a traceparent header: consumers' tracing continues the same trace.
func TestTraceParentTravelsToBrokerHeaders(t *testing.T) {
	r := newRig(t, "sqlite")
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ev, _ := event.New("io.herald.test.thing.created", "/test", nil, event.WithTraceParent(tp))
	if err := outbox.Write(context.Background(), r.db, ev); err != nil {
		t.Fatal(err)
	}
	relay := producer.New(r.store, r.publisher(), producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
	stop := runRelay(t, relay)
	eventually(t, "delivery", func() bool { return r.pending() == 0 })
	stop()
	msgs := r.streamMessages()
	if len(msgs) != 1 || msgs[0].Headers().Get("traceparent") != tp {
		t.Fatalf("headers = %v; want traceparent %s", msgs[0].Headers(), tp)
	}
}

// With a tracer provider the relay records a producer span per batch that
// links to each event's own trace context, so the producer's trace shows
// when its event left; events without one are published all the same.
func TestRelaySpanLinksToTheProducersTrace(t *testing.T) {
	r := newRig(t, "sqlite")
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	ctx := context.Background()
	traced, _ := event.New("io.herald.test.thing.created", "/test", nil, event.WithTraceParent("00-"+traceID+"-"+spanID+"-01"))
	untraced, _ := event.New("io.herald.test.thing.created", "/test", nil)
	if err := outbox.Write(ctx, r.db, traced, untraced); err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })
	relay := producer.New(r.store, r.publisher(), producer.WithPollInterval(20*time.Millisecond),
		producer.WithLogger(quiet()), producer.WithTracerProvider(tp, "nats"))
	stop := runRelay(t, relay)
	eventually(t, "delivery", func() bool { return r.pending() == 0 })
	stop()

	ended := spans.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans, want one for the batch", len(ended))
	}
	s := ended[0]
	if s.Name() != "send nats" || s.SpanKind() != trace.SpanKindProducer || s.Status().Code == codes.Error {
		t.Errorf("span %q kind %v status %v", s.Name(), s.SpanKind(), s.Status())
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	if got := attrs["messaging.batch.message_count"].AsInt64(); got != 2 {
		t.Errorf("messaging.batch.message_count = %d, want 2", got)
	}
	links := s.Links()
	if len(links) != 1 {
		t.Fatalf("%d links, want 1 (only one event has a trace context)", len(links))
	}
	if sc := links[0].SpanContext; sc.TraceID().String() != traceID || sc.SpanID().String() != spanID {
		t.Errorf("link to %s/%s, want %s/%s", sc.TraceID(), sc.SpanID(), traceID, spanID)
	}
	if s.SpanContext().TraceID().String() == traceID {
		t.Error("the batch span joined one producer's trace instead of linking to it")
	}
}
