package enricher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
)

const (
	ordersID     = "10000000-0000-4000-8000-000000000001"
	churnID      = "10000000-0000-4000-8000-000000000002"
	scratchpadID = "10000000-0000-4000-8000-000000000003"
	ordersDaily  = "20000000-0000-4000-8000-000000000001"
	ordersS3     = "30000000-0000-4000-8000-000000000001"
	anaID        = "00000000-0000-4000-8000-000000000001"
	boID         = "00000000-0000-4000-8000-000000000002"
	chiID        = "00000000-0000-4000-8000-000000000003"
)

// portalDB is a file-backed SQLite database holding the portal sample.
func portalDB(t *testing.T) *gorm.DB {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "portal.db") + "?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)"
	db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	if err := portalsample.Load(context.Background(), db); err != nil {
		t.Fatalf("load portal sample: %v", err)
	}
	return db
}

// fixtureRecords returns the sample's audit records by id.
func fixtureRecords(t *testing.T, db *gorm.DB) map[string]enricher.AuditRecord {
	t.Helper()
	recs, err := portalsample.AuditRecords(context.Background(), db)
	if err != nil {
		t.Fatalf("audit records: %v", err)
	}
	byID := make(map[string]enricher.AuditRecord, len(recs))
	for _, r := range recs {
		byID[r.ID] = r
	}
	return byID
}

// oneEvent maps rec and requires exactly one event.
func oneEvent(t *testing.T, e *enricher.Enricher, db *gorm.DB, rec enricher.AuditRecord) event.Event {
	t.Helper()
	evs, err := e.Events(context.Background(), db, rec)
	if err != nil {
		t.Fatalf("Events(%s %s): %v", rec.ID, rec.Name, err)
	}
	if len(evs) != 1 {
		t.Fatalf("Events(%s %s): %d events, want 1", rec.ID, rec.Name, len(evs))
	}
	return evs[0]
}

func decode[T any](t *testing.T, ev event.Event) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(ev.Data, &v); err != nil {
		t.Fatalf("decode data of %s: %v", ev.Type, err)
	}
	return v
}

