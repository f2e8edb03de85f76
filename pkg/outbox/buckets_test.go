package outbox_test

// The relay's side of the store (buckets.go): bucket leases, relay
// membership, reading a set of buckets in seq order and recording outcomes.
// What relays build on them (one reader per bucket, per-key order, a failing
// key held while others flow) is tested in pkg/producer.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

func keyed(t *testing.T, key string, n int) event.Event {
	t.Helper()
	ev, err := event.New("io.herald.test.thing.updated", "/test", map[string]int{"n": n}, event.WithPartitionKey(key))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func idsOf(evs ...event.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// bucketOf reads the bucket the database gave each partition key, from the
// rows written so far.
func bucketOf(t *testing.T, db *gorm.DB) map[string]int {
	t.Helper()
	var rows []struct {
		PartitionKey string
		Bucket       int
	}
	if err := db.Raw(`SELECT DISTINCT partition_key, bucket FROM herald_outbox`).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		if b, seen := out[r.PartitionKey]; seen && b != r.Bucket {
			t.Fatalf("key %q has rows in buckets %d and %d", r.PartitionKey, b, r.Bucket)
		}
		out[r.PartitionKey] = r.Bucket
	}
	return out
}

func lease(t *testing.T, store *outbox.Store, owner string, want int, d time.Duration) outbox.BucketLeases {
	t.Helper()
	got, err := store.Lease(context.Background(), owner, want, d)
	if err != nil {
		t.Fatalf("lease %d buckets for %s: %v", want, owner, err)
	}
	if !slices.IsSorted(got.Held) || len(slices.Compact(slices.Clone(got.Held))) != len(got.Held) {
		t.Fatalf("%s holds %v: want ascending buckets, each once", owner, got.Held)
	}
	for _, b := range got.TakenOver {
		if !slices.Contains(got.Held, b) {
			t.Fatalf("%s took over bucket %d it does not hold (%v)", owner, b, got.Held)
		}
	}
	return got
}

func readAll(t *testing.T, store *outbox.Store) []outbox.Row {
	t.Helper()
	rows, err := store.Read(context.Background(), outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func record(t *testing.T, store *outbox.Store, outcomes ...outbox.Outcome) {
	t.Helper()
	if err := store.Record(context.Background(), outcomes); err != nil {
		t.Fatal(err)
	}
}

// disjoint fails unless no bucket is in two of the sets, and returns their union.
func disjoint(t *testing.T, held map[string][]int) []int {
	t.Helper()
	holder := map[int]string{}
	var union []int
	for owner, bs := range held {
		for _, b := range bs {
			if other, ok := holder[b]; ok {
				t.Errorf("bucket %d is held by both %s and %s", b, other, owner)
			}
			holder[b] = owner
			union = append(union, b)
		}
	}
	slices.Sort(union)
	return union
}

func TestLeaseGivesEachBucketToOneLiveOwner(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wants []int // each owner's want, leased in turn
		held  []int // how many buckets each then holds
	}{
		{"two halves cover every bucket", []int{32, 32}, []int{32, 32}},
		{"a third owner finds nothing free", []int{32, 32, 32}, []int{32, 32, 0}},
		{"a first owner wanting all leaves none", []int{64, 32}, []int{64, 0}},
		{"the last share is what is left", []int{22, 22, 22}, []int{22, 22, 20}},
		{"want 0 takes nothing", []int{0, 64}, []int{0, 64}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachDialect(t, func(t *testing.T, db *gorm.DB) {
				store, _ := outbox.NewStore(db)
				held := map[string][]int{}
				for i, want := range tc.wants {
					owner := fmt.Sprintf("relay-%d", i)
					got := lease(t, store, owner, want, time.Minute)
					if len(got.Held) != tc.held[i] || len(got.TakenOver) != 0 {
						t.Fatalf("%s wanting %d got %+v; want %d buckets, none taken over", owner, want, got, tc.held[i])
					}
					held[owner] = got.Held
				}
				union := disjoint(t, held)
				if total := len(union); total == outbox.Buckets && !slices.Equal(union, outbox.AllBuckets()) {
					t.Errorf("the owners hold %v, want every bucket once", union)
				}
				// Renewing keeps what each holds: no more, no less.
				for i, want := range tc.wants {
					owner := fmt.Sprintf("relay-%d", i)
					if got := lease(t, store, owner, want, time.Minute); !slices.Equal(got.Held, held[owner]) || len(got.TakenOver) != 0 {
						t.Errorf("%s renewed to %+v, want %v kept", owner, got, held[owner])
					}
				}
			})
		})
	}
}

// Relays renew and take buckets concurrently: a bucket never goes to two.
func TestLeaseByConcurrentOwnersNeverSharesABucket(t *testing.T) {
	const owners = 4
	for _, tc := range []struct {
		name string
		want int
		// rounds of Lease per owner, on each of destinations fresh
		// destinations; the owners of a destination start together.
		rounds, destinations int
		// share is how many buckets each owner holds at the end; 0 when it
		// depends on who came first.
		share int
	}{
		{"fair shares", outbox.Buckets / owners, 20, 1, outbox.Buckets / owners},
		// Every owner goes for every bucket at the same moment: only the
		// conditional UPDATE keeps two from taking the same one.
		{"everyone wants everything", outbox.Buckets, 3, 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachDialect(t, func(t *testing.T, db *gorm.DB) {
				base, _ := outbox.NewStore(db)
				for d := range tc.destinations {
					store := base.ForDestination(fmt.Sprintf("d%d", d))
					var (
						mu       sync.Mutex
						holder   = map[int]string{} // every bucket ever reported held, by whom
						failures []string
						wg       sync.WaitGroup
						start    = make(chan struct{})
					)
					final := make([][]int, owners)
					for o := range owners {
						owner := fmt.Sprintf("relay-%d", o)
						wg.Go(func() {
							<-start
							for range tc.rounds {
								got, err := store.Lease(context.Background(), owner, tc.want, time.Minute)
								mu.Lock()
								if err != nil {
									failures = append(failures, fmt.Sprintf("%s: %v", owner, err))
									mu.Unlock()
									return
								}
								// Nothing expires and nobody gives back in this
								// test, so a bucket reported by a second owner
								// was shared.
								for _, b := range got.Held {
									if other, ok := holder[b]; ok && other != owner {
										failures = append(failures, fmt.Sprintf("%s: bucket %d held by %s and %s", store.Destination(), b, other, owner))
									}
									holder[b] = owner
								}
								final[o] = got.Held
								mu.Unlock()
							}
						})
					}
					close(start)
					wg.Wait()
					for _, f := range failures {
						t.Error(f)
					}
					held := map[string][]int{}
					for o, bs := range final {
						if tc.share > 0 && len(bs) != tc.share {
							t.Errorf("%s: relay-%d holds %d buckets after %d rounds, want %d", store.Destination(), o, len(bs), tc.rounds, tc.share)
						}
						held[fmt.Sprintf("relay-%d", o)] = bs
					}
					if union := disjoint(t, held); !slices.Equal(union, outbox.AllBuckets()) {
						t.Errorf("%s: the owners hold %v at the end, want every bucket once", store.Destination(), union)
					}
				}
			})
		})
	}
}

