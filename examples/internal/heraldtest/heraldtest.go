// Package heraldtest is the producing side of the examples' end-to-end
// tests: data-product events written with outbox.Write into an SQLite
// outbox, a real relay that publishes them, and the checks every example
// must pass (each event's side effect exactly once, in spite of redelivery
// and of events published twice).
//
// It is test scaffolding shared by the examples, not part of them: a
// customer copies an example's main.go, never this package.
package heraldtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/examples/internal/provision"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/consumer"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// EventType is the type of every event Events makes.
const EventType = "io.herald.portal.data_product.created"

// Events returns n data_product.created events as the portal's enricher
// would write them, each about a data product of its own (so no event can
// be stale against another).
func Events(t testing.TB, n int) []event.Event {
	t.Helper()
	events := make([]event.Event, n)
	for i := range events {
		id := uuid.NewString()
		dp := enricher.DataProduct{
			ID:          id,
			Name:        fmt.Sprintf("Product %d", i),
			Namespace:   fmt.Sprintf("product-%d", i),
			Status:      "active",
			Settings:    map[string]string{},
			TeamMembers: []enricher.TeamMember{},
			Provenance:  enricher.Provenance{ActorID: uuid.NewString(), AuditRecordID: uuid.NewString()},
		}
		ev, err := event.New(EventType, "/portal", dp,
			event.WithSubject("data_products/"+id), event.WithPartitionKey(id))
		if err != nil {
			t.Fatal(err)
		}
		events[i] = ev
	}
	return events
}

// IDs returns the events' ids.
func IDs(events []event.Event) []string {
	ids := make([]string, len(events))
	for i, ev := range events {
		ids[i] = ev.ID
	}
	return ids
}

// Outbox is a migrated SQLite outbox in the test's temporary directory.
type Outbox struct {
	t     testing.TB
	db    *gorm.DB
	Store *outbox.Store
}

// NewOutbox creates the outbox.
func NewOutbox(t testing.TB) *Outbox {
	t.Helper()
	db := testdb.Migrated(t, "sqlite")
	store, err := outbox.NewStore(db.Gorm)
	if err != nil {
		t.Fatal(err)
	}
	return &Outbox{t: t, db: db.Gorm, Store: store}
}

// Write stores events in one transaction, as a producer does with its
// business change. Writing events again once the relay has delivered (and
// deleted) their rows makes the relay publish the same ids a second time,
// which is what a relay that dies between publishing and recording does.
func (o *Outbox) Write(events ...event.Event) {
	o.t.Helper()
	if err := outbox.Write(o.t.Context(), o.db, events...); err != nil {
		o.t.Fatal(err)
	}
}

// Relay starts a relay publishing the outbox through pub, polling fast and
// retrying failed publishes after a few milliseconds. The test owns it: it
// is stopped, and waited for, at cleanup.
func (o *Outbox) Relay(pub adapters.Publisher, opts ...producer.Option) *producer.Relay {
	o.t.Helper()
	opts = append([]producer.Option{
		producer.WithPollInterval(20 * time.Millisecond),
		producer.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		producer.WithShutdownTimeout(5 * time.Second),
		producer.WithLogger(Quiet()),
	}, opts...)
	relay := producer.New(o.Store, pub, opts...)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := relay.Run(ctx); err != nil {
			o.t.Errorf("relay: %v", err)
		}
	})
	o.t.Cleanup(func() { stop(); wg.Wait() })
	return relay
}

// WaitDelivered waits until the relay has published want events in all and
// the outbox holds nothing pending: every row was delivered, none is dead.
func (o *Outbox) WaitDelivered(relay *producer.Relay, want int64) {
	o.t.Helper()
	Eventually(o.t, 20*time.Second, fmt.Sprintf("the relay to publish %d events", want), func() error {
		st, err := o.Store.Stats(o.t.Context())
		if err != nil {
			return err
		}
		if st.Dead > 0 {
			rows, _ := o.Store.List(o.t.Context(), outbox.StateDead, 1)
			return fmt.Errorf("%d dead letters, e.g. %+v", st.Dead, rows)
		}
		if got := relay.Stats().Published; got < want || st.Pending > 0 {
			return fmt.Errorf("published %d, %d pending", got, st.Pending)
		}
		return nil
	})
}

// Quiet is a logger for the parts whose logs the test does not read.
func Quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Eventually calls check until it returns nil, failing the test with
// check's last error after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %v", timeout, what, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ErrInjected is the failure Flaky injects.
var ErrInjected = errors.New("injected failure: the side effect fails on its first try")

// Flaky wraps an example's side effect: the first call for each id in
// failOnce fails with ErrInjected, so the broker (or Herald) must deliver the
// event again. It counts the calls per event id, which shows that the ledger
// never ran the side effect for a duplicate.
type Flaky struct {
	apply    provision.Func
	mu       sync.Mutex
	failOnce map[string]bool
	calls    map[string]int
}

// NewFlaky wraps apply.
func NewFlaky(apply provision.Func, failOnce ...string) *Flaky {
	f := &Flaky{apply: apply, failOnce: map[string]bool{}, calls: map[string]int{}}
	for _, id := range failOnce {
		f.failOnce[id] = true
	}
	return f
}

// Apply is the wrapped side effect.
func (f *Flaky) Apply(ctx context.Context, tx *sql.Tx, ev consumer.Event) error {
	f.mu.Lock()
	f.calls[ev.ID]++
	fail := f.failOnce[ev.ID]
	delete(f.failOnce, ev.ID)
	f.mu.Unlock()
	if fail {
		return ErrInjected
	}
	return f.apply(ctx, tx, ev)
}

// Calls returns how often the side effect ran for id.
func (f *Flaky) Calls(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

// Run starts a consumer: run in a goroutine the test owns, cancelled and
// waited for at cleanup. It first opens the consumer's database at dbPath
// for the test's checks, and returns it: opened before run opens it, since
// two connections switching a new file to WAL at once may find it locked.
func Run(t testing.TB, dbPath string, run func(ctx context.Context) error) *sql.DB {
	t.Helper()
	db, err := provision.OpenDB(t.Context(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	t.Cleanup(func() { stop(); wg.Wait() })
	return db
}

// Provisioned counts the rows of the examples' provisioned table per event
// id, in the consumer's database.
func Provisioned(t testing.TB, db *sql.DB) map[string]int {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT event_id, COUNT(*) FROM provisioned GROUP BY event_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		got[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// CheckExactlyOnce fails the test unless every event was provisioned exactly
// once, nothing else was, and the side effect ran once per event plus once
// more for each event whose first try failed.
func CheckExactlyOnce(t testing.TB, db *sql.DB, events []event.Event, flaky *Flaky, failedOnce []string) {
	t.Helper()
	got := Provisioned(t, db)
	failed := map[string]bool{}
	for _, id := range failedOnce {
		failed[id] = true
	}
	for _, ev := range events {
		if got[ev.ID] != 1 {
			t.Errorf("event %s provisioned %d times, want exactly once", ev.ID, got[ev.ID])
		}
		want := 1
		if failed[ev.ID] {
			want = 2
		}
		if n := flaky.Calls(ev.ID); n != want {
			t.Errorf("event %s: side effect ran %d times, want %d (failed first: %v)", ev.ID, n, want, failed[ev.ID])
		}
	}
	if len(got) != len(events) {
		t.Errorf("provisioned %d distinct events, want %d", len(got), len(events))
	}
}
