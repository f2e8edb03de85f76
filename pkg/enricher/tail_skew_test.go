package enricher_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/enricher"
)

// skewedRow is one audit row of the skew test: how it is written, and
// whether the tail must quarantine it rather than enrich it.
type skewedRow struct {
	name       string
	zone       string        // the writing session's time zone; "" keeps UTC
	offset     time.Duration // an explicit created_on, this far from now; with null unused
	explicit   bool
	null       bool
	quarantine bool
}

// The portal's created_on says nothing reliable about order: a session in
// another time zone writes it hours ahead or behind, replicas' clocks are
// skewed, and a row may have none. Interleaved with ordinary rows, every
// such row is enriched or quarantined, none is skipped, none is doubled.
func TestTailSkewedCreatedOn(t *testing.T) {
	rows := []skewedRow{
		{name: "ordinary"},
		{name: "session five hours west of UTC", zone: "-05:00"},
		{name: "ordinary after it"},
		{name: "ordinary after it, 2"},
		{name: "session one hour east of UTC", zone: "+01:00"},
		{name: "ordinary after the east session"},
		{name: "clock three hours behind", explicit: true, offset: -3 * time.Hour},
		{name: "clock two hours ahead", explicit: true, offset: 2 * time.Hour},
		{name: "no created_on", null: true, quarantine: true},
		{name: "ordinary at the end"},
	}
	for _, dialect := range []string{"postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := portalOutbox(t, dialect)
			allowNullCreatedOn(t, db.Gorm)
			e := enricher.New()
			tail, err := enricher.NewTail(db.Gorm, e, enricher.WithSweepEvery(0))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tail.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			tmpl := template(t, e, db.Gorm)
			ids := map[string]skewedRow{}
			for _, r := range rows {
				ids[insertSkewed(t, db.Gorm, tmpl, r)] = r
				if _, err := tail.Poll(ctx); err != nil {
					t.Fatalf("poll after %q: %v", r.name, err)
				}
			}
			if _, err := tail.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			events, quarantined := eventsByAudit(t, db.Gorm), quarantinedIDs(t, db.Gorm)
			for id, r := range ids {
				q, isQuarantined := quarantined[id]
				switch {
				case r.quarantine && (!isQuarantined || q.Kind != enricher.KindInvalid):
					t.Errorf("%s: quarantined %v (%+v), want quarantined as invalid", r.name, isQuarantined, q)
				case r.quarantine && len(events[id]) != 0:
					t.Errorf("%s: %d events, want none", r.name, len(events[id]))
				case !r.quarantine && len(events[id]) != 1:
					t.Errorf("%s: %d events, want 1 (quarantined: %v %s)", r.name, len(events[id]), isQuarantined, q.Reason)
				}
			}
		})
	}
}

// A sweep finds what the window cannot, also across a restart: a row dated
// two days before the rows the tail has processed, written after it caught
// up, is enriched by a new tail's first poll on PostgreSQL, where the sweep
// follows transaction ids.
func TestTailSweepFindsOldDatedRowAfterRestart(t *testing.T) {
	ctx := context.Background()
	db := portalOutbox(t, "postgres")
	e := enricher.New()
	first, err := enricher.NewTail(db.Gorm, e)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := first.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	tmpl := template(t, e, db.Gorm)
	tmpl.CreatedOn = tmpl.CreatedOn.Add(-48 * time.Hour)
	old := insertAudit(t, db.Gorm, tmpl)

	second, err := enricher.NewTail(db.Gorm, e)
	if err != nil {
		t.Fatal(err)
	}
	st, err := second.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Swept != 1 || len(eventsByAudit(t, db.Gorm)[old]) != 1 {
		t.Fatalf("poll %+v, events %v; want the row found by the sweep and enriched once", st, eventsByAudit(t, db.Gorm)[old])
	}
	checkExactlyOnce(t, e, db.Gorm)
}

// allowNullCreatedOn makes the audit table as loose as the portal's own
// migrations may leave it, with the portal's column default.
func allowNullCreatedOn(t *testing.T, db *gorm.DB) {
	t.Helper()
	var stmts []string
	switch db.Name() {
	case "postgres":
		stmts = []string{
			"ALTER TABLE events ALTER COLUMN created_on DROP NOT NULL",
			"ALTER TABLE events ALTER COLUMN created_on SET DEFAULT (now() AT TIME ZONE 'utc')",
		}
	case "mysql":
		stmts = []string{"ALTER TABLE events MODIFY created_on DATETIME(6) NULL DEFAULT CURRENT_TIMESTAMP(6)"}
	}
	for _, s := range stmts {
		if err := db.Exec(s).Error; err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// insertSkewed writes one audit row as r says, in its own transaction.
func insertSkewed(t *testing.T, db *gorm.DB, tmpl enricher.AuditRecord, r skewedRow) string {
	t.Helper()
	id := uuid.NewString()
	err := db.Transaction(func(tx *gorm.DB) error {
		if r.zone != "" {
			set := "SET LOCAL TIME ZONE '" + r.zone + "'"
			if db.Name() == "mysql" {
				set = "SET time_zone = '" + r.zone + "'"
			}
			if err := tx.Exec(set).Error; err != nil {
				return err
			}
		}
		cols := "id, name, subject_id, subject_type, target_id, target_type, actor_id"
		vals := "?, ?, ?, ?, ?, ?, ?"
		args := []any{id, tmpl.Name, null(tmpl.SubjectID), null(tmpl.SubjectType), null(tmpl.TargetID), null(tmpl.TargetType), tmpl.ActorID}
		switch {
		case r.null:
			cols, vals = cols+", created_on", vals+", NULL"
		case r.explicit:
			cols, vals = cols+", created_on", vals+", ?"
			args = append(args, time.Now().UTC().Add(r.offset))
		}
		if err := tx.Exec("INSERT INTO events ("+cols+") VALUES ("+vals+")", args...).Error; err != nil {
			return err
		}
		if r.zone != "" && db.Name() == "mysql" {
			// The session outlives the transaction on MySQL.
			return tx.Exec("SET time_zone = '+00:00'").Error
		}
		return nil
	})
	if err != nil {
		t.Fatalf("insert %q: %v", r.name, err)
	}
	return id
}