// A relay that stops renewing loses its buckets once its lease has run out,
// not before, and whoever takes them learns they were taken over.
func TestLeaseTakesOverBucketsWhoseLeaseRanOut(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		clk := &clock{now: time.Now()}
		store, _ := outbox.NewStore(db, outbox.WithClock(clk.Now))
		if err := outbox.Write(ctx, db, keyed(t, "K", 1), keyed(t, "K", 2), keyed(t, "L", 1)); err != nil {
			t.Fatal(err)
		}
		inFlight := func(want int) {
			t.Helper()
			st, err := store.Stats(ctx)
			if err != nil || st.Pending != 3 || st.InFlight != want {
				t.Fatalf("stats at %v = %+v, %v; want 3 pending, %d in flight", clk.Now(), st, err, want)
			}
		}

		a := lease(t, store, "relay-a", outbox.Buckets, time.Minute)
		if len(a.Held) != outbox.Buckets {
			t.Fatalf("A holds %v, want every bucket", a.Held)
		}
		inFlight(3)
		clk.Add(59 * time.Second)
		if b := lease(t, store, "relay-b", 32, time.Minute); len(b.Held) != 0 {
			t.Fatalf("B took %v from A's live lease", b.Held)
		}
		if again := lease(t, store, "relay-a", outbox.Buckets, time.Minute); !slices.Equal(again.Held, a.Held) || len(again.TakenOver) != 0 {
			t.Fatalf("A renewed to %+v", again)
		}
		clk.Add(59 * time.Second) // past A's first lease, within its renewal
		if b := lease(t, store, "relay-b", 32, time.Minute); len(b.Held) != 0 {
			t.Fatalf("B took %v from A's renewed lease", b.Held)
		}
		inFlight(3)

		clk.Add(time.Second) // A's renewal has run out
		inFlight(0)
		// B takes every bucket whose lease ran out, beyond what it wants:
		// A's keys must not wait for a relay short of its share.
		b := lease(t, store, "relay-b", 32, time.Minute)
		if len(b.Held) != outbox.Buckets || !slices.Equal(b.TakenOver, b.Held) {
			t.Fatalf("B after A's lease ran out = %+v; want every bucket, all taken over", b)
		}
		buckets := bucketOf(t, db)
		want := 0
		for _, k := range []string{"K", "K", "L"} {
			if slices.Contains(b.Held, buckets[k]) {
				want++
			}
		}
		inFlight(want)

		// A comes back: it takes nothing from B's live leases (B gives
		// back what is beyond its share itself), and reports no takeover.
		a = lease(t, store, "relay-a", outbox.Buckets, time.Minute)
		if union := disjoint(t, map[string][]int{"a": a.Held, "b": b.Held}); !slices.Equal(union, outbox.AllBuckets()) {
			t.Fatalf("A holds %v and B %v, want every bucket once", a.Held, b.Held)
		}
		if len(a.TakenOver) != 0 {
			t.Fatalf("A reports taking over %v, its own buckets", a.TakenOver)
		}
		inFlight(3)
	})
}

