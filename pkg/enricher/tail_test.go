package enricher_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// tailDialects are the portal databases the tail runs on in tests.
func tailDialects() []string { return []string{"sqlite", "postgres", "mysql"} }

// portalOutbox is a fresh database of the dialect holding the portal sample
// and the migrated outbox, as the fixture deploys them.
func portalOutbox(t testing.TB, dialect string) testdb.DB {
	t.Helper()
	db := testdb.New(t, dialect)
	ctx := context.Background()
	if err := portalsample.Load(ctx, db.Gorm); err != nil {
		t.Fatalf("load portal sample: %v", err)
	}
	if _, err := outbox.Migrate(ctx, db.Gorm); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}

// eventsByAudit reads the outbox and groups the event types by the audit
// record each event came from.
func eventsByAudit(t *testing.T, db *gorm.DB) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, r := range outboxRows(t, db) {
		ev, err := event.Parse(r.Payload)
		if err != nil {
			t.Fatalf("parse outbox payload: %v", err)
		}
		var d struct {
			AuditRecordID string `json:"audit_record_id"`
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil || d.AuditRecordID == "" {
			t.Fatalf("event %s has no audit_record_id: %v", ev.ID, err)
		}
		out[d.AuditRecordID] = append(out[d.AuditRecordID], ev.Type)
	}
	return out
}

// expected runs Enricher.Events over every audit row (writing nothing) and
// returns the event types per audit id and the ids that fail.
func expected(t *testing.T, e *enricher.Enricher, db *gorm.DB) (map[string][]string, map[string]error) {
	t.Helper()
	ctx := context.Background()
	recs, err := portalsample.AuditRecords(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	types, failed := map[string][]string{}, map[string]error{}
	for _, rec := range recs {
		evs, err := e.Events(ctx, db, rec)
		if err != nil {
			failed[rec.ID] = err
			continue
		}
		for _, ev := range evs {
			types[rec.ID] = append(types[rec.ID], ev.Type)
		}
	}
	return types, failed
}

func quarantinedIDs(t *testing.T, db *gorm.DB) map[string]enricher.Quarantined {
	t.Helper()
	q, err := enricher.NewQuarantine(db, enricher.New())
	if err != nil {
		t.Fatal(err)
	}
	rows, err := q.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]enricher.Quarantined{}
	for _, r := range rows {
		if _, dup := out[r.AuditID]; dup {
			t.Errorf("audit record %s quarantined twice", r.AuditID)
		}
		out[r.AuditID] = r
	}
	return out
}

// checkExactlyOnce asserts the outbox holds exactly the expected event set
// per audit row and the quarantine exactly the failing rows.
func checkExactlyOnce(t *testing.T, e *enricher.Enricher, db *gorm.DB) {
	t.Helper()
	want, failed := expected(t, e, db)
	got := eventsByAudit(t, db)
	for id, types := range want {
		if !slices.Equal(got[id], types) {
			t.Errorf("audit record %s: outbox has %v, want %v", id, got[id], types)
		}
	}
	for id, types := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("audit record %s: outbox has unexpected events %v", id, types)
		}
	}
	q := quarantinedIDs(t, db)
	for id, err := range failed {
		if _, ok := q[id]; !ok {
			t.Errorf("audit record %s failed (%v) but is not quarantined", id, err)
		}
	}
	if len(q) != len(failed) {
		t.Errorf("%d quarantined, want %d", len(q), len(failed))
	}
}

func TestTailFixture(t *testing.T) {
	for _, dialect := range tailDialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := portalOutbox(t, dialect)
			e := enricher.New()
			tail, err := enricher.NewTail(db.Gorm, e, enricher.WithBatchSize(7))
			if err != nil {
				t.Fatal(err)
			}
			st, err := tail.Poll(ctx)
			if err != nil {
				t.Fatalf("poll: %v", err)
			}
			recs, _ := portalsample.AuditRecords(ctx, db.Gorm)
			if st.Enriched+st.Quarantined != len(recs) {
				t.Errorf("first poll handled %d+%d records, want %d", st.Enriched, st.Quarantined, len(recs))
			}
			for range 3 {
				st, err := tail.Poll(ctx)
				if err != nil {
					t.Fatalf("poll: %v", err)
				}
				if st.Enriched+st.Quarantined != 0 {
					t.Errorf("repeated poll handled records again: %+v", st)
				}
			}
			checkExactlyOnce(t, e, db.Gorm)
		})
	}
}

