package outbox_test

import (
	"context"
	"errors"
	"fmt"
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

func ids(rows []outbox.Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.EventID
	}
	return out
}

func TestOrderingClaimsOnlyEachKeysHead(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		clk := &clock{now: time.Now().Add(time.Minute)}
		store, _ := outbox.NewStore(db, outbox.WithOrdering(true), outbox.WithClock(clk.Now))
		k1, k2, k3 := keyed(t, "K", 1), keyed(t, "K", 2), keyed(t, "K", 3)
		l1, l2 := keyed(t, "L", 1), keyed(t, "L", 2)
		free1, free2 := keyed(t, "", 1), keyed(t, "", 2)
		if err := outbox.Write(ctx, db, k1, l1, k2, free1, l2, free2, k3); err != nil {
			t.Fatal(err)
		}
		want := func(got []outbox.Row, evs ...event.Event) {
			t.Helper()
			var w []string
			for _, e := range evs {
				w = append(w, e.ID)
			}
			if fmt.Sprint(ids(got)) != fmt.Sprint(w) {
				t.Fatalf("claimed %v, want %v", ids(got), w)
			}
		}

		a, _ := store.Claim(ctx, "a", 100, time.Minute)
		want(a, k1, l1, free1, free2) // heads of K and L, and every keyless event
		b, _ := store.Claim(ctx, "b", 100, time.Minute)
		want(b) // both keys have their head in flight

		// K's head fails and waits out a backoff: K waits with it, L moves on.
		_, err := store.Complete(ctx, "a", []outbox.Outcome{
			{Seq: a[0].Seq, Err: errors.New("broker down"), RetryAt: clk.Now().Add(10 * time.Second)},
			{Seq: a[1].Seq}, {Seq: a[2].Seq}, {Seq: a[3].Seq},
		})
		if err != nil {
			t.Fatal(err)
		}
		b, _ = store.Claim(ctx, "b", 100, time.Minute)
		want(b, l2)

		// After the backoff K's head comes first again, never k2 before it.
		clk.Add(10 * time.Second)
		c, _ := store.Claim(ctx, "c", 100, time.Minute)
		want(c, k1)
		// Dead-lettering the head lets the key go on.
		if _, err := store.Complete(ctx, "c", []outbox.Outcome{{Seq: c[0].Seq, Err: errors.New("poison"), Dead: true}}); err != nil {
			t.Fatal(err)
		}
		c, _ = store.Claim(ctx, "c", 100, time.Minute)
		want(c, k2)
	})
}