// Join counts the live relays of its destination, which size each relay's
// share; Leave ends a membership at once.
func TestJoinCountsLiveRelaysOfItsDestination(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		clk := &clock{now: time.Now()}
		mainStore, _ := outbox.NewStore(db, outbox.WithClock(clk.Now))
		partner := mainStore.ForDestination("partner")
		start := clk.Now()
		for i, step := range []struct {
			at     time.Duration // since the start
			store  *outbox.Store
			leave  bool
			name   string
			relays int // Join's answer
		}{
			{0, mainStore, false, "a", 1},
			{0, mainStore, false, "b", 2},
			{0, mainStore, false, "a", 2}, // renewing is not joining again
			{0, partner, false, "c", 1},
			{30 * time.Second, mainStore, false, "b", 2}, // b renews until 90s, a's runs out at 60s
			{61 * time.Second, mainStore, false, "b", 1},
			{61 * time.Second, mainStore, false, "a", 2}, // a is back
			{61 * time.Second, mainStore, true, "a", 0},
			{61 * time.Second, mainStore, false, "b", 1},
			{61 * time.Second, partner, false, "d", 1}, // c's membership has run out too
		} {
			clk.mu.Lock()
			clk.now = start.Add(step.at)
			clk.mu.Unlock()
			if step.leave {
				if err := step.store.Leave(ctx, step.name); err != nil {
					t.Fatal(err)
				}
				continue
			}
			n, err := step.store.Join(ctx, step.name, time.Minute)
			if err != nil || n != step.relays {
				t.Errorf("step %d: at %v %s joins %s: %d relays, %v; want %d", i, step.at, step.name, step.store.Destination(), n, err, step.relays)
			}
		}
	})
}