func TestFixtureRecords(t *testing.T) {
	db := portalDB(t)
	recs := fixtureRecords(t, db)
	// Every audit record of the fixture and what it maps to.
	tests := []struct {
		id, action, typ, subject, partitionKey string
	}{
		{"e0c1f6a2-5d0b-4c1e-9a53-0b7f2d3c4e01", "data_product_created", "io.herald.portal.data_product.created", "data_products/" + ordersID, ordersID},
		{"7a9e2b10-3c4d-4e5f-8a6b-7c8d9e0f1a02", "data_product_role_assignment_created", "io.herald.portal.team_member.added", "data_products/" + ordersID + "/team_members/" + boID, ordersID},
		{"c3d4e5f6-0718-4293-a4b5-c6d7e8f90a03", "dataset_created", "io.herald.portal.output_port.created", "output_ports/" + ordersDaily, ordersID},
		{"0f1e2d3c-4b5a-4697-8887-766554433204", "data_output_created", "io.herald.portal.technical_asset.created", "technical_assets/" + ordersS3, ordersID},
		{"a1b2c3d4-e5f6-4789-8abc-def012345605", "data_output_dataset_link_approved", "io.herald.portal.port_asset.linked", "output_ports/" + ordersDaily + "/technical_assets/" + ordersS3, ordersID},
		{"5e6f7a8b-9c0d-41e2-b3f4-a5b6c7d8e906", "data_product_created", "io.herald.portal.data_product.created", "data_products/" + churnID, churnID},
		// input ports are partitioned by the consuming data product
		{"9f8e7d6c-5b4a-4392-8180-7f6e5d4c3b07", "data_product_dataset_link_requested", "io.herald.portal.input_port.requested", "data_products/" + churnID + "/input_ports/" + ordersDaily, churnID},
		{"2b3c4d5e-6f70-4182-93a4-b5c6d7e8f908", "data_product_dataset_link_approved", "io.herald.portal.input_port.approved", "data_products/" + churnID + "/input_ports/" + ordersDaily, churnID}, // flipped orientation
		{"d1e2f3a4-b5c6-47d8-a9e0-f1a2b3c4d509", "data_product_setting_updated", "io.herald.portal.data_product.updated", "data_products/" + ordersID, ordersID},
		{"64a5b6c7-d8e9-4f0a-9b1c-2d3e4f5a6b10", "data_product_dataset_link_revoked", "io.herald.portal.input_port.revoked", "data_products/" + churnID + "/input_ports/" + ordersDaily, churnID},
		// created, then deleted before Herald saw it: the row is gone
		{"8c9d0e1f-2a3b-4c4d-8e5f-6a7b8c9d0e11", "data_product_created", "io.herald.portal.data_product.created", "data_products/" + scratchpadID, scratchpadID},
		{"3d4e5f60-7182-4934-a5b6-c7d8e9f0a112", "data_product_removed", "io.herald.portal.data_product.deleted", "data_products/" + scratchpadID, scratchpadID},
		{"b7c8d9e0-f1a2-4b3c-8d4e-5f6a7b8c9d13", "data_product_role_assignment_removed", "io.herald.portal.team_member.removed", "data_products/" + ordersID + "/team_members/" + chiID, ordersID},
	}
	if len(tests) != len(recs) {
		t.Fatalf("table covers %d records, fixture has %d", len(tests), len(recs))
	}
	e := enricher.New()
	for _, tt := range tests {
		t.Run(tt.action+"/"+tt.id[:8], func(t *testing.T) {
			rec, ok := recs[tt.id]
			if !ok || rec.Name != tt.action {
				t.Fatalf("fixture has no %s record %s", tt.action, tt.id)
			}
			evs, err := e.Events(context.Background(), db, rec)
			if err != nil {
				t.Fatalf("Events: %v", err)
			}
			if len(evs) != 1 {
				t.Fatalf("%d events, want 1", len(evs))
			}
			ev := evs[0]
			if ev.Type != tt.typ || ev.Subject != tt.subject || ev.PartitionKey != tt.partitionKey {
				t.Errorf("type, subject, partitionkey = %s, %s, %s\nwant %s, %s, %s",
					ev.Type, ev.Subject, ev.PartitionKey, tt.typ, tt.subject, tt.partitionKey)
			}
			if want := "https://heraldhq.github.io/herald/schemas/" + tt.typ + "/v1.json"; ev.DataSchema != want {
				t.Errorf("dataschema = %s, want %s", ev.DataSchema, want)
			}
			if ev.Source != "/portal" || !ev.Time.Equal(rec.CreatedOn) {
				t.Errorf("source, time = %s, %s; want /portal, %s", ev.Source, ev.Time, rec.CreatedOn)
			}
			if err := ev.Validate(); err != nil {
				t.Errorf("invalid event: %v", err)
			}
			prov := decode[enricher.Provenance](t, ev)
			if prov.AuditRecordID != rec.ID || prov.ActorID != rec.ActorID {
				t.Errorf("provenance %+v, want audit record %s by %s", prov, rec.ID, rec.ActorID)
			}
		})
	}
}

func TestDataProductData(t *testing.T) {
	db := portalDB(t)
	rec := fixtureRecords(t, db)["d1e2f3a4-b5c6-47d8-a9e0-f1a2b3c4d509"] // data_product_setting_updated
	readAt := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	e := enricher.New(enricher.WithClock(func() time.Time { return readAt }))
	got := decode[enricher.DataProduct](t, oneEvent(t, e, db, rec))
	want := enricher.DataProduct{
		ID: ordersID, Name: "Orders", Namespace: "sales-orders", Description: "Order facts", Status: "active",
		Domain:   &enricher.Ref{ID: "00000000-0000-4000-8000-0000000000d1", Name: "Sales"},
		Type:     &enricher.Ref{ID: "00000000-0000-4000-8000-0000000000a1", Name: "Source-aligned"},
		Settings: map[string]string{"retention_days": "30"},
		TeamMembers: []enricher.TeamMember{
			{User: enricher.UserRef{ID: anaID, Email: "ana@example.com"}, Role: "Owner"},
			{User: enricher.UserRef{ID: boID, Email: "bo@example.com"}, Role: "Member"},
		},
		// Read when the whole fixture is in: the team as it is after Chi's
		// removal at 10:11, not at 10:07, as of when Herald read it.
		AsOf:       readAt,
		Provenance: enricher.Provenance{ActorID: anaID, AuditRecordID: rec.ID},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("data product data:\n got %+v\nwant %+v", got, want)
	}
}

func TestDataProductWithoutTeamOrSettings(t *testing.T) {
	db := portalDB(t)
	rec := fixtureRecords(t, db)["5e6f7a8b-9c0d-41e2-b3f4-a5b6c7d8e906"] // Churn model
	ev := oneEvent(t, enricher.New(), db, rec)
	// Consumers get empty collections, not nulls, for a product without them.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(ev.Data, &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw["settings"]) != "{}" || string(raw["team_members"]) != "[]" {
		t.Errorf("settings %s, team_members %s; want {} and []", raw["settings"], raw["team_members"])
	}
}