// A key whose head waits out a backoff holds back its own rows only: with
// far more of them ahead than a MySQL claim looks at first (its window),
// another key's rows behind them are still claimed, in order.
func TestOrderingBlockedBacklogDoesNotHideLaterKeys(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		clk := &clock{now: time.Now().Add(time.Minute)}
		store, _ := outbox.NewStore(db, outbox.WithOrdering(true), outbox.WithClock(clk.Now))
		const limit = 2
		var stuck []event.Event
		for i := range 30 * limit {
			stuck = append(stuck, keyed(t, "stuck", i))
		}
		m1, m2 := keyed(t, "moving", 1), keyed(t, "moving", 2)
		if err := outbox.Write(ctx, db, append(stuck, m1, m2)...); err != nil {
			t.Fatal(err)
		}
		first, err := store.Claim(ctx, "r", 1, time.Minute)
		if err != nil || len(first) != 1 || first[0].EventID != stuck[0].ID {
			t.Fatalf("first claim = %v, %v; want the stuck key's head", ids(first), err)
		}
		if _, err := store.Complete(ctx, "r", []outbox.Outcome{{Seq: first[0].Seq, Err: errors.New("down"), RetryAt: clk.Now().Add(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []event.Event{m1, m2} {
			got, err := store.Claim(ctx, "r", limit, time.Minute)
			if err != nil || len(got) != 1 || got[0].EventID != want.ID {
				t.Fatalf("claimed %v, %v; want %s of the moving key", ids(got), err, want.ID)
			}
			if _, err := store.Complete(ctx, "r", []outbox.Outcome{{Seq: got[0].Seq}}); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := store.Claim(ctx, "r", limit, time.Minute); err != nil || len(got) != 0 {
			t.Fatalf("claimed %v, %v; want nothing while the stuck key backs off", ids(got), err)
		}
	})
}

// A transaction that inserts early and commits late must be neither skipped
// (the trap of relays that read "after the last id they saw") nor delivered
// out of order for its key.
func TestOrderingLateCommitIsNotSkipped(t *testing.T) {
	for _, d := range []string{"postgres", "mysql"} { // SQLite has one writer: commits happen in insert order
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			db := testdb.Migrated(t, d).Gorm
			store, _ := outbox.NewStore(db, outbox.WithOrdering(true))

			early, late := keyed(t, "K", 1), keyed(t, "K", 2)
			long := db.Begin()
			if err := outbox.Write(ctx, long, early); err != nil {
				t.Fatal(err)
			}
			if err := db.Transaction(func(tx *gorm.DB) error { return outbox.Write(ctx, tx, late) }); err != nil {
				t.Fatal(err)
			}

			// Only the committed one is visible: it is K's head for now.
			got, err := store.Claim(ctx, "r", 10, time.Minute)
			if err != nil || len(got) != 1 || got[0].EventID != late.ID {
				t.Fatalf("claimed %v, %v; want only the committed event", ids(got), err)
			}
			if _, err := store.Complete(ctx, "r", []outbox.Outcome{{Seq: got[0].Seq}}); err != nil {
				t.Fatal(err)
			}
			if err := long.Commit().Error; err != nil {
				t.Fatal(err)
			}
			// The early-inserted, late-committed event is not skipped, and
			// goes after the one that committed before it.
			got, err = store.Claim(ctx, "r", 10, time.Minute)
			if err != nil || len(got) != 1 || got[0].EventID != early.ID {
				t.Fatalf("after the late commit claimed %v, %v; want the late event", ids(got), err)
			}
		})
	}
}

// Four relays claim concurrently: no row is claimed twice, one key never has
// two rows leased at once, and each key's rows are claimed in order.
func TestOrderingConcurrentClaimers(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		const keys, perKey = 20, 15
		var evs []event.Event
		for n := range perKey {
			for k := range keys {
				evs = append(evs, keyed(t, fmt.Sprintf("key-%d", k), n))
			}
		}
		if err := outbox.Write(ctx, db, evs...); err != nil {
			t.Fatal(err)
		}
		seqKey := map[string]string{}
		for _, e := range evs {
			seqKey[e.ID] = e.PartitionKey
		}

		var mu sync.Mutex
		inFlight := map[string]string{} // key → event id
		claimed := map[string]int{}
		order := map[string][]int64{}
		var failures []string
		var wg sync.WaitGroup
		for r := range 4 {
			store, _ := outbox.NewStore(db, outbox.WithOrdering(true))
			owner := fmt.Sprintf("relay-%d", r)
			wg.Go(func() {
				for idle := 0; idle < 20; {
					rows, err := store.Claim(ctx, owner, 7, time.Minute)
					if err != nil {
						mu.Lock()
						failures = append(failures, err.Error())
						mu.Unlock()
						return
					}
					if len(rows) == 0 {
						idle++
						time.Sleep(5 * time.Millisecond)
						continue
					}
					idle = 0
					mu.Lock()
					for _, row := range rows {
						key := seqKey[row.EventID]
						if other, busy := inFlight[key]; busy {
							failures = append(failures, fmt.Sprintf("%s claimed %s while %s of key %s was in flight", owner, row.EventID, other, key))
						}
						inFlight[key] = row.EventID
						claimed[row.EventID]++
						order[key] = append(order[key], row.Seq)
					}
					mu.Unlock()
					outcomes := make([]outbox.Outcome, len(rows))
					mu.Lock()
					for i, row := range rows {
						delete(inFlight, seqKey[row.EventID])
						outcomes[i] = outbox.Outcome{Seq: row.Seq}
					}
					mu.Unlock()
					if _, err := store.Complete(ctx, owner, outcomes); err != nil {
						mu.Lock()
						failures = append(failures, err.Error())
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		for _, f := range failures {
			t.Error(f)
		}
		if len(claimed) != len(evs) {
			t.Fatalf("claimed %d distinct rows, want %d", len(claimed), len(evs))
		}
		for id, n := range claimed {
			if n != 1 {
				t.Errorf("row %s claimed %d times", id, n)
			}
		}
		for key, seqs := range order {
			for i := 1; i < len(seqs); i++ {
				if seqs[i] < seqs[i-1] {
					t.Errorf("key %s claimed out of order: %v", key, seqs)
					break
				}
			}
		}
	})
}
