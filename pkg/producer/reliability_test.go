package producer_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// writeWhile writes one event per transaction, round robin over keys keys,
// each key's events numbered in commit order for checkSequences, until
// stop is called; stop returns how many it wrote.
func (r *rig) writeWhile(keys int, every time.Duration) (stop func() int) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var n int
	var werr error
	wg.Go(func() {
		next := make([]int, keys)
		t := time.NewTicker(every)
		defer t.Stop()
		for ctx.Err() == nil {
			k := n % keys
			key := fmt.Sprintf("dp-%04d", k)
			ev, err := event.New("io.herald.test.thing.updated", "/test", seqEvent{Key: key, N: next[k]}, event.WithPartitionKey(key))
			if err == nil {
				err = outbox.Write(context.Background(), r.db, ev)
			}
			if err != nil {
				werr = err
				return
			}
			next[k]++
			n++
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	})
	return func() int {
		cancel()
		wg.Wait()
		if werr != nil {
			r.t.Fatalf("writer: %v", werr)
		}
		return n
	}
}

func (r *rig) count(state outbox.State) int {
	r.t.Helper()
	n, err := r.store.Count(context.Background(), outbox.Filter{State: state})
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// A broker outage under load, on a compressed clock: with 2 attempts and
// backoffs of milliseconds the old relay dead-lettered the head of every
// key within a second of the broker going away. Now the outage spends no
// attempt, nothing is dead or lost, order holds, and the backlog drains
// right after the broker is back. The chaos suite (test/chaos) runs the
// same for ten real minutes.
func TestBrokerOutageUnderLoadDeadLettersNothingAndKeepsOrder(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		relay := producer.New(r.store, r.publisher(), producer.WithMaxAttempts(2),
			producer.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
			producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
		stop := runRelay(t, relay)
		stopWriting := r.writeWhile(20, 5*time.Millisecond)

		time.Sleep(500 * time.Millisecond)
		port := r.srv.Port()
		r.srv.Shutdown()
		time.Sleep(4 * time.Second)
		if dead := r.count(outbox.StateDead); dead != 0 {
			t.Errorf("%d events dead-lettered during the outage", dead)
		}
		backlog := r.pending()
		r.startBroker(port)
		back := time.Now()
		time.Sleep(500 * time.Millisecond)
		n := stopWriting()
		eventually(t, "the backlog to drain", func() bool { return r.pending() == 0 })
		drained := time.Since(back)
		stop()

		t.Logf("%d events written, backlog %d at recovery, drained %s after it; stats %+v",
			n, backlog, drained.Round(time.Millisecond), relay.Stats())
		if backlog == 0 {
			t.Fatal("no backlog built up during the outage: the test proves nothing")
		}
		if dead := r.count(outbox.StateDead); dead != 0 {
			t.Errorf("%d events dead-lettered", dead)
		}
		if s := relay.Stats(); s.Failed != 0 || s.DeadLettered != 0 {
			t.Errorf("stats %+v: the outage spent attempts", s)
		}
		r.checkSequences(n)
	})
}

// slowPartner answers 204 after a delay and counts requests per event id.
type slowPartner struct {
	delay    time.Duration
	mu       sync.Mutex
	requests map[string]int
}

func (p *slowPartner) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.requests[r.Header.Get(webhooks.HeaderID)]++
	p.mu.Unlock()
	select {
	case <-time.After(p.delay):
		w.WriteHeader(http.StatusNoContent)
	case <-r.Context().Done():
	}
}

func (p *slowPartner) requested(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[id]
}