func TestLeaveHandsEveryBucketBackAtOnce(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		mainStore, _ := outbox.NewStore(db)
		partner := mainStore.ForDestination("partner")
		for _, name := range []string{"a", "b"} {
			if _, err := mainStore.Join(ctx, name, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		a, b := lease(t, mainStore, "a", 32, time.Minute), lease(t, mainStore, "b", 32, time.Minute)
		pa := lease(t, partner, "a", outbox.Buckets, time.Minute)

		if err := mainStore.Leave(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		// Handed back, not lapsed: taken at once, and not taken over.
		if c := lease(t, mainStore, "c", outbox.Buckets, time.Minute); !slices.Equal(c.Held, a.Held) || len(c.TakenOver) != 0 {
			t.Errorf("after A left, C got %+v; want A's buckets %v, none taken over", c, a.Held)
		}
		if n, err := mainStore.Join(ctx, "b", time.Minute); err != nil || n != 1 {
			t.Errorf("after A left, B counts %d relays, %v; want 1", n, err)
		}
		if got := lease(t, mainStore, "b", 32, time.Minute); !slices.Equal(got.Held, b.Held) {
			t.Errorf("B holds %v after A left, want its own %v", got.Held, b.Held)
		}
		// A relay of the same name at another destination keeps its buckets.
		if got := lease(t, partner, "a", outbox.Buckets, time.Minute); !slices.Equal(got.Held, pa.Held) {
			t.Errorf("partner's A holds %v after main's A left, want %v", got.Held, pa.Held)
		}
		if n, err := partner.Join(ctx, "e", time.Minute); err != nil || n != 1 {
			t.Errorf("partner counts %d relays, %v; want 1 (main's relays are not its own)", n, err)
		}
	})
}

func TestReleaseBucketsFreesOnlyTheOwnersNamedBuckets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		owner   string
		release func(a, b []int) []int
		freed   func(a, b []int) []int
	}{
		{"the named buckets of the owner", "a",
			func(a, _ []int) []int { return a[:3] }, func(a, _ []int) []int { return a[:3] }},
		{"not another owner's", "b",
			func(a, _ []int) []int { return a[:3] }, func(_, _ []int) []int { return nil }},
		{"of a mixed list only the owner's", "a",
			func(a, b []int) []int { return append(slices.Clone(a[:3]), b[:2]...) }, func(a, _ []int) []int { return a[:3] }},
		{"none", "a",
			func(_, _ []int) []int { return nil }, func(_, _ []int) []int { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachDialect(t, func(t *testing.T, db *gorm.DB) {
				store, _ := outbox.NewStore(db)
				a, b := lease(t, store, "a", 32, time.Minute), lease(t, store, "b", 32, time.Minute)
				if err := store.ReleaseBuckets(context.Background(), tc.owner, tc.release(a.Held, b.Held)); err != nil {
					t.Fatal(err)
				}
				freed := tc.freed(a.Held, b.Held)
				c := lease(t, store, "c", outbox.Buckets, time.Minute)
				if !slices.Equal(c.Held, freed) || len(c.TakenOver) != 0 {
					t.Errorf("C took %+v, want the freed %v, none taken over", c, freed)
				}
				for owner, before := range map[string][]int{"a": a.Held, "b": b.Held} {
					want := slices.DeleteFunc(slices.Clone(before), func(x int) bool { return slices.Contains(freed, x) })
					if got := lease(t, store, owner, 0, time.Minute); !slices.Equal(got.Held, want) {
						t.Errorf("%s holds %v, want %v", owner, got.Held, want)
					}
				}
			})
		})
	}
}

// The database puts a row in the bucket of its partition key, however the
// row was written, so one relay reads all of a key.
func TestBucketIsComputedFromThePartitionKey(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		keys := []string{"K", "L", ""}
		for i, k := range keys {
			if err := outbox.Write(ctx, db, keyed(t, k, i)); err != nil {
				t.Fatal(err)
			}
			ev := keyed(t, k, i)
			payload, _ := ev.MarshalJSON()
			if err := db.Exec(`INSERT INTO herald_outbox (event_id, event_type, partition_key, payload) VALUES (?, ?, ?, ?)`,
				ev.ID, ev.Type, ev.PartitionKey, payload).Error; err != nil {
				t.Fatal(err)
			}
		}
		// bucketOf fails if a key's two rows disagree.
		buckets := bucketOf(t, db)
		// As docs/outbox.md says, "Buckets, not rows".
		documented := map[string]string{
			"postgres": `SELECT hashtext(?) & 63`,
			"mysql":    `SELECT CRC32(?) & 63`,
		}[db.Name()]
		for _, k := range keys {
			b, ok := buckets[k]
			switch {
			case !ok:
				t.Errorf("no row of key %q", k)
			case documented == "" && b != 0:
				t.Errorf("SQLite put key %q in bucket %d, want every row in 0", k, b)
			case documented != "":
				var want int
				if err := db.Raw(documented, k).Scan(&want).Error; err != nil {
					t.Fatal(err)
				}
				if b != want {
					t.Errorf("key %q is in bucket %d, want %d as documented", k, b, want)
				}
			}
		}
		// Other tests rely on these keys being apart where buckets differ.
		if documented != "" && (buckets["K"] == buckets["L"] || buckets["K"] == buckets[""] || buckets["L"] == buckets[""]) {
			t.Errorf("keys K, L and '' share buckets on %s: %v", db.Name(), buckets)
		}
	})
}

