package enricher_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/enricher"
)

func missingIDs(rep enricher.VerifyReport) []string {
	var ids []string
	for _, m := range rep.Missing {
		ids = append(ids, m.ID)
	}
	return ids
}

// After enrichment every audit record is accounted for, enriched, ignored
// or quarantined; one whose processed id is lost is found, with its action
// and time.
func TestVerify(t *testing.T) {
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := portalOutbox(t, dialect)
			e := enricher.New()
			// A record that can only be quarantined.
			unknown := template(t, e, db.Gorm)
			unknown.Name = "data_product_frobnicated"
			unknownID := insertRecord(t, db.Gorm, unknown)
			tail, err := enricher.NewTail(db.Gorm, e)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tail.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			recs, err := portalsample.AuditRecords(ctx, db.Gorm)
			if err != nil {
				t.Fatal(err)
			}

			rep, err := enricher.Verify(ctx, db.Gorm, nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Checked != len(recs) || len(rep.Missing) != 0 {
				t.Fatalf("after enrichment: %d checked, missing %v; want %d checked, none missing", rep.Checked, missingIDs(rep), len(recs))
			}

			// The quarantine accounts for a record on its own.
			if err := db.Gorm.Exec("DELETE FROM "+enricher.ProcessedTable+" WHERE audit_id = ?", unknownID).Error; err != nil {
				t.Fatal(err)
			}
			// A processed id lost, say, to a restore of the outbox from
			// before the record was handled.
			lost := recs[len(recs)/2]
			if err := db.Gorm.Exec("DELETE FROM "+enricher.ProcessedTable+" WHERE audit_id = ?", lost.ID).Error; err != nil {
				t.Fatal(err)
			}
			rep, err = enricher.Verify(ctx, db.Gorm, nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Missing) != 1 {
				t.Fatalf("missing %v, want only %s", missingIDs(rep), lost.ID)
			}
			if m := rep.Missing[0]; m.ID != lost.ID || m.Name != lost.Name || !m.CreatedOn.Equal(lost.CreatedOn) {
				t.Errorf("missing %+v, want %s %s %s", m, lost.ID, lost.Name, lost.CreatedOn)
			}

			// --since: the records before it are not checked. (SQLite
			// compares times to the millisecond, and keeps a record of
			// the same millisecond in.)
			rep, err = enricher.Verify(ctx, db.Gorm, nil, lost.CreatedOn.Add(time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Missing) != 0 || rep.Checked >= len(recs) {
				t.Errorf("since after the lost record: %d checked, missing %v; want fewer than %d, none missing",
					rep.Checked, missingIDs(rep), len(recs))
			}
			rep, err = enricher.Verify(ctx, db.Gorm, nil, lost.CreatedOn)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(missingIDs(rep), []string{lost.ID}) {
				t.Errorf("since the lost record's own time: missing %v, want %s", missingIDs(rep), lost.ID)
			}
		})
	}
}

// A row without a readable created_on is checked whatever --since says: it
// cannot be placed before it.
func TestVerifyChecksRowsWithoutATime(t *testing.T) {
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := portalOutbox(t, dialect)
			// The sample's created_on is NOT NULL; other portals' may not be.
			// On SQLite, text that is no time stands for it.
			created := "NULL"
			switch dialect {
			case "postgres":
				mustExec(t, db.Gorm, `ALTER TABLE events ALTER COLUMN created_on DROP NOT NULL`)
			case "mysql":
				mustExec(t, db.Gorm, `ALTER TABLE events MODIFY created_on DATETIME(6) NULL`)
			default:
				created = "'yesterday'"
			}
			id := uuid.NewString()
			mustExec(t, db.Gorm, `INSERT INTO events (id, name, subject_id, subject_type, actor_id, created_on)
VALUES (?, 'data_product_created', '10000000-0000-4000-8000-000000000001', 'data_product', '00000000-0000-4000-8000-000000000001', `+created+`)`, id)
			rep, err := enricher.Verify(ctx, db.Gorm, nil, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Checked != 1 || !slices.Equal(missingIDs(rep), []string{id}) || !rep.Missing[0].CreatedOn.IsZero() {
				t.Fatalf("checked %d, missing %+v; want only the row without a time, with none", rep.Checked, rep.Missing)
			}
		})
	}
}

// The audit table is read in pages from a portal of its own: a missing
// record at either side of a page boundary, and the very last, are found.
func TestVerifyAcrossPagesWithASeparatePortal(t *testing.T) {
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			portal := testdb.New(t, dialect)
			if err := portalsample.Load(ctx, portal.Gorm); err != nil {
				t.Fatal(err)
			}
			out := testdb.Migrated(t, dialect)
			mustExec(t, portal.Gorm, `DELETE FROM events`)
			const n = 1201
			ids := make([]string, n)
			for i := range ids {
				ids[i] = uuid.NewString()
			}
			created := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
			insertRows(t, portal.Gorm, ids, func(id string) []any {
				return []any{id, "data_product_created", "00000000-0000-4000-8000-000000000001", timeArg(portal.Gorm, created)}
			}, `INSERT INTO events (id, name, actor_id, created_on) VALUES `, "(?, ?, ?, ?)")
			slices.Sort(ids) // the order Verify pages in, for UUIDs on every dialect
			lost := []string{ids[499], ids[500], ids[n-1]}
			var handled []string
			for _, id := range ids {
				if !slices.Contains(lost, id) {
					handled = append(handled, id)
				}
			}
			insertRows(t, out.Gorm, handled, func(id string) []any {
				return []any{id, "tail:events", timeArg(out.Gorm, created), "enriched", timeArg(out.Gorm, created)}
			}, "INSERT INTO "+enricher.ProcessedTable+" (audit_id, source, created_on, outcome, processed_at) VALUES ", "(?, ?, ?, ?, ?)")

			rep, err := enricher.Verify(ctx, out.Gorm, portal.Gorm, created.Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Checked != n || !slices.Equal(missingIDs(rep), lost) {
				t.Fatalf("checked %d, missing %v; want %d and %v", rep.Checked, missingIDs(rep), n, lost)
			}
		})
	}
}

func mustExec(t *testing.T, db *gorm.DB, q string, args ...any) {
	t.Helper()
	if err := db.Exec(q, args...).Error; err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// timeArg is a time as the dialect's tables take it.
func timeArg(db *gorm.DB, at time.Time) any {
	if db.Name() == "sqlite" {
		return at.UTC().Format("2006-01-02T15:04:05.000000Z")
	}
	return at.UTC()
}

// insertRows inserts one row per id, a few hundred per statement.
func insertRows(t *testing.T, db *gorm.DB, ids []string, row func(string) []any, insert, placeholders string) {
	t.Helper()
	for chunk := range slices.Chunk(ids, 200) {
		var args []any
		values := make([]string, len(chunk))
		for i, id := range chunk {
			values[i] = placeholders
			args = append(args, row(id)...)
		}
		mustExec(t, db, insert+strings.Join(values, ", "), args...)
	}
}
