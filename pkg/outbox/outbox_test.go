package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// eachDialect runs fn against a fresh, migrated outbox on every dialect.
func eachDialect(t *testing.T, fn func(t *testing.T, db *gorm.DB)) {
	for _, d := range testdb.Dialects() {
		t.Run(d, func(t *testing.T) { fn(t, testdb.Migrated(t, d).Gorm) })
	}
}

func newEvent(t *testing.T, i int) event.Event {
	t.Helper()
	ev, err := event.New("io.herald.test.thing.created", "/test", map[string]int{"n": i},
		event.WithSubject(fmt.Sprintf("things/%d", i)), event.WithPartitionKey("k"))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// clock is a settable time source for stepping over leases and backoff.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestWriteIsTransactional(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		rollback bool
		want     int
	}{
		{"commit stores the events", false, 3},
		{"rollback stores nothing", true, 0},
	} {
		eachDialect(t, func(t *testing.T, db *gorm.DB) {
			t.Log(tc.name)
			evs := []event.Event{newEvent(t, 1), newEvent(t, 2), newEvent(t, 3)}
			err := db.Transaction(func(tx *gorm.DB) error {
				if err := outbox.Write(ctx, tx, evs...); err != nil {
					return err
				}
				if tc.rollback {
					return errors.New("business change failed")
				}
				return nil
			})
			if tc.rollback != (err != nil) {
				t.Fatalf("transaction error = %v", err)
			}
			store, _ := outbox.NewStore(db)
			rows, err := store.List(ctx, outbox.StatePending, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != tc.want {
				t.Fatalf("got %d rows, want %d", len(rows), tc.want)
			}
			for i, r := range rows {
				want, _ := evs[i].MarshalJSON()
				if string(r.Payload) != string(want) || r.EventID != evs[i].ID || r.PartitionKey != "k" {
					t.Errorf("row %d = %+v, want payload %s", i, r, want)
				}
			}
		})
	}
}

func TestWriteRejectsInvalidEventAndWritesNothing(t *testing.T) {
	eachDialect(t, testWriteRejectsInvalidEvent)
}

func testWriteRejectsInvalidEvent(t *testing.T, db *gorm.DB) {
	ctx := context.Background()
	good := newEvent(t, 1)
	bad := newEvent(t, 2)
	bad.Type = "Not A Type"
	bad.Data = json.RawMessage(`{"broken":`)
	err := db.Transaction(func(tx *gorm.DB) error { return outbox.Write(ctx, tx, good, bad) })
	if !errors.Is(err, event.ErrInvalid) {
		t.Fatalf("err = %v, want event.ErrInvalid", err)
	}
	for _, field := range []string{"event 1", bad.ID, "event type:", "event data:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %q", err, field)
		}
	}
	store, _ := outbox.NewStore(db)
	st, err := store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 {
		t.Fatalf("pending = %d after a rejected write", st.Pending)
	}
}

func writeN(t *testing.T, db *gorm.DB, n int) []event.Event {
	t.Helper()
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = newEvent(t, i)
	}
	if err := outbox.Write(context.Background(), db, evs...); err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestLeaseExpiryHandsRowsToAnotherRelay(t *testing.T) {
	eachDialect(t, testLeaseExpiry)
}

func testLeaseExpiry(t *testing.T, db *gorm.DB) {
	ctx := context.Background()
	clk := &clock{now: time.Now().Add(time.Minute)} // ahead of the wall clock Write stamps rows with
	store, err := outbox.NewStore(db, outbox.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, db, 5)

	a, err := store.Claim(ctx, "relay-a", 10, time.Minute)
	if err != nil || len(a) != 5 {
		t.Fatalf("A claimed %d rows, err %v; want 5", len(a), err)
	}
	if b, _ := store.Claim(ctx, "relay-b", 10, time.Minute); len(b) != 0 {
		t.Fatalf("B claimed %d leased rows", len(b))
	}
	st, _ := store.Stats(ctx)
	if st.Pending != 5 || st.InFlight != 5 {
		t.Fatalf("stats = %+v, want 5 pending, 5 in flight", st)
	}

	clk.Add(time.Minute + time.Millisecond)
	b, err := store.Claim(ctx, "relay-b", 10, time.Minute)
	if err != nil || len(b) != 5 {
		t.Fatalf("B claimed %d rows after expiry, err %v; want 5", len(b), err)
	}
	for i := range b {
		if b[i].Seq != a[i].Seq || b[i].Attempts != 2 {
			t.Fatalf("B row %d = seq %d attempts %d; want seq %d attempts 2", i, b[i].Seq, b[i].Attempts, a[i].Seq)
		}
	}

	// A wakes up and tries to record: fenced off, B's lease stands.
	lost, err := store.Complete(ctx, "relay-a", outcomes(a, nil))
	if err != nil || lost != 5 {
		t.Fatalf("A complete: lost %d, err %v; want 5 lost", lost, err)
	}
	lost, err = store.Complete(ctx, "relay-b", outcomes(b, nil))
	if err != nil || lost != 0 {
		t.Fatalf("B complete: lost %d, err %v", lost, err)
	}
	if st, _ := store.Stats(ctx); st.Pending != 0 {
		t.Fatalf("pending = %d after delivery", st.Pending)
	}
}

func outcomes(rows []outbox.Row, err error) []outbox.Outcome {
	out := make([]outbox.Outcome, len(rows))
	for i, r := range rows {
		out[i] = outbox.Outcome{Seq: r.Seq, Err: err}
	}
	return out
}