func TestReadReturnsPendingRowsOfTheBucketsInSeqOrder(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		store, _ := outbox.NewStore(db)
		// A dead row first, and every event also routed to a partner: Read
		// returns neither.
		if err := outbox.Write(ctx, db, keyed(t, "K", 0)); err != nil {
			t.Fatal(err)
		}
		dead := readAll(t, store)
		record(t, store, outbox.Outcome{Seq: dead[0].Seq, Err: errors.New("poison"), Dead: true})
		k1, l1, k2, free1, l2, k3 := keyed(t, "K", 1), keyed(t, "L", 1), keyed(t, "K", 2), keyed(t, "", 1), keyed(t, "L", 2), keyed(t, "K", 3)
		all := []event.Event{k1, l1, k2, free1, l2, k3}
		if err := outbox.Write(ctx, db, all...); err != nil {
			t.Fatal(err)
		}
		route(t, store, outbox.Routes{{Destination: "partner"}})
		before := snapshot(t, store, idsOf(all...))
		seq := map[string]int64{}
		for _, r := range before {
			seq[r.EventID] = r.Seq
		}
		buckets := bucketOf(t, db)
		bK, bL := buckets["K"], buckets["L"]
		empty := 0 // a bucket no row is in
		for slices.Contains([]int{bK, bL, buckets[""]}, empty) {
			empty++
		}

		for _, tc := range []struct {
			name string
			q    outbox.ReadQuery
			want []event.Event
			// sqlite, when set, is what SQLite returns: it puts every row
			// in bucket 0.
			sqlite []event.Event
		}{
			{"every bucket", outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 100}, all, nil},
			{"limit", outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 2}, []event.Event{k1, l1}, nil},
			{"after a seq", outbox.ReadQuery{Buckets: outbox.AllBuckets(), After: seq[k2.ID], Limit: 100}, []event.Event{free1, l2, k3}, nil},
			{"after the last", outbox.ReadQuery{Buckets: outbox.AllBuckets(), After: seq[k3.ID], Limit: 100}, nil, nil},
			{"one key's bucket", outbox.ReadQuery{Buckets: []int{bK}, Limit: 100}, []event.Event{k1, k2, k3}, all},
			{"two keys' buckets", outbox.ReadQuery{Buckets: []int{bL, bK}, Limit: 100}, []event.Event{k1, l1, k2, l2, k3}, all},
			{"a bucket without rows", outbox.ReadQuery{Buckets: []int{empty}, Limit: 100}, nil, nil},
			{"no buckets", outbox.ReadQuery{Limit: 100}, nil, nil},
			{"skip a key", outbox.ReadQuery{Buckets: outbox.AllBuckets(), SkipKeys: []string{"K"}, Limit: 100}, []event.Event{l1, free1, l2}, nil},
			{"skip two keys", outbox.ReadQuery{Buckets: outbox.AllBuckets(), SkipKeys: []string{"L", "K"}, Limit: 100}, []event.Event{free1}, nil},
			{"after, skip and limit together", outbox.ReadQuery{Buckets: []int{bK, bL, buckets[""]}, After: seq[k1.ID], SkipKeys: []string{"L"}, Limit: 2},
				[]event.Event{k2, free1}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := store.Read(ctx, tc.q)
				if err != nil {
					t.Fatal(err)
				}
				want := tc.want
				if db.Name() == "sqlite" && tc.sqlite != nil {
					want = tc.sqlite
				}
				if !slices.Equal(eventIDs(got), idsOf(want...)) {
					t.Fatalf("Read(%+v) = %v, want %v", tc.q, eventIDs(got), idsOf(want...))
				}
				for _, r := range got {
					i := slices.Index(idsOf(all...), r.EventID)
					if !rowsEqual(r, before[i]) {
						t.Errorf("read row %d:\n got %+v\nwant %+v", i, r, before[i])
					}
				}
			})
		}
		// Reading takes nothing and counts no attempt.
		if after := snapshot(t, store, idsOf(all...)); !slices.EqualFunc(after, before, rowsEqual) {
			t.Errorf("rows changed by reading:\n got %+v\nwant %+v", after, before)
		}
	})
}

