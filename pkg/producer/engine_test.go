package producer_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// A backlog on one partition key drains completely and in order: the
// engine reads a bucket in seq order, so a hot key costs what any other
// backlog costs (the old head-only claim made it quadratic).
func TestOneHotKeyBacklogDrainsInOrder(t *testing.T) {
	n := 20_000
	if testing.Short() {
		n = 2_000
	}
	eachDialect(t, func(t *testing.T, r *rig) {
		r.writeSequences(n, 1)
		relay := producer.New(r.store, r.publisher(), producer.WithBatchSize(500),
			producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
		start := time.Now()
		stop := runRelay(t, relay)
		eventually(t, "the hot key to drain", func() bool { return relay.Stats().Published >= int64(n) && r.pending() == 0 })
		stop()
		t.Logf("%d events on one key in %s", n, time.Since(start).Round(time.Millisecond))
		if s := relay.Stats(); s.Published != int64(n) || s.Duplicates != 0 {
			t.Errorf("stats %+v; want %d published once each", s, n)
		}
		r.checkSequences(n)
	})
}

// A transaction that inserted first and commits while the relay is working
// through a backlog is neither skipped (the trap of relays that read "after
// the last seq they saw") nor published ahead of its key's events that
// committed before it.
func TestLateCommitDuringABacklogIsDeliveredAfterItsKey(t *testing.T) {
	for _, d := range []string{"postgres", "mysql"} { // SQLite has one writer: commits happen in insert order
		t.Run(d, func(t *testing.T) {
			r := newRig(t, d)
			ctx := context.Background()
			late := r.keyed("K", 1)
			long := r.db.Begin()
			if err := outbox.Write(ctx, long, late); err != nil {
				t.Fatal(err)
			}
			early := r.keyed("K", 0)
			if err := outbox.Write(ctx, r.db, early); err != nil {
				t.Fatal(err)
			}
			r.writeSequences(5000, 100)

			relay := producer.New(r.store, r.publisher(), producer.WithBatchSize(100),
				producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
			stop := runRelay(t, relay)
			eventually(t, "the relay to be under way", func() bool { return relay.Stats().Published >= 1000 })
			if err := long.Commit().Error; err != nil {
				t.Fatal(err)
			}
			eventually(t, "everything to be delivered", func() bool { return r.pending() == 0 })
			stop()

			var order []string
			for _, m := range r.streamMessages() {
				if id := m.Headers().Get("Nats-Msg-Id"); id == early.ID || id == late.ID {
					order = append(order, id)
				}
			}
			if len(order) != 2 || order[0] != early.ID || order[1] != late.ID {
				t.Fatalf("K's events in the stream: %v; want %s (committed first) then %s (inserted first, committed late)",
					order, early.ID, late.ID)
			}
			if s := relay.Stats(); s.Published != 5002 || s.Duplicates != 0 {
				t.Errorf("stats %+v; want 5002 published once each", s)
			}
		})
	}
}

// keyed makes event n of key, recording the key and n for checkSequences.
func (r *rig) keyed(key string, n int) event.Event {
	r.t.Helper()
	ev, err := event.New("io.herald.test.thing.updated", "/test", seqEvent{Key: key, N: n}, event.WithPartitionKey(key))
	if err != nil {
		r.t.Fatal(err)
	}
	return ev
}

// refusing fails the messages refuse picks until healed, holding back the
// later messages of a failed message's key in the same call as the adapters'
// contract says; the rest go to the real broker. offers counts the messages
// of key it was handed while unhealed.
type refusing struct {
	adapters.Publisher
	key    string
	refuse func(adapters.Message) error
	healed atomic.Bool
	offers atomic.Int64
}

var errRefusingHeldBack = errors.New("not sent, an earlier message with the same key failed")

func (f *refusing) Publish(ctx context.Context, msgs []adapters.Message) []adapters.Result {
	res := make([]adapters.Result, len(msgs))
	var pass []adapters.Message
	var at []int
	failed := map[string]error{}
	for i, m := range msgs {
		if !f.healed.Load() {
			if m.PartitionKey == f.key {
				f.offers.Add(1)
			}
			if cause, ok := failed[m.PartitionKey]; ok && m.PartitionKey != "" {
				res[i].Err = adapters.HeldBack(errRefusingHeldBack, m.PartitionKey, cause)
				continue
			}
			if err := f.refuse(m); err != nil {
				res[i].Err, failed[m.PartitionKey] = err, err
				continue
			}
		}
		pass = append(pass, m)
		at = append(at, i)
	}
	for j, r := range f.Publisher.Publish(ctx, pass) {
		res[at[j]] = r
	}
	return res
}

// failKey fails every message of key, as a broker that refuses one subject
// would.
func failKey(pub adapters.Publisher, key string) *refusing {
	return &refusing{Publisher: pub, key: key, refuse: func(m adapters.Message) error {
		if m.PartitionKey == key {
			return errors.New("subject refused")
		}
		return nil
	}}
}

// A key whose event fails is held: its later events are neither published
// nor counted as attempts, other keys flow, and once the broker takes the
// key again its events go out in order. A relay that takes the key over
// while it is held (here: the first relay stops) holds it too, from the
// backoff recorded on the head.
func TestFailingKeyIsHeldAcrossRelaysAndDeliveredInOrder(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		for i := range 10 {
			if err := outbox.Write(ctx, r.db, r.keyed("K", i)); err != nil {
				t.Fatal(err)
			}
		}
		r.writeSequences(300, 30)
		pub := failKey(r.publisher(), "K")
		opts := []producer.Option{producer.WithBatchSize(50), producer.WithPollInterval(20 * time.Millisecond),
			producer.WithBackoff(time.Second, time.Second), producer.WithLogger(quiet())}

		first := producer.New(r.store, pub, append(opts, producer.WithName("first"))...)
		stop := runRelay(t, first)
		eventually(t, "the other keys to be delivered", func() bool { return r.pending() == 10 })
		stop()
		var attempted []int
		if err := r.db.Raw(`SELECT attempts FROM herald_outbox WHERE partition_key = 'K' ORDER BY seq`).Scan(&attempted).Error; err != nil {
			t.Fatal(err)
		}
		if len(attempted) != 10 || attempted[0] == 0 {
			t.Fatalf("attempts of K's rows = %v; want the head attempted", attempted)
		}
		for i, a := range attempted[1:] {
			if a != 0 {
				t.Fatalf("K's row %d has %d attempts while its head was failing: held rows are not attempts (%v)", i+1, a, attempted)
			}
		}

		// The second relay finds K's head in backoff; K's later rows must wait
		// for it. Heal the broker only after it has started and read them.
		second := producer.New(r.store, pub, append(opts, producer.WithName("second"))...)
		stop = runRelay(t, second)
		time.Sleep(100 * time.Millisecond)
		pub.healed.Store(true)
		eventually(t, "K to be delivered", func() bool { return r.pending() == 0 })
		stop()
		r.checkSequences(310)
	})
}