// A slow but healthy endpoint: one key's events go one after another, so a
// batch takes far longer than the lease. The old relay cut the publish off
// at the lease and failed every row it had not sent yet, and with a short
// retry schedule dead-lettered events the endpoint never saw. Now the
// leases are renewed while the publish runs, and a shutdown that cuts the
// publish off gives the unsent rows back with no attempt spent.
func TestSlowEndpointNeverDeadLettersAnEventItWasNotSent(t *testing.T) {
	r := newRig(t, "postgres")
	ctx := context.Background()
	p := &slowPartner{delay: 100 * time.Millisecond, requests: map[string]int{}}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	secret, _ := webhooks.NewSecret()
	key, _ := webhooks.ParseSecret(secret)
	hook, err := webhook.New([]webhook.Endpoint{{Name: "slow", URL: srv.URL, Secrets: [][]byte{key}, Enabled: true}},
		webhook.WithAllowCIDRs("127.0.0.0/8"), webhook.WithTimeout(time.Second), webhook.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hook.Close() })
	const n = 30
	ids := make([]string, n)
	for i := range ids {
		ev := r.keyed("one-key", i)
		if err := outbox.Write(ctx, r.db, ev); err != nil {
			t.Fatal(err)
		}
		ids[i] = ev.ID
	}
	opts := []producer.Option{producer.WithLease(time.Second), producer.WithRetrySchedule(10*time.Millisecond, 10*time.Millisecond),
		producer.WithMaxAttempts(3), producer.WithPollInterval(20 * time.Millisecond), producer.WithLogger(quiet())}

	// A shutdown in the middle of the batch: what was not sent is given back.
	relay := producer.New(r.store, hook, append(opts, producer.WithShutdownTimeout(50*time.Millisecond))...)
	stop := runRelay(t, relay)
	eventually(t, "a few events to be delivered", func() bool { return relay.Stats().Published >= 3 })
	stop()
	for _, id := range ids {
		row, err := r.store.Get(ctx, id)
		if errors.Is(err, outbox.ErrNotFound) {
			continue // delivered
		}
		if err != nil {
			t.Fatal(err)
		}
		if row.State != outbox.StatePending || row.Attempts != 0 {
			t.Errorf("event %s after the shutdown: %s with %d attempts (%q), requested %d times; want pending with none spent",
				id, row.State, row.Attempts, row.LastError, p.requested(id))
		}
	}

	// Run to the end: the whole batch takes 3 s against a lease of 1 s.
	relay = producer.New(r.store, hook, opts...)
	runRelay(t, relay)
	eventually(t, "every event to be delivered", func() bool { return r.pending() == 0 })
	if dead := r.count(outbox.StateDead); dead != 0 {
		t.Errorf("%d events dead-lettered by a slow, healthy endpoint", dead)
	}
	for _, id := range ids {
		if p.requested(id) == 0 {
			t.Errorf("event %s was never requested", id)
		}
	}
}

// refuseOne refuses the event id permanently, and key's later events with
// it.
func refuseOne(pub adapters.Publisher, id, key string) *refusing {
	return &refusing{Publisher: pub, key: key, refuse: func(m adapters.Message) error {
		if m.ID == id {
			return adapters.Permanent(errors.New("refused"))
		}
		return nil
	}}
}

