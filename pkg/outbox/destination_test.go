package outbox_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

func TestRoutesMatchTypesByGlob(t *testing.T) {
	routes := outbox.Routes{
		{Destination: "partner", Types: []string{"io.herald.portal.input_port.*"}},
		{Destination: "audit-copy"},
		{Destination: "partner", Types: []string{"io.herald.portal.*.removed"}},
	}
	if err := routes.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		typ  string
		want []string
	}{
		{"io.herald.portal.input_port.approved", []string{"partner", "audit-copy"}},
		{"io.herald.portal.team_member.removed", []string{"audit-copy", "partner"}}, // in route order
		{"io.herald.portal.input_port.removed", []string{"partner", "audit-copy"}},  // two routes, one row
		{"io.herald.portal.data_product.created", []string{"audit-copy"}},
	} {
		if got := routes.Destinations(tc.typ); !slices.Equal(got, tc.want) {
			t.Errorf("Destinations(%s) = %v, want %v", tc.typ, got, tc.want)
		}
	}
}

func TestRoutesValidateNamesTheRoute(t *testing.T) {
	for _, tc := range []struct {
		name   string
		routes outbox.Routes
		want   string
	}{
		{"empty name", outbox.Routes{{Destination: ""}}, `route 0: destination ""`},
		{"upper case", outbox.Routes{{Destination: "Partner"}}, `route 0: destination "Partner"`},
		{"main", outbox.Routes{{Destination: "ok"}, {Destination: "main"}}, `route 1: destination "main" receives every event already`},
		{"bad glob", outbox.Routes{{Destination: "p", Types: []string{"io.[x"}}}, `route 0 (p): invalid type glob "io.[x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.routes.Validate()
			if err == nil || len(err.Error()) < len(tc.want) || err.Error()[:len(tc.want)] != tc.want {
				t.Fatalf("Validate() = %v, want it to start with %q", err, tc.want)
			}
		})
	}
}

// A destination that keeps failing neither holds back nor duplicates
// another: each has its own rows, attempts, backoff and dead letters.
func TestDestinationsKeepTheirOwnProgress(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		clk := &clock{now: time.Now().Add(time.Minute)}
		base, err := outbox.NewStore(db, outbox.WithClock(clk.Now))
		if err != nil {
			t.Fatal(err)
		}
		mainStore, partner := base, base.ForDestination("partner")
		routes := outbox.Routes{{Destination: "partner", Types: []string{"io.herald.test.port.*"}}}

		port1, port2 := typed(t, "io.herald.test.port.approved", "K"), typed(t, "io.herald.test.port.removed", "K")
		other := typed(t, "io.herald.test.team.joined", "K")
		if err := db.Transaction(func(tx *gorm.DB) error {
			return outbox.Write(ctx, tx, port1, other, port2)
		}); err != nil {
			t.Fatal(err)
		}
		route(t, mainStore, routes)

		// The partner is down: its relay reads both of its rows, and the
		// head fails.
		p, err := partner.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if got := eventIDs(p); !slices.Equal(got, []string{port1.ID, port2.ID}) {
			t.Fatalf("partner read %v, want its own rows %v", got, []string{port1.ID, port2.ID})
		}
		retryAt := clk.Now().Add(time.Hour)
		if err := partner.Record(ctx, []outbox.Outcome{{Seq: p[0].Seq, Err: errors.New("503 from partner"), RetryAt: retryAt}}); err != nil {
			t.Fatal(err)
		}

		// Main flows regardless, the same key included, one event at a time.
		var delivered []string
		for range 3 {
			m, err := mainStore.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(m) != 1 || m[0].Destination != outbox.MainDestination {
				t.Fatalf("main read %+v, want one main row", m)
			}
			delivered = append(delivered, m[0].EventID)
			if err := mainStore.Record(ctx, []outbox.Outcome{{Seq: m[0].Seq}}); err != nil {
				t.Fatal(err)
			}
		}
		if want := []string{port1.ID, other.ID, port2.ID}; !slices.Equal(delivered, want) {
			t.Fatalf("main delivered %v, want %v in order", delivered, want)
		}
		if m, _ := mainStore.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 100}); len(m) != 0 {
			t.Fatalf("main read %v again after delivering everything", eventIDs(m))
		}

		// The partner's rows are untouched by main's deliveries: nothing is
		// lost for it, and it still sees its own attempt, error and backoff.
		rows, err := base.ListRows(ctx, outbox.Filter{Destination: "partner"})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 || rows[0].EventID != port1.ID || rows[0].Attempts != 1 || rows[0].LastError != "503 from partner" ||
			rows[0].AvailableAt.Sub(retryAt).Abs() >= time.Millisecond || rows[1].EventID != port2.ID || rows[1].Attempts != 0 {
			t.Fatalf("partner rows = %+v, want port1 (1 attempt, its error, waiting until %v) and port2 (untried)", rows, retryAt)
		}

		// After the backoff the partner catches up, in order, once each.
		clk.Add(time.Hour)
		var got []string
		for range 3 {
			p, err := partner.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range p {
				got = append(got, r.EventID)
				if err := partner.Record(ctx, []outbox.Outcome{{Seq: r.Seq}}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if want := []string{port1.ID, port2.ID}; !slices.Equal(got, want) {
			t.Fatalf("partner delivered %v, want %v", got, want)
		}
		if st, _ := base.Stats(ctx); st.Pending != 0 || st.Dead != 0 {
			t.Fatalf("stats after both caught up = %+v, want nothing left", st)
		}
	})
}

// A dead letter of one destination is retried for that destination only.
func TestRetryOfOneDestinationLeavesTheOtherAlone(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		store, _ := outbox.NewStore(db, outbox.WithKeepDelivered(true))
		ev := typed(t, "io.herald.test.port.approved", "")
		routes := outbox.Routes{{Destination: "partner"}}
		if err := outbox.Write(ctx, db, ev); err != nil {
			t.Fatal(err)
		}
		route(t, store, routes)
		for _, s := range []*outbox.Store{store, store.ForDestination("partner")} {
			rows, err := s.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 10})
			if err != nil || len(rows) != 1 {
				t.Fatalf("read for %s = %v, %v; want one row", s.Destination(), rows, err)
			}
			o := outbox.Outcome{Seq: rows[0].Seq}
			if s.Destination() == "partner" {
				o.Err, o.Dead = errors.New("410 Gone"), true
			}
			if err := s.Record(ctx, []outbox.Outcome{o}); err != nil {
				t.Fatal(err)
			}
		}
		n, err := store.Retry(ctx, outbox.Filter{State: outbox.StateDead, Destination: "partner"}, nil)
		if err != nil || n != 1 {
			t.Fatalf("Retry = %d, %v; want 1 row", n, err)
		}
		mainRow, _ := store.Get(ctx, ev.ID)
		partnerRow, _ := store.ForDestination("partner").Get(ctx, ev.ID)
		if mainRow.State != outbox.StateDelivered || partnerRow.State != outbox.StatePending {
			t.Fatalf("after retry: main %s, partner %s; want delivered and pending", mainRow.State, partnerRow.State)
		}
	})
}

// Upgrading an outbox with undelivered rows puts them on the main
// destination, keeps their seq, and never hands a later event a lower one.
func TestDestinationMigrationKeepsExistingRows(t *testing.T) {
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := testdb.New(t, dialect).Gorm
			if err := outbox.ApplyUpTo(ctx, db, 3); err != nil {
				t.Fatal(err)
			}
			old := []event.Event{typed(t, "io.herald.test.port.approved", "K"), typed(t, "io.herald.test.port.removed", "K")}
			for _, ev := range old {
				payload, _ := ev.MarshalJSON()
				if err := db.Exec(`INSERT INTO herald_outbox (event_id, event_type, partition_key, payload) VALUES (?, ?, ?, ?)`,
					ev.ID, ev.Type, ev.PartitionKey, payload).Error; err != nil {
					t.Fatal(err)
				}
			}
			// The newest row is gone (delivered) before the upgrade.
			if err := db.Exec(`DELETE FROM herald_outbox WHERE event_id = ?`, old[1].ID).Error; err != nil {
				t.Fatal(err)
			}
			applied, err := outbox.Migrate(ctx, db)
			if err != nil || !slices.Contains(applied, 4) {
				t.Fatalf("Migrate = %v, %v; want version 4 applied", applied, err)
			}
			store, _ := outbox.NewStore(db)
			kept, err := store.Get(ctx, old[0].ID)
			if err != nil || kept.Destination != outbox.MainDestination || kept.Seq != 1 {
				t.Fatalf("old row after upgrade = %+v, %v; want it on main with seq 1", kept, err)
			}
			fresh := typed(t, "io.herald.test.port.approved", "K")
			if err := outbox.Write(ctx, db, fresh); err != nil {
				t.Fatal(err)
			}
			if r, _ := store.Get(ctx, fresh.ID); r.Seq <= 2 {
				t.Fatalf("new row got seq %d, want above 2, the deleted row's", r.Seq)
			}
		})
	}
}

func typed(t *testing.T, typ, key string) event.Event {
	t.Helper()
	ev, err := event.New(typ, "/test", map[string]string{"k": key}, event.WithPartitionKey(key))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// route fans out everything written so far, as the main relay does before
// it publishes.
func route(t *testing.T, main *outbox.Store, r outbox.Router) {
	t.Helper()
	for {
		n, err := main.Route(context.Background(), outbox.AllBuckets(), r, 500)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}
