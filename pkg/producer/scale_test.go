package producer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters"
	natsadapter "github.com/heraldhq/herald/adapters/nats"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// TestMain lets the test binary double as a relay process that a test can
// SIGKILL: a real process dying, not a goroutine being cancelled.
func TestMain(m *testing.M) {
	if os.Getenv("HERALD_TEST_RELAY_PROCESS") == "1" {
		os.Exit(relayProcess())
	}
	os.Exit(m.Run())
}

// seqEvent is the data of the events the scale tests write: the key and the
// event's position within it, for the consumer to check order.
type seqEvent struct {
	Key string `json:"key"`
	N   int    `json:"n"`
}

// writeSequences writes n events spread over keys partition keys, each key's
// events numbered 0, 1, 2… in commit order.
func (r *rig) writeSequences(n, keys int) {
	r.t.Helper()
	ctx := context.Background()
	next := make([]int, keys)
	for start := 0; start < n; start += 1000 {
		evs := make([]event.Event, 0, 1000)
		for i := start; i < min(start+1000, n); i++ {
			k := i % keys
			key := fmt.Sprintf("dp-%04d", k)
			ev, err := event.New("io.herald.test.thing.updated", "/test", seqEvent{Key: key, N: next[k]}, event.WithPartitionKey(key))
			if err != nil {
				r.t.Fatal(err)
			}
			next[k]++
			evs = append(evs, ev)
		}
		if err := outbox.Write(ctx, r.db, evs...); err != nil {
			r.t.Fatal(err)
		}
	}
}

// checkSequences reads the whole stream and checks that it holds want
// events, each once, and every key's events in order with no gap.
func (r *rig) checkSequences(want int) {
	r.t.Helper()
	msgs := r.streamMessages()
	if len(msgs) != want {
		r.t.Errorf("stream holds %d messages, want %d", len(msgs), want)
	}
	seen := map[string]bool{}
	next := map[string]int{}
	for _, m := range msgs {
		id := m.Headers().Get("Nats-Msg-Id")
		if seen[id] {
			r.t.Errorf("event %s stored twice", id)
		}
		seen[id] = true
		ev, err := event.Parse(m.Data())
		if err != nil {
			r.t.Fatal(err)
		}
		var d seqEvent
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			r.t.Fatal(err)
		}
		if d.N != next[d.Key] {
			r.t.Fatalf("key %s: got event %d, want %d: order broken", d.Key, d.N, next[d.Key])
		}
		next[d.Key]++
	}
}

// 4 relays share one outbox: every event is published once, per-key order
// holds across relays, and every relay takes a share. (Throughput against
// one relay is measured by BenchmarkRelays, not asserted here.)
func TestFourRelaysShareWorkAndKeepPerKeyOrder(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	eachDialect(t, func(t *testing.T, r *rig) {
		relays, n := 4, n
		if r.dialect == "sqlite" {
			// SQLite has one writer, so Herald runs one relay on it; a
			// fifth of the events proves the same there in a fifth the time.
			relays, n = 1, n/5
		}
		r.writeSequences(n, 1000)
		var rs []*producer.Relay
		var stops []func()
		for i := range relays {
			store, _ := outbox.NewStore(r.db, outbox.WithOrdering(true))
			relay := producer.New(store, r.publisher(), producer.WithName(fmt.Sprintf("relay-%d", i)),
				producer.WithBatchSize(200), producer.WithPollInterval(50*time.Millisecond), producer.WithLogger(quiet()))
			rs = append(rs, relay)
			stops = append(stops, runRelay(t, relay))
		}
		published := func() (sum int64) {
			for _, relay := range rs {
				sum += relay.Stats().Published
			}
			return sum
		}
		deadline := time.Now().Add(10 * time.Minute)
		for published() < int64(n) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		for _, stop := range stops {
			stop()
		}
		for _, relay := range rs {
			s := relay.Stats()
			t.Logf("%s: %+v", relay.Name(), s)
			if s.Published == 0 {
				t.Errorf("%s published nothing: relays do not share the work", relay.Name())
			}
			if s.Duplicates != 0 {
				t.Errorf("%s: %+v; no event may be published twice", relay.Name(), s)
			}
		}
		if got := published(); got != int64(n) {
			t.Fatalf("published %d events, want %d", got, n)
		}
		r.checkSequences(n)
	})
}

