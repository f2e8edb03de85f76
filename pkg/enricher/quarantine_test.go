package enricher_test

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/enricher"
)

// An unknown action and a malformed row are quarantined with their reason,
// later rows still flow, and after a mapping fix retry enriches the unknown
// action and clears it.
func TestQuarantineAndRetry(t *testing.T) {
	for _, dialect := range tailDialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := portalOutbox(t, dialect)
			e := enricher.New()
			tail, err := enricher.NewTail(db.Gorm, e)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tail.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			base := len(quarantinedIDs(t, db.Gorm))

			tmpl := template(t, e, db.Gorm)
			now := time.Now().UTC().Truncate(time.Millisecond)
			unknown := tmpl
			unknown.Name, unknown.CreatedOn = "data_product_frobnicated", now
			unknownID := insertAudit(t, db.Gorm, unknown)
			bad := tmpl
			bad.SubjectType, bad.CreatedOn = "user", now.Add(time.Millisecond)
			badID := insertAudit(t, db.Gorm, bad)
			good := tmpl
			good.CreatedOn = now.Add(2 * time.Millisecond)
			goodID := insertAudit(t, db.Gorm, good)

			st, err := tail.Poll(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Quarantined != 2 || st.Enriched != 1 {
				t.Fatalf("poll: %+v, want 2 quarantined and 1 enriched", st)
			}
			if got := eventsByAudit(t, db.Gorm)[goodID]; len(got) != 1 {
				t.Fatalf("the row after the bad ones has events %v, want one", got)
			}
			q := quarantinedIDs(t, db.Gorm)
			if len(q) != base+2 {
				t.Fatalf("%d quarantined, want %d", len(q), base+2)
			}
			if r := q[unknownID]; r.Kind != enricher.KindUnmapped || !strings.Contains(r.Reason, "data_product_frobnicated") ||
				r.Action != "data_product_frobnicated" || !strings.Contains(string(r.Record), unknownID) {
				t.Errorf("unknown action quarantined as %+v", r)
			}
			if r := q[badID]; r.Kind != enricher.KindInvalid || !strings.Contains(r.Reason, "subject_type") {
				t.Errorf("malformed record quarantined as %+v", r)
			}

			// Still failing: the reason is kept up to date.
			quar, err := enricher.NewQuarantine(db.Gorm, e)
			if err != nil {
				t.Fatal(err)
			}
			res, err := quar.Retry(ctx, unknownID)
			if err != nil || res.Status != enricher.StatusQuarantined {
				t.Fatalf("retry without a rule: %+v, %v", res, err)
			}
			if r := quarantinedIDs(t, db.Gorm)[unknownID]; r.Attempts != 2 {
				t.Errorf("attempts after a failed retry: %d, want 2", r.Attempts)
			}

			// The mapping fix.
			rules, err := enricher.ParseRules(strings.NewReader("rules:\n  - action: data_product_frobnicated\n    event: data_product.updated\n"))
			if err != nil {
				t.Fatal(err)
			}
			fixed, err := enricher.NewQuarantine(db.Gorm, enricher.New(enricher.WithRules(rules)))
			if err != nil {
				t.Fatal(err)
			}
			res, err = fixed.Retry(ctx, q[unknownID].ID)
			if err != nil || res.Status != enricher.StatusEnriched || len(res.EventIDs) != 1 {
				t.Fatalf("retry after the fix: %+v, %v", res, err)
			}
			if got := eventsByAudit(t, db.Gorm)[unknownID]; len(got) != 1 || got[0] != "io.herald.portal.data_product.updated" {
				t.Errorf("events of the retried record: %v", got)
			}
			left := quarantinedIDs(t, db.Gorm)
			if _, ok := left[unknownID]; ok || len(left) != base+1 {
				t.Errorf("after the retry %d quarantined (still the unknown one: %v), want %d", len(left), ok, base+1)
			}
			if _, err := fixed.Retry(ctx, unknownID); !errors.Is(err, enricher.ErrNotQuarantined) {
				t.Errorf("second retry: %v, want ErrNotQuarantined", err)
			}
			// Retrying all keeps the malformed one, and the tail never
			// enriches the retried record again.
			results, err := fixed.RetryAll(ctx)
			if err != nil || len(results) != base+1 {
				t.Fatalf("retry all: %d results, %v", len(results), err)
			}
			if st, err := tail.Poll(ctx); err != nil || st.Enriched+st.Quarantined != 0 {
				t.Fatalf("poll after retry: %+v, %v", st, err)
			}
			if got := eventsByAudit(t, db.Gorm)[unknownID]; len(got) != 1 {
				t.Errorf("retried record has %d events after another poll, want 1", len(got))
			}
		})
	}
}