// A key held back with a long backlog does not hide the rows of other keys
// behind it from a read that leaves the key out.
func TestReadSkippingAHeldKeyReachesTheRowsBehindItsBacklog(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		store, _ := outbox.NewStore(db)
		var stuck []event.Event
		for i := range 60 {
			stuck = append(stuck, keyed(t, "stuck", i))
		}
		m1, m2 := keyed(t, "moving", 1), keyed(t, "moving", 2)
		if err := outbox.Write(ctx, db, append(stuck, m1, m2)...); err != nil {
			t.Fatal(err)
		}
		head, err := store.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 2})
		if err != nil || !slices.Equal(eventIDs(head), idsOf(stuck[:2]...)) {
			t.Fatalf("Read = %v, %v; want the stuck key's first two", eventIDs(head), err)
		}
		retryAt := time.Now().Add(time.Hour)
		record(t, store, outbox.Outcome{Seq: head[0].Seq, Err: errors.New("down"), RetryAt: retryAt})

		// The head in backoff is still read, with the time it waits for:
		// that is how a relay taking the bucket over learns to hold the key.
		again, err := store.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 2})
		if err != nil || len(again) != 2 || again[0].EventID != stuck[0].ID || again[0].AvailableAt.Sub(retryAt).Abs() >= time.Millisecond ||
			again[0].Attempts != 1 || again[0].LastError != "down" {
			t.Fatalf("Read = %+v, %v; want the head first, waiting until %v after 1 attempt", again, err, retryAt)
		}
		got, err := store.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), SkipKeys: []string{"stuck"}, Limit: 2})
		if err != nil || !slices.Equal(eventIDs(got), idsOf(m1, m2)) {
			t.Fatalf("Read skipping the stuck key = %v, %v; want the moving key's two", eventIDs(got), err)
		}
	})
}

// A transaction that inserts early and commits late is not skipped by a
// read from the start, however far readers had got.
func TestReadFromTheStartSeesALateCommit(t *testing.T) {
	for _, d := range []string{"postgres", "mysql"} { // SQLite has one writer: commits happen in insert order
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			db := testdb.Migrated(t, d).Gorm
			store, _ := outbox.NewStore(db)

			early, late := keyed(t, "K", 1), keyed(t, "K", 2)
			long := db.Begin()
			t.Cleanup(func() { long.Rollback() })
			if err := outbox.Write(ctx, long, early); err != nil {
				t.Fatal(err)
			}
			if err := db.Transaction(func(tx *gorm.DB) error { return outbox.Write(ctx, tx, late) }); err != nil {
				t.Fatal(err)
			}

			got := readAll(t, store)
			if !slices.Equal(eventIDs(got), idsOf(late)) {
				t.Fatalf("read %v; want only the committed event", eventIDs(got))
			}
			cursor := got[0].Seq
			record(t, store, outbox.Outcome{Seq: cursor})
			if err := long.Commit().Error; err != nil {
				t.Fatal(err)
			}
			// Its seq is below what was read already: reading on from there
			// misses it, which is why relays start passes from the lowest.
			if got, err := store.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), After: cursor, Limit: 10}); err != nil || len(got) != 0 {
				t.Fatalf("read after seq %d = %v, %v; want nothing (the late commit has a lower seq)", cursor, eventIDs(got), err)
			}
			if got := readAll(t, store); !slices.Equal(eventIDs(got), idsOf(early)) {
				t.Fatalf("read from the start after the late commit = %v; want the late-committed event", eventIDs(got))
			}
		})
	}
}