func TestOutputPortData(t *testing.T) {
	db := portalDB(t)
	rec := fixtureRecords(t, db)["c3d4e5f6-0718-4293-a4b5-c6d7e8f90a03"] // dataset_created
	got := decode[enricher.OutputPort](t, oneEvent(t, enricher.New(portalsample.Replay()), db, rec))
	want := enricher.OutputPort{
		ID: ordersDaily, Name: "Orders daily", Namespace: "sales-orders-daily", DataProductID: ordersID,
		AccessType: "restricted", Status: "active",
		AsOf:       rec.CreatedOn, // replayed: read at the record's own time
		Provenance: enricher.Provenance{ActorID: anaID, AuditRecordID: rec.ID},
	}
	if got != want {
		t.Errorf("output port data:\n got %+v\nwant %+v", got, want)
	}
}

func TestDeletedDataProductKeepsItsName(t *testing.T) {
	db := portalDB(t)
	recs := fixtureRecords(t, db)
	e := enricher.New()
	removedAt := time.Date(2026, 11, 1, 10, 10, 0, 0, time.UTC)
	gone := func(id string) enricher.DeletedEntity {
		return enricher.DeletedEntity{ID: scratchpadID, Name: "Scratchpad", Deleted: true, AsOf: removedAt,
			Provenance: enricher.Provenance{ActorID: boID, AuditRecordID: id}}
	}

	// data_product_removed: the name is on the record. Herald never saw the
	// product alive, so there is no last known state.
	removed := "3d4e5f60-7182-4934-a5b6-c7d8e9f0a112"
	got := decode[enricher.DeletedDataProduct](t, oneEvent(t, e, db, recs[removed]))
	if want := (enricher.DeletedDataProduct{DeletedEntity: gone(removed)}); !reflect.DeepEqual(got, want) {
		t.Errorf("removed: data\n got %+v\nwant %+v", got, want)
	}
	// data_product_created processed after the deletion: named, and as of,
	// from the audit row that deleted it.
	created := "8c9d0e1f-2a3b-4c4d-8e5f-6a7b8c9d0e11"
	if got := decode[enricher.DeletedEntity](t, oneEvent(t, e, db, recs[created])); got != gone(created) {
		t.Errorf("created: data\n got %+v\nwant %+v", got, gone(created))
	}
}

func TestOrientationByType(t *testing.T) {
	db := portalDB(t)
	base := enricher.AuditRecord{ID: "aaaaaaaa-0000-4000-8000-000000000001", ActorID: anaID,
		CreatedOn: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)}
	flipped := func(name, subjectID, subjectType, targetID, targetType string) enricher.AuditRecord {
		r := base
		r.Name, r.SubjectID, r.SubjectType, r.TargetID, r.TargetType = name, subjectID, subjectType, targetID, targetType
		return r
	}
	tests := []struct {
		name              string
		rec               enricher.AuditRecord
		subject, partkey  string
		wantDataProductID string
	}{
		{"output port as target", flipped("dataset_updated", ordersID, "data_product", ordersDaily, "dataset"),
			"output_ports/" + ordersDaily, ordersID, ordersID},
		{"output port as subject", flipped("dataset_updated", ordersDaily, "dataset", ordersID, "data_product"),
			"output_ports/" + ordersDaily, ordersID, ordersID},
		// The owner comes from the port's row, not from whichever data
		// product the record names.
		{"other data product named", flipped("dataset_updated", churnID, "data_product", ordersDaily, "dataset"),
			"output_ports/" + ordersDaily, ordersID, ordersID},
		{"data product as target", flipped("data_product_updated", ordersDaily, "dataset", ordersID, "data_product"),
			"data_products/" + ordersID, ordersID, ""},
		{"upper-case ids", flipped("dataset_updated", strings.ToUpper(ordersID), "data_product", strings.ToUpper(ordersDaily), "dataset"),
			"output_ports/" + ordersDaily, ordersID, ordersID},
	}
	e := enricher.New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := oneEvent(t, e, db, tt.rec)
			if ev.Subject != tt.subject || ev.PartitionKey != tt.partkey {
				t.Errorf("subject, partitionkey = %s, %s; want %s, %s", ev.Subject, ev.PartitionKey, tt.subject, tt.partkey)
			}
			if tt.wantDataProductID != "" {
				if got := decode[enricher.OutputPort](t, ev); got.DataProductID != tt.wantDataProductID {
					t.Errorf("data_product_id = %s, want %s", got.DataProductID, tt.wantDataProductID)
				}
			}
		})
	}
}