// Relays share a destination's buckets: one relay alone holds them all, and
// a second one joining gets half within a few lease periods, with no event
// published twice while buckets change hands.
func TestRelaysShareBucketsAsTheyJoin(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		opts := []producer.Option{producer.WithLease(3 * time.Second), producer.WithPollInterval(20 * time.Millisecond), producer.WithLogger(quiet())}
		a := producer.New(r.store, r.publisher(), append(opts, producer.WithName("a"))...)
		stopA := runRelay(t, a)
		eventually(t, "a to hold every bucket", func() bool { return r.bucketsOf("a") == outbox.Buckets })

		var written sync.WaitGroup
		written.Go(func() { r.writeSequences(3000, 200) })
		b := producer.New(r.store, r.publisher(), append(opts, producer.WithName("b"))...)
		stopB := runRelay(t, b)
		eventually(t, "a and b to hold half each", func() bool {
			return r.bucketsOf("a") == outbox.Buckets/2 && r.bucketsOf("b") == outbox.Buckets/2
		})
		written.Wait()
		eventually(t, "the outbox to drain", func() bool { return r.pending() == 0 })
		stopB()
		if n := r.bucketsOf("b"); n != 0 {
			t.Errorf("b stopped holding %d buckets; a relay hands its buckets back as it stops", n)
		}
		stopA()
		for _, relay := range []*producer.Relay{a, b} {
			if s := relay.Stats(); s.Duplicates != 0 {
				t.Errorf("%s: %+v; nothing may be published twice while buckets change hands", relay.Name(), s)
			}
		}
		r.checkSequences(3000)
	})
}

func (r *rig) bucketsOf(owner string) int {
	var n int64
	if err := r.db.Raw(`SELECT COUNT(*) FROM herald_outbox_buckets WHERE owner = ?`, owner).Scan(&n).Error; err != nil {
		r.t.Fatal(err)
	}
	return int(n)
}

// On PostgreSQL a relay that waits asks writers to ring (a row in
// herald_outbox_waiters), so a commit reaches it long before its next poll;
// one that is working has no such row, and writers do not NOTIFY.
func TestIdleRelayIsWokenByTheDoorbellBusyOneCostsWritersNothing(t *testing.T) {
	r := newRig(t, "postgres")
	ctx, cancel := context.WithCancel(context.Background())
	relay := producer.New(r.store, r.publisher(), producer.WithPollInterval(30*time.Second), producer.WithLogger(quiet()))
	stop := runRelay(t, relay)
	var wg sync.WaitGroup
	wg.Go(func() { _ = outbox.Listen(ctx, r.dsn, relay.Notify, quiet()) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	eventually(t, "the idle relay to wait on the doorbell", func() bool { return r.waiters() == 1 })
	for i := range 3 {
		start := time.Now()
		if err := outbox.Write(context.Background(), r.db, r.keyed("K", i)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the event to be delivered", func() bool { return relay.Stats().Published == int64(i+1) })
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("delivery took %s: the doorbell did not ring (poll interval 30s)", took)
		}
		eventually(t, "the relay to wait again", func() bool { return r.waiters() == 1 })
	}

	// Busy: a backlog keeps the relay reading, and it leaves the doorbell.
	var busy atomic.Bool
	busy.Store(true)
	var sawNone atomic.Bool
	wg.Go(func() {
		for busy.Load() {
			if r.waiters() == 0 {
				sawNone.Store(true)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	r.writeSequences(20_000, 100)
	eventually(t, "the backlog to drain", func() bool { return r.pending() == 0 })
	busy.Store(false)
	stop()
	if !sawNone.Load() {
		t.Error("the relay stayed on the doorbell while draining a backlog: writers would NOTIFY for nothing")
	}
}

func (r *rig) waiters() int {
	var n int64
	if err := r.db.Raw(`SELECT COUNT(*) FROM herald_outbox_waiters WHERE expires_at > now()`).Scan(&n).Error; err != nil {
		r.t.Fatal(err)
	}
	return int(n)
}