func TestRecordStoresWhatBecameOfEachRow(t *testing.T) {
	ctx := context.Background()
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep_delivered=%v", keep), func(t *testing.T) {
			eachDialect(t, func(t *testing.T, db *gorm.DB) {
				clk := &clock{now: time.Now().Add(time.Minute)} // ahead of the wall clock Write stamps rows with
				store, _ := outbox.NewStore(db, outbox.WithClock(clk.Now), outbox.WithKeepDelivered(keep))
				evs := writeN(t, db, 3)
				rows := readAll(t, store)
				if len(rows) != 3 {
					t.Fatalf("read %d rows, want 3", len(rows))
				}
				retryAt := clk.Now().Add(10 * time.Second)
				record(t, store,
					outbox.Outcome{Seq: rows[0].Seq},
					outbox.Outcome{Seq: rows[1].Seq, Err: errors.New("broker down"), RetryAt: retryAt},
					outbox.Outcome{Seq: rows[2].Seq, Err: errors.New("too big"), Dead: true},
				)

				if r, err := store.Get(ctx, evs[0].ID); keep {
					if err != nil || r.State != outbox.StateDelivered || r.DeliveredAt.IsZero() {
						t.Errorf("delivered row = %+v, %v", r, err)
					}
				} else if !errors.Is(err, outbox.ErrNotFound) {
					t.Errorf("delivered row still there: %+v, %v", r, err)
				}
				retry, _ := store.Get(ctx, evs[1].ID)
				if retry.State != outbox.StatePending || retry.LastError != "broker down" || retry.Attempts != 1 ||
					retry.AvailableAt.Sub(retryAt).Abs() >= time.Millisecond {
					t.Errorf("retry row = %+v", retry)
				}
				dead, _ := store.Get(ctx, evs[2].ID)
				if dead.State != outbox.StateDead || dead.LastError != "too big" || dead.Attempts != 1 {
					t.Errorf("dead row = %+v", dead)
				}

				// Only the retried row is still read, with its backoff.
				got := readAll(t, store)
				if len(got) != 1 || !rowsEqual(got[0], retry) {
					t.Fatalf("read after recording %+v; want only the retried row %+v", got, retry)
				}
				clk.Add(10 * time.Second)
				record(t, store, outbox.Outcome{Seq: retry.Seq, Err: errors.New("still down"), RetryAt: clk.Now().Add(time.Minute)})
				if r, _ := store.Get(ctx, evs[1].ID); r.State != outbox.StatePending || r.Attempts != 2 || r.LastError != "still down" {
					t.Errorf("row after a second failure = %+v, want pending at 2 attempts", r)
				}
				record(t, store, outbox.Outcome{Seq: retry.Seq, Err: errors.New("gave up"), Dead: true})
				if r, _ := store.Get(ctx, evs[1].ID); r.State != outbox.StateDead || r.Attempts != 3 || r.LastError != "gave up" {
					t.Errorf("row given up after two failures = %+v, want dead at 3 attempts", r)
				}

				// Outcomes for rows that are no longer pending (a relay that
				// stalled past its lease reporting late) change nothing.
				finished := []string{evs[2].ID}
				late := []outbox.Outcome{
					{Seq: dead.Seq, Err: errors.New("late failure"), RetryAt: clk.Now().Add(time.Hour)},
					{Seq: dead.Seq, Err: errors.New("late dead letter"), Dead: true},
				}
				if keep {
					finished = append(finished, evs[0].ID)
					late = append(late,
						outbox.Outcome{Seq: rows[0].Seq, Err: errors.New("late failure"), RetryAt: clk.Now().Add(time.Hour)},
						outbox.Outcome{Seq: rows[0].Seq, Err: errors.New("late dead letter"), Dead: true},
						outbox.Outcome{Seq: dead.Seq}, // acknowledged after all
					)
				}
				before := snapshot(t, store, finished)
				clk.Add(time.Minute) // a delivered_at written now would differ
				for _, o := range late {
					record(t, store, o)
				}
				if after := snapshot(t, store, finished); !slices.EqualFunc(after, before, rowsEqual) {
					t.Errorf("late outcomes changed finished rows:\n got %+v\nwant %+v", after, before)
				}
				if err := store.Record(ctx, nil); err != nil {
					t.Errorf("recording nothing: %v", err)
				}
			})
		})
	}
}