// insertRecord inserts rec as a new audit row with a fresh id, deleted
// identifiers and created_on (now when zero) included.
func insertRecord(t *testing.T, db *gorm.DB, rec enricher.AuditRecord) string {
	t.Helper()
	rec.ID = uuid.NewString()
	if rec.CreatedOn.IsZero() {
		rec.CreatedOn = time.Now().UTC().Truncate(time.Millisecond)
	}
	var created any = rec.CreatedOn.UTC()
	if db.Name() == "sqlite" {
		created = rec.CreatedOn.UTC().Format(time.RFC3339Nano)
	}
	err := db.Exec(`INSERT INTO events (id, name, subject_id, subject_type, target_id, target_type, actor_id,
  deleted_subject_identifier, deleted_target_identifier, created_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		rec.ID, rec.Name, null(rec.SubjectID), null(rec.SubjectType), null(rec.TargetID), null(rec.TargetType), rec.ActorID,
		null(rec.DeletedSubjectIdentifier), null(rec.DeletedTargetIdentifier), created).Error
	if err != nil {
		t.Fatalf("insert audit row: %v", err)
	}
	return rec.ID
}

// quarantineRow reads one quarantined record's diagnosis, leaving its
// (large) raw record in the table.
func quarantineRow(t *testing.T, db *gorm.DB, auditID string) (kind, reason string, attempts int) {
	t.Helper()
	err := db.Raw("SELECT kind, reason, attempts FROM "+enricher.QuarantineTable+" WHERE audit_id = ?", auditID).
		Row().Scan(&kind, &reason, &attempts)
	if err != nil {
		t.Fatalf("quarantine row of %s: %v", auditID, err)
	}
	return kind, reason, attempts
}

func count(t *testing.T, db *gorm.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.Raw("SELECT COUNT(*) FROM " + table).Scan(&n).Error; err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// sizeInReason reads "is N bytes" and "at most M" out of a too_large reason.
var sizeInReason = regexp.MustCompile(`is (\d+) bytes, the main destination accepts at most (\d+)`)

// An event larger than the main destination takes never reaches the outbox,
// where the relay could only dead-letter it: its record is quarantined as
// too_large with the size and the limit. A retry reaches it, and once the
// destination takes it (a larger limit), enriches it.
func TestOversizeEventsAreQuarantined(t *testing.T) {
	const limit = 1 << 20
	for _, dialect := range tailDialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := portalOutbox(t, dialect)
			e := enricher.New()
			tail, err := enricher.NewTail(db.Gorm, e, enricher.WithMaxEventBytes(limit))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tail.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			base, events := count(t, db.Gorm, enricher.QuarantineTable), count(t, db.Gorm, "herald_outbox")
			actor := template(t, e, db.Gorm).ActorID

			// A technical asset whose portal row holds a 5 MB configuration.
			const asset = "30000000-0000-4000-8000-000000000001"
			huge := `{"blob":"` + strings.Repeat("x", 5<<20) + `"}`
			if err := db.Gorm.Exec(`UPDATE data_outputs SET configuration = ? WHERE id = ?`, huge, asset).Error; err != nil {
				t.Fatal(err)
			}
			updated := insertRecord(t, db.Gorm, enricher.AuditRecord{Name: "data_output_updated",
				SubjectID: asset, SubjectType: "data_output", ActorID: actor})
			// A data product deleted under a 6 MB name. MySQL's TEXT holds
			// 64 KB; a portal there would need a LONGTEXT for such a name.
			if dialect == "mysql" {
				if err := db.Gorm.Exec(`ALTER TABLE events MODIFY deleted_subject_identifier LONGTEXT`).Error; err != nil {
					t.Fatal(err)
				}
			}
			deleted := insertRecord(t, db.Gorm, enricher.AuditRecord{Name: "data_product_removed",
				SubjectID: uuid.NewString(), SubjectType: "data_product", ActorID: actor,
				DeletedSubjectIdentifier: strings.Repeat("n", 6<<20), CreatedOn: time.Now().UTC().Add(time.Millisecond)})

			st, err := tail.Poll(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Quarantined != 2 || st.Enriched != 0 {
				t.Fatalf("poll: %+v, want both records quarantined", st)
			}
			for id, least := range map[string]int{updated: 5 << 20, deleted: 6 << 20} {
				kind, reason, _ := quarantineRow(t, db.Gorm, id)
				m := sizeInReason.FindStringSubmatch(reason)
				if kind != enricher.KindTooLarge || m == nil {
					t.Fatalf("record %s quarantined as %q: %.200s, want too_large naming size and limit", id, kind, reason)
				}
				if size, _ := strconv.Atoi(m[1]); size < least || m[2] != strconv.Itoa(limit) {
					t.Errorf("record %s: reason says %s bytes, limit %s; want at least %d, limit %d", id, m[1], m[2], least, limit)
				}
			}
			if n := count(t, db.Gorm, "herald_outbox"); n != events {
				t.Fatalf("the outbox went from %d to %d rows: oversize events reached it", events, n)
			}

			// A retry reaches them and keeps the diagnosis while the limit stands.
			same, err := enricher.NewQuarantine(db.Gorm, e, enricher.WithMaxEventBytes(limit))
			if err != nil {
				t.Fatal(err)
			}
			res, err := same.Retry(ctx, deleted)
			if err != nil || res.Status != enricher.StatusQuarantined || res.Kind != enricher.KindTooLarge {
				t.Fatalf("retry under the same limit: %+v, %v", res, err)
			}
			if kind, _, attempts := quarantineRow(t, db.Gorm, deleted); attempts != 2 || kind != enricher.KindTooLarge {
				t.Errorf("after the retry: attempts %d, kind %q; want 2, too_large", attempts, kind)
			}
			// A destination that takes 16 MiB: both are enriched.
			larger, err := enricher.NewQuarantine(db.Gorm, e, enricher.WithMaxEventBytes(16<<20))
			if err != nil {
				t.Fatal(err)
			}
			var written []string
			for _, id := range []string{updated, deleted} {
				res, err := larger.Retry(ctx, id)
				if err != nil || res.Status != enricher.StatusEnriched || len(res.EventIDs) != 1 {
					t.Fatalf("retry of %s under a larger limit: %.300v, %v", id, res, err)
				}
				written = append(written, res.EventIDs...)
			}
			var stored int64
			if err := db.Gorm.Raw("SELECT COUNT(*) FROM herald_outbox WHERE event_id IN ?", written).Scan(&stored).Error; err != nil || stored != 2 {
				t.Errorf("after the retries the outbox holds %d of their events (%v), want both", stored, err)
			}
			if n := count(t, db.Gorm, enricher.QuarantineTable); n != base {
				t.Errorf("%d quarantined after the retries, want the %d from before", n, base)
			}
		})
	}
}

// A portal that cannot be read is not the record's fault: a retry without
// the portal's database, which looks the entities up in the outbox's
// database where the portal's tables do not exist, leaves the quarantine
// row and its not_found diagnosis as they were and says why.
func TestRetryWithoutThePortalKeepsTheDiagnosis(t *testing.T) {
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			portal := testdb.New(t, dialect)
			if err := portalsample.Load(ctx, portal.Gorm); err != nil {
				t.Fatal(err)
			}
			out := testdb.Migrated(t, dialect)
			e := enricher.New()
			tmpl := template(t, e, portal.Gorm)

			// A record naming a data product the portal does not have.
			missing := tmpl
			missing.SubjectID = uuid.NewString()
			id := insertRecord(t, portal.Gorm, missing)
			tail, err := enricher.NewTail(out.Gorm, e, enricher.WithPortal(portal.Gorm))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tail.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			before := quarantinedIDs(t, out.Gorm)[id]
			if before.Kind != enricher.KindNotFound {
				t.Fatalf("record naming a missing entity quarantined as %+v, want not_found", before)
			}

			noPortal, err := enricher.NewQuarantine(out.Gorm, e)
			if err != nil {
				t.Fatal(err)
			}
			res, err := noPortal.Retry(ctx, id)
			if !errors.Is(err, enricher.ErrPortalUnavailable) || res.Status == enricher.StatusQuarantined {
				t.Fatalf("retry without the portal: %+v, %v; want ErrPortalUnavailable", res, err)
			}
			results, err := noPortal.RetryAll(ctx)
			if !errors.Is(err, enricher.ErrPortalUnavailable) || len(results) != 0 {
				t.Fatalf("retry all without the portal: %d results, %v; want none and ErrPortalUnavailable", len(results), err)
			}
			after := quarantinedIDs(t, out.Gorm)[id]
			if after.Kind != before.Kind || after.Reason != before.Reason || after.Attempts != before.Attempts {
				t.Errorf("retry without the portal changed the row: %q %q %d, was %q %q %d",
					after.Kind, after.Reason, after.Attempts, before.Kind, before.Reason, before.Attempts)
			}

			// With the portal the retry runs, and the diagnosis still holds.
			withPortal, err := enricher.NewQuarantine(out.Gorm, e, enricher.WithPortal(portal.Gorm))
			if err != nil {
				t.Fatal(err)
			}
			if res, err := withPortal.Retry(ctx, id); err != nil || res.Kind != enricher.KindNotFound {
				t.Fatalf("retry with the portal: %+v, %v; want still not_found", res, err)
			}
		})
	}
}