func TestCompleteRecordsRetryDeadAndDelivered(t *testing.T) {
	ctx := context.Background()
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep_delivered=%v", keep), func(t *testing.T) {
			eachDialect(t, func(t *testing.T, db *gorm.DB) {
				clk := &clock{now: time.Now().Add(time.Minute)} // ahead of the wall clock Write stamps rows with
				store, _ := outbox.NewStore(db, outbox.WithClock(clk.Now), outbox.WithKeepDelivered(keep))
				evs := writeN(t, db, 3)
				rows, err := store.Claim(ctx, "r", 10, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				retryAt := clk.Now().Add(10 * time.Second)
				_, err = store.Complete(ctx, "r", []outbox.Outcome{
					{Seq: rows[0].Seq},
					{Seq: rows[1].Seq, Err: errors.New("broker down"), RetryAt: retryAt},
					{Seq: rows[2].Seq, Err: errors.New("too big"), Dead: true},
				})
				if err != nil {
					t.Fatal(err)
				}

				if r, err := store.Get(ctx, evs[0].ID); keep {
					if err != nil || r.State != outbox.StateDelivered || r.DeliveredAt.IsZero() {
						t.Errorf("delivered row = %+v, %v", r, err)
					}
				} else if !errors.Is(err, outbox.ErrNotFound) {
					t.Errorf("delivered row still there: %+v, %v", r, err)
				}
				retry, _ := store.Get(ctx, evs[1].ID)
				if retry.State != outbox.StatePending || retry.LastError != "broker down" || retry.LeaseOwner != "" ||
					retry.AvailableAt.Sub(retryAt).Abs() >= time.Millisecond {
					t.Errorf("retry row = %+v", retry)
				}
				dead, _ := store.Get(ctx, evs[2].ID)
				if dead.State != outbox.StateDead || dead.LastError != "too big" {
					t.Errorf("dead row = %+v", dead)
				}

				if got, _ := store.Claim(ctx, "r", 10, time.Minute); len(got) != 0 {
					t.Fatalf("claimed %d rows during backoff", len(got))
				}
				clk.Add(10 * time.Second)
				got, _ := store.Claim(ctx, "r", 10, time.Minute)
				if len(got) != 1 || got[0].EventID != evs[1].ID || got[0].Attempts != 2 {
					t.Fatalf("after backoff claimed %+v; want only the retried row at attempt 2", got)
				}
			})
		})
	}
}

func TestReleaseReturnsRowsAndTheirAttempt(t *testing.T) {
	eachDialect(t, testRelease)
}

func testRelease(t *testing.T, db *gorm.DB) {
	ctx := context.Background()
	store, _ := outbox.NewStore(db)
	writeN(t, db, 2)
	rows, _ := store.Claim(ctx, "r", 10, time.Hour)
	if err := store.Release(ctx, "r", []int64{rows[0].Seq, rows[1].Seq}); err != nil {
		t.Fatal(err)
	}
	again, err := store.Claim(ctx, "other", 10, time.Hour)
	if err != nil || len(again) != 2 || again[0].Attempts != 1 {
		t.Fatalf("after release claimed %+v, %v; want 2 rows at attempt 1", again, err)
	}
}

func TestMigrateIsIdempotentAndScriptMatches(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(d, func(t *testing.T) { testMigrateAndScript(t, d) })
	}
}

func testMigrateAndScript(t *testing.T, dialect string) {
	ctx := context.Background()
	db := testdb.Migrated(t, dialect).Gorm
	applied, err := outbox.Migrate(ctx, db)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second migrate applied %v, err %v", applied, err)
	}
	cur, latest, err := outbox.SchemaVersion(ctx, db)
	if err != nil || cur != latest || latest < 1 {
		t.Fatalf("schema version %d/%d, err %v", cur, latest, err)
	}

	// A DBA applies the printed script with their own tool, in one go; the
	// result must be the database Migrate makes.
	script, err := outbox.MigrationScript(dialect)
	if err != nil {
		t.Fatal(err)
	}
	manual := testdb.New(t, dialect)
	dsn := manual.DSN
	if dialect == "mysql" {
		dsn += "&multiStatements=true"
		if !strings.Contains(manual.DSN, "?") {
			dsn = manual.DSN + "?multiStatements=true"
		}
	}
	scriptDB, err := outbox.Open(dialect, dsn)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := scriptDB.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	if _, err := sqlDB.ExecContext(ctx, script); err != nil {
		t.Fatalf("apply printed script: %v\n%s", err, script)
	}
	if cur, latest, _ := outbox.SchemaVersion(ctx, manual.Gorm); cur != latest {
		t.Fatalf("printed script left schema at %d, want %d", cur, latest)
	}
	if applied, err := outbox.Migrate(ctx, manual.Gorm); err != nil || len(applied) != 0 {
		t.Fatalf("migrate after script applied %v, err %v", applied, err)
	}
	if err := outbox.Write(ctx, manual.Gorm, newEvent(t, 1)); err != nil {
		t.Fatalf("write after script: %v", err)
	}
}

func TestUnsupportedDialect(t *testing.T) {
	if _, err := outbox.MigrationScript("oracle"); !errors.Is(err, outbox.ErrUnsupportedDialect) {
		t.Fatalf("err = %v", err)
	}
}