// A dead head parks its key (the default): the key's later events wait, and
// `herald outbox retry` of the dead letter delivers the key in order. With
// the skip policy they go on without it.
func TestDeadLetterPolicyParksOrSkipsTheKey(t *testing.T) {
	for _, tc := range []struct {
		policy    producer.DeadLetterPolicy
		waitingK  int // K's events pending while its head is dead
		wantOrder bool
	}{
		{producer.ParkKey, 4, true},
		{producer.SkipKey, 0, false},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			eachDialect(t, func(t *testing.T, r *rig) {
				ctx := context.Background()
				var head string
				for i := range 5 {
					for _, key := range []string{"K", "L"} {
						ev := r.keyed(key, i)
						if key == "K" && i == 0 {
							head = ev.ID
						}
						if err := outbox.Write(ctx, r.db, ev); err != nil {
							t.Fatal(err)
						}
					}
				}
				pub := refuseOne(r.publisher(), head, "K")
				relay := producer.New(r.store, pub, producer.WithDeadLetterPolicy(tc.policy),
					producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
				runRelay(t, relay)
				eventually(t, "K's head to die and the rest to settle", func() bool {
					return r.count(outbox.StateDead) == 1 && r.pending() == tc.waitingK
				})
				offers := pub.offers.Load()
				time.Sleep(300 * time.Millisecond) // several passes: a parked key stays parked
				if got := r.pending(); got != tc.waitingK {
					t.Fatalf("%d events pending, want %d", got, tc.waitingK)
				}
				if tc.policy == producer.ParkKey && pub.offers.Load() != offers {
					t.Errorf("K's events were offered again (%d, then %d) while the key is parked", offers, pub.offers.Load())
				}

				pub.healed.Store(true)
				if _, err := r.store.Retry(ctx, outbox.Filter{State: outbox.StateDead}, nil); err != nil {
					t.Fatal(err)
				}
				eventually(t, "everything to be delivered", func() bool { return r.pending() == 0 && r.count(outbox.StateDead) == 0 })
				if tc.wantOrder {
					r.checkSequences(10)
					return
				}
				if got := len(r.streamMessages()); got != 10 {
					t.Errorf("stream holds %d events, want 10", got)
				}
			})
		})
	}
}

// A relay killed while it holds bucket leases: the default lease is short
// and renewed by a heartbeat, so its buckets move to a live relay within
// 5 s (it was 30 s and more).
func TestKilledRelaysBucketsMoveWithinFiveSeconds(t *testing.T) {
	r := newRig(t, "postgres")
	r.writeSequences(3000, 100)
	pub := r.publisher()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"HERALD_TEST_RELAY_PROCESS=1",
		"HERALD_TEST_DIALECT="+r.dialect,
		"HERALD_TEST_DSN="+r.dsn,
		"HERALD_TEST_NATS_URL="+r.srv.ClientURL(),
	)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the victim to hold every bucket and publish", func() bool {
		return r.leasedBy("victim") == outbox.Buckets && r.streamCount() > 0
	})
	survivor := producer.New(r.store, pub, producer.WithName("survivor"), producer.WithPollInterval(20*time.Millisecond),
		producer.WithLogger(quiet()))
	runRelay(t, survivor)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = cmd.Wait()
	eventually(t, "the survivor to take every bucket", func() bool { return r.leasedBy("survivor") == outbox.Buckets })
	moved := time.Since(killed)
	eventually(t, "the survivor to drain the outbox", func() bool { return r.pending() == 0 })
	t.Logf("the killed relay's buckets moved in %s", moved.Round(10*time.Millisecond))
	if moved > 5*time.Second {
		t.Errorf("the killed relay's buckets took %s to move; want at most 5s", moved.Round(10*time.Millisecond))
	}
	r.checkSequences(3000)
}

// Without ordering the adapter still holds a key's later messages back
// after a failure in the same call; those were never sent and must not
// spend attempts: they go on the next pass.
func TestHeldBackMessagesSpendNoAttemptWithoutOrdering(t *testing.T) {
	r := newRig(t, "postgres")
	ctx := context.Background()
	store, err := outbox.NewStore(r.db) // ordering off
	if err != nil {
		t.Fatal(err)
	}
	var head string
	for i := range 5 {
		ev := r.keyed("K", i)
		if i == 0 {
			head = ev.ID
		}
		if err := outbox.Write(ctx, r.db, ev); err != nil {
			t.Fatal(err)
		}
	}
	pub := refuseOne(r.publisher(), head, "K")
	relay := producer.New(store, pub, producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()))
	runRelay(t, relay)
	eventually(t, "the rest to be delivered", func() bool { return r.pending() == 0 })
	if s := relay.Stats(); s.Published != 4 || s.DeadLettered != 1 || s.Failed != 0 {
		t.Errorf("stats %+v; want 4 delivered, the head dead, no failed attempt", s)
	}
}
