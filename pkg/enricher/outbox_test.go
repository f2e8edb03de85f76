package enricher_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// outboxDB is the portal sample with the outbox table in the same database,
// as a producer deploys it.
func outboxDB(t *testing.T) *gorm.DB {
	t.Helper()
	db := portalDB(t)
	if _, err := outbox.Migrate(context.Background(), db); err != nil {
		t.Fatalf("migrate outbox: %v", err)
	}
	return db
}

type outboxRow struct {
	EventID, EventType, PartitionKey string
	Payload                          []byte
}

// outboxRows reads the table directly, so the test checks what a relay will
// find rather than what the writer reports.
func outboxRows(t *testing.T, db *gorm.DB) []outboxRow {
	t.Helper()
	rows, err := db.Raw(`SELECT event_id, event_type, partition_key, payload FROM herald_outbox ORDER BY seq`).Rows()
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err reports what matters
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.EventID, &r.EventType, &r.PartitionKey, &r.Payload); err != nil {
			t.Fatalf("scan outbox: %v", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return out
}

func TestRecordWritesOutboxInTransaction(t *testing.T) {
	ctx := context.Background()
	db := outboxDB(t)
	e := enricher.New()
	var evs []event.Event
	err := db.Transaction(func(tx *gorm.DB) error {
		var err error
		if evs, err = e.Record(ctx, tx, validRecord()); err != nil {
			return err
		}
		// The row is there inside the transaction...
		if n := len(outboxRows(t, tx)); n != 1 {
			t.Errorf("inside the transaction: %d outbox rows, want 1", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	// ...and after commit it holds exactly the event Record returned.
	rows := outboxRows(t, db)
	if len(rows) != 1 || len(evs) != 1 {
		t.Fatalf("%d outbox rows and %d events, want 1 and 1", len(rows), len(evs))
	}
	want, err := evs[0].MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	r := rows[0]
	if r.EventID != evs[0].ID || r.EventType != "io.herald.portal.data_product.created" || r.PartitionKey != ordersID {
		t.Errorf("outbox row %s %s %s", r.EventID, r.EventType, r.PartitionKey)
	}
	if !bytes.Equal(r.Payload, want) {
		t.Errorf("payload\n got %s\nwant %s", r.Payload, want)
	}
}

func TestRecordRolledBackLeavesNothing(t *testing.T) {
	ctx := context.Background()
	db := outboxDB(t)
	rollback := errors.New("roll back")
	err := db.Transaction(func(tx *gorm.DB) error {
		if _, err := enricher.New().Record(ctx, tx, validRecord()); err != nil {
			return err
		}
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatalf("transaction: %v", err)
	}
	if rows := outboxRows(t, db); len(rows) != 0 {
		t.Errorf("%d outbox rows after rollback, want 0", len(rows))
	}
}

func TestRecordWritesNothingOnError(t *testing.T) {
	ctx := context.Background()
	db := outboxDB(t)
	e := enricher.New()
	unmapped := validRecord()
	unmapped.Name = "data_product_archived"
	invalid := validRecord()
	invalid.SubjectID = ""
	for _, tt := range []struct {
		rec  enricher.AuditRecord
		want error
	}{{unmapped, enricher.ErrUnmapped}, {invalid, enricher.ErrInvalidRecord}} {
		if _, err := e.Record(ctx, db, tt.rec); !errors.Is(err, tt.want) {
			t.Errorf("Record(%s): err = %v, want %v", tt.rec.Name, err, tt.want)
		}
	}
	if rows := outboxRows(t, db); len(rows) != 0 {
		t.Errorf("%d outbox rows, want 0", len(rows))
	}
}

func TestRecordFixture(t *testing.T) {
	ctx := context.Background()
	db := outboxDB(t)
	recs, err := portalsample.AuditRecords(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	e := enricher.New()
	unmapped := 0
	err = db.Transaction(func(tx *gorm.DB) error {
		for _, rec := range recs {
			_, err := e.Record(ctx, tx, rec)
			switch {
			case errors.Is(err, enricher.ErrUnmapped):
				unmapped++
			case err != nil:
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	rows := outboxRows(t, db)
	if len(rows) != 13 || unmapped != 0 {
		t.Errorf("%d events written, %d records unmapped; want 13 and 0", len(rows), unmapped)
	}
	for _, r := range rows {
		if _, err := event.Parse(r.Payload); err != nil {
			t.Errorf("outbox row %s: %v", r.EventID, err)
		}
	}
}