// A relay process is SIGKILLed after publishing a batch and before recording
// it. Its buckets stay leased until the lease runs out; then another relay
// takes them, publishes the unrecorded rows again, and JetStream drops the
// copies.
func TestKilledRelayProcessRowsAreTakenOver(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		const n, lease = 3000, 2 * time.Second
		r.writeSequences(n, 100)
		pub := r.publisher() // provisions the stream before the victim starts

		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(),
			"HERALD_TEST_RELAY_PROCESS=1",
			"HERALD_TEST_DIALECT="+r.dialect,
			"HERALD_TEST_DSN="+r.dsn,
			"HERALD_TEST_NATS_URL="+r.srv.ClientURL(),
			"HERALD_TEST_LEASE="+lease.String(),
		)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill it while a batch it has published sits unrecorded: the victim
		// holds results back for a while, as a relay stuck on its database
		// would.
		eventually(t, "the victim to publish a batch", func() bool {
			st, _ := r.store.Stats(context.Background())
			return st.InFlight > 0 && r.streamCount() > 0
		})
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		leased := r.leasedBy("victim")
		if leased == 0 {
			t.Fatal("the victim left no leased buckets behind: nothing to take over")
		}
		t.Logf("victim killed holding %d leased buckets; %d messages already in the stream", leased, r.streamCount())

		survivor := producer.New(r.store, pub, producer.WithName("survivor"), producer.WithLease(lease),
			producer.WithBatchSize(500), producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
		stop := runRelay(t, survivor)
		eventually(t, "the survivor to drain the outbox", func() bool { return r.pending() == 0 })
		stop()
		if s := survivor.Stats(); s.Duplicates == 0 {
			t.Errorf("survivor stats %+v: the victim's published batch should come back as duplicates", s)
		}
		r.checkSequences(n)
	})
}

func (r *rig) streamCount() uint64 {
	nc, js := r.jetstream()
	defer nc.Close()
	st, err := js.Stream(context.Background(), r.stream)
	if err != nil {
		return 0
	}
	return st.CachedInfo().State.Msgs
}

func (r *rig) leasedBy(owner string) int {
	var n int64
	err := r.db.Raw(`SELECT COUNT(*) FROM herald_outbox_buckets WHERE owner = ?`, owner).Scan(&n).Error
	if err != nil {
		r.t.Fatal(err)
	}
	return int(n)
}

// relayProcess is the victim: a relay whose results reach the database only
// a few seconds after the broker acked them.
func relayProcess() int {
	ctx := context.Background()
	lease, _ := time.ParseDuration(os.Getenv("HERALD_TEST_LEASE"))
	db, err := outbox.Open(os.Getenv("HERALD_TEST_DIALECT"), os.Getenv("HERALD_TEST_DSN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	store, err := outbox.NewStore(db, outbox.WithOrdering(true))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pub, err := natsadapter.Connect(ctx, os.Getenv("HERALD_TEST_NATS_URL"), natsadapter.WithLogger(quiet()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opts := []producer.Option{producer.WithName("victim"), producer.WithBatchSize(100), producer.WithLogger(quiet())}
	if lease > 0 {
		opts = append(opts, producer.WithLease(lease))
	}
	relay := producer.New(store, slowAcks{pub, 5 * time.Second}, opts...)
	_ = relay.Run(ctx) // until SIGKILL
	return 0
}

// slowAcks publishes for real and then sits on the results.
type slowAcks struct {
	adapters.Publisher
	hold time.Duration
}

func (s slowAcks) Publish(ctx context.Context, msgs []adapters.Message) []adapters.Result {
	res := s.Publisher.Publish(ctx, msgs)
	time.Sleep(s.hold)
	return res
}

// BenchmarkRelays compares 1 and 4 relays draining one PostgreSQL outbox
// into embedded JetStream, per-key ordering on, 1,000 keys.
func BenchmarkRelays(b *testing.B) {
	for _, relays := range []int{1, 4} {
		b.Run("relays="+strconv.Itoa(relays), func(b *testing.B) {
			r := newRig(b, "postgres")
			b.StopTimer()
			r.writeSequences(b.N, 1000)
			var rs []*producer.Relay
			for i := range relays {
				store, _ := outbox.NewStore(r.db, outbox.WithOrdering(true))
				rs = append(rs, producer.New(store, r.publisher(), producer.WithName(fmt.Sprint(i)),
					producer.WithBatchSize(200), producer.WithPollInterval(time.Millisecond), producer.WithLogger(quiet())))
			}
			b.StartTimer()
			var wg sync.WaitGroup
			ctx, cancel := context.WithCancel(context.Background())
			for _, relay := range rs {
				wg.Go(func() { _ = relay.Run(ctx) })
			}
			for {
				var sum int64
				for _, relay := range rs {
					sum += relay.Stats().Published
				}
				if sum >= int64(b.N) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			cancel()
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