func TestDeletedOutputPort(t *testing.T) {
	ctx := context.Background()
	db := portalDB(t)
	if err := db.Exec(`DELETE FROM datasets WHERE id = ?`, ordersDaily).Error; err != nil {
		t.Fatalf("delete output port: %v", err)
	}
	removed := enricher.AuditRecord{ID: "aaaaaaaa-0000-4000-8000-000000000002", Name: "dataset_removed",
		SubjectID: ordersDaily, SubjectType: "dataset", ActorID: anaID, DeletedSubjectIdentifier: "Orders daily",
		CreatedOn: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)}
	e := enricher.New()

	t.Run("owner from the audit trail", func(t *testing.T) {
		ev := oneEvent(t, e, db, removed)
		got := decode[enricher.DeletedEntity](t, ev)
		if ev.Type != "io.herald.portal.output_port.deleted" || ev.PartitionKey != ordersID ||
			got.Name != "Orders daily" || got.DataProductID != ordersID || got.ID != ordersDaily {
			t.Errorf("event %s key %s data %+v", ev.Type, ev.PartitionKey, got)
		}
	})
	t.Run("owner from the record", func(t *testing.T) {
		rec := removed
		rec.TargetID, rec.TargetType = churnID, "data_product"
		if ev := oneEvent(t, e, db, rec); ev.PartitionKey != churnID {
			t.Errorf("partitionkey = %s, want the record's data product %s", ev.PartitionKey, churnID)
		}
	})
	t.Run("owner unknown", func(t *testing.T) {
		rec := removed
		rec.SubjectID = "20000000-0000-4000-8000-0000000000ff" // never created in the audit trail
		ev := oneEvent(t, e, db, rec)
		if ev.PartitionKey != rec.SubjectID || decode[enricher.DeletedEntity](t, ev).DataProductID != "" {
			t.Errorf("partitionkey = %s, want the port's own id %s", ev.PartitionKey, rec.SubjectID)
		}
	})
	t.Run("update of a port deleted without audit row", func(t *testing.T) {
		rec := removed
		rec.Name, rec.DeletedSubjectIdentifier = "dataset_updated", ""
		_, err := e.Events(ctx, db, rec)
		if !errors.Is(err, enricher.ErrEntityNotFound) {
			t.Errorf("err = %v, want ErrEntityNotFound", err)
		}
	})
}

func TestMissingEntityIsAnError(t *testing.T) {
	db := portalDB(t)
	rec := validRecord()
	rec.Name = "data_product_updated"
	rec.SubjectID = "10000000-0000-4000-8000-0000000000ff"
	_, err := enricher.New().Events(context.Background(), db, rec)
	if !errors.Is(err, enricher.ErrEntityNotFound) {
		t.Fatalf("err = %v, want ErrEntityNotFound", err)
	}
	for _, part := range []string{rec.ID, "data_product_updated", rec.SubjectID} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not name %s", err, part)
		}
	}
}

func TestOptions(t *testing.T) {
	db := portalDB(t)
	e := enricher.New(enricher.WithSource("https://portal.example.com"),
		enricher.WithSchemaBase("https://schemas.example.com/herald"), enricher.WithLogger(nil))
	ev := oneEvent(t, e, db, validRecord())
	if ev.Source != "https://portal.example.com" {
		t.Errorf("source = %s", ev.Source)
	}
	if want := "https://schemas.example.com/herald/io.herald.portal.data_product.created/v1.json"; ev.DataSchema != want {
		t.Errorf("dataschema = %s, want %s", ev.DataSchema, want)
	}
}

func TestEventsInsideTransaction(t *testing.T) {
	db := portalDB(t)
	// A lookup sees the caller's uncommitted changes: it runs on the tx.
	err := db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`UPDATE data_products SET name = 'Orders v2' WHERE id = ?`, ordersID).Error; err != nil {
			return err
		}
		ev := oneEvent(t, enricher.New(), tx, validRecord())
		if got := decode[enricher.DataProduct](t, ev).Name; got != "Orders v2" {
			t.Errorf("name = %s, want the transaction's Orders v2", got)
		}
		return errors.New("roll back")
	})
	if err == nil {
		t.Fatal("transaction committed")
	}
}

