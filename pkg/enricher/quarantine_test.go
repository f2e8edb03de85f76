package enricher_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

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
