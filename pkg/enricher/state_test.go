package enricher

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
)

// EnrichApart is enrich for the package's external tests, which need the
// portal and the outbox in databases of their own.
func (e *Enricher) EnrichApart(ctx context.Context, portal, outboxTx *gorm.DB, rec AuditRecord) ([]event.Event, error) {
	return e.enrich(ctx, portal, outboxTx, rec)
}

// The state table keeps the latest as_of: a write that read an older state
// (a slower enrichment committing later) must not replace a newer one, and
// one as new or newer must.
func TestStatePutKeepsTheLatest(t *testing.T) {
	ctx := context.Background()
	at := func(m int) time.Time { return time.Date(2026, 11, 3, 10, m, 0, 123456000, time.UTC) }
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			st := stateStore{db: testdb.Migrated(t, dialect).Gorm}
			for _, tt := range []struct {
				data string
				asOf time.Time
				want string
			}{
				{`{"v":1}`, at(1), `{"v":1}`},
				{`{"v":2}`, at(2), `{"v":2}`},
				{`{"v":"older"}`, at(1), `{"v":2}`},
				{`{"v":3}`, at(2), `{"v":3}`}, // as new: the later write wins
				{`{"v":4}`, at(5), `{"v":4}`},
			} {
				if err := st.put(ctx, "output_port", "p1", []byte(tt.data), tt.asOf); err != nil {
					t.Fatal(err)
				}
				got, err := st.get(ctx, "output_port", "p1")
				if err != nil {
					t.Fatal(err)
				}
				if string(compactJSON(t, got)) != tt.want {
					t.Errorf("after writing %s as of %s: state %s, want %s", tt.data, tt.asOf.Format(time.RFC3339Nano), got, tt.want)
				}
			}
			// Kinds and ids are apart.
			if got, err := st.get(ctx, "technical_asset", "p1"); err != nil || got != nil {
				t.Errorf("another kind's state: %s, %v; want none", got, err)
			}
		})
	}
}

// Events may be handed a database without the state table (the portal's
// alone): it then reads no state, and it never writes one.
func TestReadOnlyStateWithoutTable(t *testing.T) {
	ctx := context.Background()
	bare := stateStore{db: testdb.New(t, "sqlite").Gorm, readOnly: true}
	if got, err := bare.get(ctx, "data_product", "d1"); err != nil || got != nil {
		t.Errorf("no table: %s, %v; want no state and no error", got, err)
	}
	db := testdb.Migrated(t, "sqlite").Gorm
	ro := stateStore{db: db, readOnly: true}
	if err := ro.put(ctx, "data_product", "d1", []byte(`{}`), time.Now()); err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := db.Raw("SELECT COUNT(*) FROM " + StateTable).Scan(&n).Error; err != nil || n != 0 {
		t.Errorf("a read-only store wrote %d rows (%v)", n, err)
	}
}

// compactJSON is b without insignificant white space: PostgreSQL's jsonb and
// MySQL's JSON give a document back re-spaced.
func compactJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("state %q: %v", b, err)
	}
	return out.Bytes()
}