// A span per record, and every event the record yields carries that span's
// traceparent, so the relay's send span can link back to it.
func TestTracing(t *testing.T) {
	ctx := context.Background()
	db := outboxDB(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })
	traceParentOf := func(sc trace.SpanContext) string {
		return fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags())
	}
	custom := func(_ context.Context, _ *gorm.DB, rec enricher.AuditRecord) ([]event.Event, error) {
		ev, err := event.New("com.example.portal.maintenance", "/portal", map[string]string{"by": rec.ActorID})
		return []event.Event{ev}, err
	}
	e := enricher.New(enricher.WithTracerProvider(tp), enricher.WithCustom("portal_maintenance_started", custom))

	t.Run("record", func(t *testing.T) {
		exp.Reset()
		evs, err := e.Record(ctx, db, validRecord())
		if err != nil || len(evs) != 1 {
			t.Fatalf("Record: %v, %v", evs, err)
		}
		spans := exp.GetSpans()
		if len(spans) != 1 {
			t.Fatalf("%d spans, want 1", len(spans))
		}
		s := spans[0]
		if evs[0].TraceParent != traceParentOf(s.SpanContext) {
			t.Errorf("traceparent %q, want the span's %q", evs[0].TraceParent, traceParentOf(s.SpanContext))
		}
		if s.Name != "enrich audit record" || s.SpanKind != trace.SpanKindProducer || s.Status.Code != codes.Unset {
			t.Errorf("span %q kind %s status %v", s.Name, s.SpanKind, s.Status)
		}
		attrs := attribute.NewSet(s.Attributes...)
		if v, _ := attrs.Value("herald.audit_record.id"); v.AsString() != validRecord().ID {
			t.Errorf("span attributes %v", s.Attributes)
		}
		if v, _ := attrs.Value("messaging.batch.message_count"); v.AsInt64() != 1 {
			t.Errorf("span attributes %v", s.Attributes)
		}
		// What the relay reads is what Record returned.
		rows := outboxRows(t, db)
		stored, err := event.Parse(rows[len(rows)-1].Payload)
		if err != nil || stored.TraceParent != evs[0].TraceParent {
			t.Errorf("outbox row traceparent %q (%v), want %q", stored.TraceParent, err, evs[0].TraceParent)
		}
	})
	t.Run("child of the caller's span", func(t *testing.T) {
		exp.Reset()
		parentCtx, parent := tp.Tracer("test").Start(ctx, "poll")
		evs, err := e.Events(parentCtx, db, validRecord())
		parent.End()
		if err != nil || len(evs) != 1 {
			t.Fatalf("Events: %v, %v", evs, err)
		}
		ev := evs[0]
		spans := exp.GetSpans()
		var enrich tracetest.SpanStub
		for _, s := range spans {
			if s.Name == "enrich audit record" {
				enrich = s
			}
		}
		if enrich.Parent.SpanID() != parent.SpanContext().SpanID() || enrich.SpanContext.TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("enrichment span's parent %s, want the caller's %s", enrich.Parent.SpanID(), parent.SpanContext().SpanID())
		}
		if ev.TraceParent != traceParentOf(enrich.SpanContext) {
			t.Errorf("traceparent %q, want the enrichment span's %q", ev.TraceParent, traceParentOf(enrich.SpanContext))
		}
	})
	t.Run("custom enricher's events", func(t *testing.T) {
		exp.Reset()
		rec := validRecord()
		rec.Name, rec.SubjectID, rec.SubjectType = "portal_maintenance_started", "", ""
		ev := oneEvent(t, e, db, rec)
		if spans := exp.GetSpans(); len(spans) != 1 || ev.TraceParent != traceParentOf(spans[0].SpanContext) {
			t.Errorf("custom event traceparent %q, spans %d", ev.TraceParent, len(spans))
		}
	})
	t.Run("failure", func(t *testing.T) {
		exp.Reset()
		rec := validRecord()
		rec.Name = "data_product_archived"
		if _, err := e.Events(ctx, db, rec); !errors.Is(err, enricher.ErrUnmapped) {
			t.Fatalf("err = %v", err)
		}
		if spans := exp.GetSpans(); len(spans) != 1 || spans[0].Status.Code != codes.Error || len(spans[0].Events) == 0 {
			t.Errorf("a failed enrichment's span: %+v", spans)
		}
	})
	t.Run("no tracer provider", func(t *testing.T) {
		// OpenTelemetry's global provider records nothing until a program
		// sets one: no trace, no traceparent.
		if ev := oneEvent(t, enricher.New(), db, validRecord()); ev.TraceParent != "" {
			t.Errorf("traceparent %q without a tracer provider, want none", ev.TraceParent)
		}
	})
}
