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