// template returns a fixture record that enriches to one event, to clone
// as new audit rows.
func template(t *testing.T, e *enricher.Enricher, db *gorm.DB) enricher.AuditRecord {
	t.Helper()
	recs, err := portalsample.AuditRecords(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Name != "data_product_created" {
			continue
		}
		if evs, err := e.Events(context.Background(), db, r); err == nil && len(evs) == 1 {
			return r
		}
	}
	t.Fatal("no data_product_created record enriches in the fixture")
	return enricher.AuditRecord{}
}

func null(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// insertAudit inserts rec as a new audit row with a fresh id through db
// (a transaction or not). A zero CreatedOn uses the database's now(), the
// start of the transaction, as the portal does.
func insertAudit(t *testing.T, db *gorm.DB, rec enricher.AuditRecord) string {
	t.Helper()
	rec.ID = uuid.NewString()
	created := "now()"
	args := []any{rec.ID, rec.Name, null(rec.SubjectID), null(rec.SubjectType), null(rec.TargetID), null(rec.TargetType), rec.ActorID}
	if !rec.CreatedOn.IsZero() {
		created = "?"
		if db.Name() == "sqlite" {
			args = append(args, rec.CreatedOn.UTC().Format(time.RFC3339Nano))
		} else {
			args = append(args, rec.CreatedOn.UTC())
		}
	}
	err := db.Exec(`INSERT INTO events (id, name, subject_id, subject_type, target_id, target_type, actor_id, created_on)
VALUES (?, ?, ?, ?, ?, ?, ?, `+created+`)`, args...).Error
	if err != nil {
		t.Fatalf("insert audit row: %v", err)
	}
	return rec.ID
}

// A row of a transaction that stays open while later rows commit becomes
// visible after the tail has moved past its created_on: it is enriched once.
// The overlap is zero, so only the open-transaction horizon catches it.
func TestTailLateCommitPostgres(t *testing.T) {
	ctx := context.Background()
	db := portalOutbox(t, "postgres")
	e := enricher.New()
	tail, err := enricher.NewTail(db.Gorm, e, enricher.WithOverlap(0), enricher.WithSweepEvery(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tail.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	tmpl := template(t, e, db.Gorm)
	tmpl.CreatedOn = time.Time{}

	late := db.Gorm.Begin()
	if late.Error != nil {
		t.Fatal(late.Error)
	}
	defer late.Rollback()
	lateID := insertAudit(t, late, tmpl)
	time.Sleep(20 * time.Millisecond)
	var later []string
	for range 3 {
		later = append(later, insertAudit(t, db.Gorm, tmpl))
	}
	st, err := tail.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Enriched != 3 {
		t.Fatalf("poll with the late transaction open enriched %d, want the 3 committed rows", st.Enriched)
	}
	if err := late.Commit().Error; err != nil {
		t.Fatal(err)
	}
	st, err = tail.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Enriched != 1 {
		t.Fatalf("poll after the late commit enriched %d, want 1", st.Enriched)
	}
	if st, _ := tail.Poll(ctx); st.Enriched != 0 {
		t.Fatalf("a further poll enriched %d, want 0", st.Enriched)
	}
	got := eventsByAudit(t, db.Gorm)
	for _, id := range append(later, lateID) {
		if len(got[id]) != 1 {
			t.Errorf("audit record %s: %d events, want 1", id, len(got[id]))
		}
	}
	checkExactlyOnce(t, e, db.Gorm)
}

// Without a horizon (SQLite), the overlap catches a row committed late
// whose created_on is before the latest one processed.
func TestTailLateRowWithinOverlap(t *testing.T) {
	for _, dialect := range tailDialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := portalOutbox(t, dialect)
			e := enricher.New()
			tail, err := enricher.NewTail(db.Gorm, e, enricher.WithOverlap(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			tmpl := template(t, e, db.Gorm)
			base := time.Now().UTC().Truncate(time.Millisecond)
			tmpl.CreatedOn = base
			first := insertAudit(t, db.Gorm, tmpl)
			if _, err := tail.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			tmpl.CreatedOn = base.Add(-10 * time.Minute)
			late := insertAudit(t, db.Gorm, tmpl)
			for range 2 {
				if _, err := tail.Poll(ctx); err != nil {
					t.Fatal(err)
				}
			}
			got := eventsByAudit(t, db.Gorm)
			if len(got[first]) != 1 || len(got[late]) != 1 {
				t.Fatalf("events: first %v, late %v; want one each", got[first], got[late])
			}
			checkExactlyOnce(t, e, db.Gorm)
		})
	}
}

// Cancelling the tail inside a record's transaction (a crash mid-batch) and
// starting a new one loses and doubles nothing.
func TestTailCancelMidBatch(t *testing.T) {
	for _, dialect := range tailDialects() {
		t.Run(dialect, func(t *testing.T) {
			db := portalOutbox(t, dialect)
			base := enricher.New()
			for _, stopAt := range []int{3, 11} {
				ctx, cancel := context.WithCancel(context.Background())
				calls := 0
				// Counts data product records and cancels while the
				// stopAt-th is inside its transaction.
				crash := func(ctx context.Context, tx *gorm.DB, rec enricher.AuditRecord) ([]event.Event, error) {
					calls++
					if calls == stopAt {
						cancel()
						return nil, ctx.Err()
					}
					return base.Events(ctx, tx, rec)
				}
				opts := []enricher.Option{}
				for _, r := range base.Rules().List() {
					if r.Ignore == "" {
						opts = append(opts, enricher.WithCustom(r.Action, crash))
					}
				}
				tail, err := enricher.NewTail(db.Gorm, enricher.New(opts...), enricher.WithBatchSize(4))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tail.Poll(ctx); !errors.Is(err, context.Canceled) {
					t.Fatalf("poll: %v, want context.Canceled", err)
				}
				cancel()
			}
			tail, err := enricher.NewTail(db.Gorm, base)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tail.Poll(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkExactlyOnce(t, base, db.Gorm)
		})
	}
}

// TestTailSubprocess is the process the SIGKILL test kills: a tail that
// reports each committed record on stdout and is slow enough to be killed
// mid-batch.
func TestTailSubprocess(t *testing.T) {
	dsn := os.Getenv("HERALD_TEST_TAIL_DSN")
	if dsn == "" {
		t.Skip("run by TestTailSIGKILL")
	}
	db, err := outbox.Open(os.Getenv("HERALD_TEST_TAIL_DIALECT"), dsn)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := enricher.NewTail(db, enricher.New(), enricher.WithBatchSize(5),
		enricher.WithObserver(func(r enricher.Result) {
			fmt.Printf("handled %s\n", r.AuditID)
			time.Sleep(30 * time.Millisecond)
		}))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tail.Poll(context.Background())
	time.Sleep(time.Minute) // killed long before
}

func TestTailSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	for _, dialect := range tailDialects() {
		t.Run(dialect, func(t *testing.T) {
			db := portalOutbox(t, dialect)
			cmd := exec.Command(os.Args[0], "-test.run=^TestTailSubprocess$", "-test.v")
			cmd.Env = append(os.Environ(), "HERALD_TEST_TAIL_DSN="+db.DSN, "HERALD_TEST_TAIL_DIALECT="+dialect)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			handled := 0
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "handled ") {
					if handled++; handled == 7 {
						break
					}
				}
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait() // killed: the error is expected
			if handled != 7 {
				t.Fatalf("subprocess handled %d records before exiting, want to kill it at 7", handled)
			}
			if n := len(eventsByAudit(t, db.Gorm)); n < 5 {
				t.Fatalf("only %d audit records in the outbox after the kill", n)
			}
			tail, err := enricher.NewTail(db.Gorm, enricher.New())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tail.Poll(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkExactlyOnce(t, enricher.New(), db.Gorm)
		})
	}
}

func TestTailRunStopsWithContext(t *testing.T) {
	db := portalOutbox(t, "sqlite")
	ctx, cancel := context.WithCancel(context.Background())
	tail, err := enricher.NewTail(db.Gorm, enricher.New(), enricher.WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tail.Run(ctx) }()
	deadline := time.After(10 * time.Second)
	for len(eventsByAudit(t, db.Gorm)) == 0 {
		select {
		case <-deadline:
			t.Fatal("tail wrote nothing")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	tail2, _ := enricher.NewTail(db.Gorm, enricher.New())
	if _, err := tail2.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, enricher.New(), db.Gorm)
}
