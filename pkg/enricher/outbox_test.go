package enricher_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/internal/testdb"
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

// A deletion carries what teardown needs although the portal's row is gone:
// the last known state Herald kept in the outbox's database when it
// described the entity, written in the transaction of the events that
// carried it. Portal and outbox in one database of each dialect, and apart
// (the portal on PostgreSQL, the outbox on MariaDB).
func TestLastKnownState(t *testing.T) {
	for _, tt := range []struct{ portal, outbox string }{
		{"postgres", "postgres"}, {"mysql", "mysql"}, {"sqlite", "sqlite"}, {"postgres", "mysql"},
	} {
		t.Run(tt.portal+"-portal/"+tt.outbox+"-outbox", func(t *testing.T) {
			ctx := context.Background()
			outboxDB := testdb.Migrated(t, tt.outbox).Gorm
			portal := outboxDB
			if tt.portal != tt.outbox {
				portal = testdb.New(t, tt.portal).Gorm
			}
			if err := portalsample.Load(ctx, portal); err != nil {
				t.Fatal(err)
			}
			e := enricher.New()
			_, evs := playLifecycle(t, e, portal, outboxDB)
			byType := map[string]event.Event{}
			for _, ev := range evs {
				byType[strings.TrimPrefix(ev.Type, enricher.TypePrefix)] = ev
			}

			portGone := decode[enricher.DeletedOutputPort](t, byType["output_port.deleted"])
			if lk := portGone.LastKnown; lk == nil || lk.Namespace != "sales-clicks" || lk.AccessType != "restricted" ||
				lk.AuditRecordID != "e1000000-0000-4000-8000-000000000002" || portGone.Name != "Clicks" || !portGone.Deleted {
				t.Errorf("output_port.deleted: %s", byType["output_port.deleted"].Data)
			}
			assetEv := byType["technical_asset.deleted"]
			assetGone := decode[enricher.DeletedTechnicalAsset](t, assetEv)
			// The record names no data product: the owner is the last known one.
			if lk := assetGone.LastKnown; lk == nil || lk.Platform != "aws" || lk.Service != "s3" || lk.Configuration["bucket"] != "web" ||
				assetGone.DataProductID != ordersID || assetEv.PartitionKey != ordersID {
				t.Errorf("technical_asset.deleted (key %s): %s", assetEv.PartitionKey, assetEv.Data)
			}
			// Events about the deleted port name it as Herald last knew it.
			removed := decode[enricher.InputPort](t, byType["input_port.removed"])
			if p := removed.OutputPort; !p.Deleted || p.Namespace != "sales-clicks" || p.AccessType != "restricted" || p.DataProductID != ordersID ||
				len(removed.TechnicalAssets) != 1 || removed.TechnicalAssets[0].Platform != "aws" {
				t.Errorf("input_port.removed: %s", byType["input_port.removed"].Data)
			}
			member := decode[enricher.OutputPortMemberChange](t, byType["output_port_member.removed"])
			if !member.OutputPort.Deleted || member.OutputPort.Namespace != "sales-clicks" || byType["output_port_member.removed"].PartitionKey != ordersID {
				t.Errorf("output_port_member.removed: %s", byType["output_port_member.removed"].Data)
			}

			// The state is in the outbox's database, one row per entity
			// described, and only there.
			if n := stateRows(t, outboxDB); n != 2 {
				t.Errorf("%d state rows in the outbox database, want 2 (the output port and the technical asset)", n)
			}
			if portal != outboxDB && portal.Migrator().HasTable(enricher.StateTable) {
				t.Errorf("the portal's database has a state table")
			}

			// Events reads the state where its database has the table, and
			// writes nothing; handed the portal alone, it has none.
			recs := map[string]enricher.AuditRecord{}
			for _, s := range lifecycle() {
				recs[s.rec.Name] = s.rec
			}
			again, err := e.Events(ctx, portal, recs["dataset_removed"])
			if err != nil || len(again) != 1 {
				t.Fatalf("Events(dataset_removed): %v, %v", again, err)
			}
			lk := decode[enricher.DeletedOutputPort](t, again[0]).LastKnown
			if wantState := portal == outboxDB; (lk != nil) != wantState {
				t.Errorf("Events on the portal database: last_known %+v, want one: %v", lk, wantState)
			}
			if n := stateRows(t, outboxDB); n != 2 {
				t.Errorf("Events changed the state table: %d rows", n)
			}
		})
	}
}

// The state commits or rolls back with the events that carried it.
func TestLastKnownStateRollsBackWithTheEvents(t *testing.T) {
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := testdb.Migrated(t, dialect).Gorm
			if err := portalsample.Load(ctx, db); err != nil {
				t.Fatal(err)
			}
			rollback := errors.New("roll back")
			err := db.Transaction(func(tx *gorm.DB) error {
				if _, err := enricher.New().Record(ctx, tx, validRecord()); err != nil {
					return err
				}
				if n := stateRows(t, tx); n != 1 {
					t.Errorf("inside the transaction: %d state rows, want 1", n)
				}
				return rollback
			})
			if !errors.Is(err, rollback) {
				t.Fatalf("transaction: %v", err)
			}
			if n, m := stateRows(t, db), len(outboxRows(t, db)); n != 0 || m != 0 {
				t.Errorf("after rollback: %d state rows, %d outbox rows; want none", n, m)
			}
		})
	}
}

func stateRows(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Raw("SELECT COUNT(*) FROM " + enricher.StateTable).Scan(&n).Error; err != nil {
		t.Fatalf("count state rows: %v", err)
	}
	return n
}
