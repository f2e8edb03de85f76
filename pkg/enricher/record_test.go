package enricher_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/enricher"
)

// validRecord is the fixture's first audit record.
func validRecord() enricher.AuditRecord {
	return enricher.AuditRecord{
		ID:          "e0c1f6a2-5d0b-4c1e-9a53-0b7f2d3c4e01",
		Name:        "data_product_created",
		SubjectID:   "10000000-0000-4000-8000-000000000001",
		SubjectType: "data_product",
		ActorID:     "00000000-0000-4000-8000-000000000001",
		CreatedOn:   time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC),
	}
}

func TestInvalidRecords(t *testing.T) {
	const prefix = "audit record e0c1f6a2-5d0b-4c1e-9a53-0b7f2d3c4e01: "
	tests := []struct {
		name   string
		mutate func(*enricher.AuditRecord)
		want   string // the whole message of the (only) error
	}{
		{"no id", func(r *enricher.AuditRecord) { r.ID = "" }, "audit record (no id): id: required"},
		{"id not a uuid", func(r *enricher.AuditRecord) { r.ID = "e0c1" }, `audit record (no id): id: "e0c1" is not a UUID`},
		{"no name", func(r *enricher.AuditRecord) { r.Name = " " }, prefix + "name: required"},
		{"no subject_id", func(r *enricher.AuditRecord) { r.SubjectID = "" }, prefix + `subject_id: required (subject_type is "data_product")`},
		{"subject_id not a uuid", func(r *enricher.AuditRecord) { r.SubjectID = "orders" }, prefix + `subject_id: "orders" is not a UUID`},
		{"braced uuid", func(r *enricher.AuditRecord) { r.SubjectID = "{" + r.SubjectID + "}" }, prefix + `subject_id: "{10000000-0000-4000-8000-000000000001}" is not a UUID`},
		{"target_id not a uuid", func(r *enricher.AuditRecord) { r.TargetID, r.TargetType = "x", "user" }, prefix + `target_id: "x" is not a UUID`},
		{"target_id without type", func(r *enricher.AuditRecord) { r.TargetID = "00000000-0000-4000-8000-000000000002" }, prefix + "target_type: required (target_id is set)"},
		{"no actor_id", func(r *enricher.AuditRecord) { r.ActorID = "" }, prefix + "actor_id: required"},
		{"zero created_on", func(r *enricher.AuditRecord) { r.CreatedOn = time.Time{} }, prefix + "created_on: required"},
		{"subject_type of another family", func(r *enricher.AuditRecord) { r.SubjectType = "dataset" },
			prefix + `subject_type: "dataset" does not match action "data_product_created": want a data_product as subject or target`},
		{"output port action without a dataset", func(r *enricher.AuditRecord) { r.Name = "dataset_updated" },
			prefix + `subject_type: "data_product" does not match action "dataset_updated": want a dataset as subject or target`},
		{"unmapped action of a known family", func(r *enricher.AuditRecord) { r.Name = "data_output_created" },
			prefix + `subject_type: "data_product" does not match action "data_output_created": want a data_output as subject or target`},
	}
	e := enricher.New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := validRecord()
			tt.mutate(&rec)
			// Validation comes before any lookup, so no database is needed.
			_, err := e.Events(context.Background(), nil, rec)
			if !errors.Is(err, enricher.ErrInvalidRecord) {
				t.Fatalf("err = %v, want ErrInvalidRecord", err)
			}
			if err.Error() != tt.want {
				t.Errorf("err = %q\nwant  %q", err, tt.want)
			}
			var re *enricher.RecordError
			if !errors.As(err, &re) || !strings.Contains(tt.want, re.Field+": ") {
				t.Errorf("RecordError %+v does not name the field of %q", re, tt.want)
			}
		})
	}
}

func TestInvalidRecordReportsEveryField(t *testing.T) {
	_, err := enricher.New().Events(context.Background(), nil, enricher.AuditRecord{ID: "e0c1f6a2-5d0b-4c1e-9a53-0b7f2d3c4e01"})
	if !errors.Is(err, enricher.ErrInvalidRecord) {
		t.Fatalf("err = %v, want ErrInvalidRecord", err)
	}
	for _, field := range []string{"name:", "actor_id:", "created_on:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
}

func TestUnmappedAction(t *testing.T) {
	for _, name := range []string{"data_product_archived", "portal_maintenance_started"} {
		rec := validRecord()
		rec.Name = name
		_, err := enricher.New().Events(context.Background(), nil, rec)
		if !errors.Is(err, enricher.ErrUnmapped) {
			t.Fatalf("%s: err = %v, want ErrUnmapped", name, err)
		}
		if errors.Is(err, enricher.ErrInvalidRecord) || !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("%s: err = %q, want it to name the action only", name, err)
		}
	}
}
