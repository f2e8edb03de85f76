package enricher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
)

const flippedApproval = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f908"

// sameEvent compares everything but the generated id.
func sameEvent(t *testing.T, a, b event.Event) {
	t.Helper()
	a.ID, b.ID = "", ""
	if !reflect.DeepEqual(a, b) {
		t.Errorf("events differ:\n%+v\n%s\n%+v\n%s", a, a.Data, b, b.Data)
	}
}

func TestFlippedApprovalMapsLikeAnUnflippedOne(t *testing.T) {
	db := portalDB(t)
	flipped := fixtureRecords(t, db)[flippedApproval]
	if flipped.SubjectType != "dataset" || flipped.TargetType != "data_product" {
		t.Fatalf("fixture record is not flipped: %+v", flipped)
	}
	unflipped := flipped
	unflipped.SubjectID, unflipped.SubjectType, unflipped.TargetID, unflipped.TargetType =
		flipped.TargetID, flipped.TargetType, flipped.SubjectID, flipped.SubjectType
	e := enricher.New()
	sameEvent(t, oneEvent(t, e, db, flipped), oneEvent(t, e, db, unflipped))
}

// Each input-port event is the input port as its action left it: the
// request carries no approval although the portal's row holds one now.
func TestInputPortData(t *testing.T) {
	db := portalDB(t)
	recs := fixtureRecords(t, db)
	e := enricher.New()
	pending, approved := "pending", "approved"
	at := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	ana := &enricher.UserRef{ID: anaID, Email: "ana@example.com"}
	for _, tt := range []struct {
		id, status string
		previous   *string
		approvedBy *enricher.UserRef
		approvedOn *time.Time
	}{
		{"9f8e7d6c-5b4a-4392-8180-7f6e5d4c3b07", "pending", nil, nil, nil},
		{flippedApproval, "approved", &pending, ana, at("2026-11-01T10:06:00Z")},
		{"64a5b6c7-d8e9-4f0a-9b1c-2d3e4f5a6b10", "revoked", &approved, ana, at("2026-11-01T10:06:00Z")},
	} {
		rec := recs[tt.id]
		got := decode[enricher.InputPort](t, oneEvent(t, e, db, rec))
		want := enricher.InputPort{
			ID:          "40000000-0000-4000-8000-000000000001",
			DataProduct: enricher.EntityRef{ID: churnID, Name: "Churn model", Namespace: "churn-model"},
			OutputPort: enricher.OutputPortRef{ID: ordersDaily, Name: "Orders daily", Namespace: "sales-orders-daily",
				DataProductID: ordersID, AccessType: "restricted"},
			TechnicalAssets: []enricher.TechnicalAssetRef{{ID: ordersS3, Name: "orders_s3", Namespace: "sales-orders-s3",
				DataProductID: ordersID, Platform: "aws", Service: "s3", Configuration: map[string]any{"bucket": "sales", "prefix": "orders/"}}},
			Status:         tt.status,
			PreviousStatus: tt.previous,
			Justification:  "Train churn model",
			RequestedBy:    &enricher.UserRef{ID: chiID, Email: "chi@example.com"},
			RequestedOn:    at("2026-11-01T10:05:00Z"),
			ApprovedBy:     tt.approvedBy,
			ApprovedOn:     tt.approvedOn,
			AsOf:           rec.CreatedOn,
			Provenance:     enricher.Provenance{ActorID: rec.ActorID, AuditRecordID: rec.ID},
		}
		if !reflect.DeepEqual(got, want) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			t.Errorf("%s:\n got %s\nwant %s", rec.Name, g, w)
		}
	}
}

func TestShowcaseRules(t *testing.T) {
	ctx := context.Background()
	db := portalDB(t)
	if err := portalsample.LoadShowcase(ctx, db); err != nil {
		t.Fatal(err)
	}
	recs := fixtureRecords(t, db)
	e := enricher.New()

	t.Run("role assignment awaiting approval yields nothing", func(t *testing.T) {
		evs, err := e.Events(ctx, db, recs["d5940f08-deaa-4ade-9d73-9b70353749de"])
		if err != nil || len(evs) != 0 {
			t.Errorf("events %v, err %v; want none", evs, err)
		}
	})
	t.Run("ignored actions yield nothing, without a database", func(t *testing.T) {
		for _, id := range []string{
			"ad6a6b9c-869f-458e-ae01-22111d7241fa", // data_output_dataset_link_requested
			"fc565b5b-917c-464e-a644-8a800cd1d0a4", // data_product_role_assignment_requested
			"3f6899a7-b9d0-46aa-b341-f6f126144a2e", // data_product_role_assignment_denied
		} {
			evs, err := e.Events(ctx, nil, recs[id])
			if err != nil || len(evs) != 0 {
				t.Errorf("%s: events %v, err %v; want none", recs[id].Name, evs, err)
			}
		}
	})
	t.Run("re-request after revocation", func(t *testing.T) {
		got := decode[enricher.InputPort](t, oneEvent(t, e, db, recs["acd3d94e-0d51-43d8-9ca8-8b8d9b748f7f"]))
		if got.Status != "pending" || got.PreviousStatus == nil || *got.PreviousStatus != "revoked" {
			t.Errorf("status %s, previous %v; want pending after revoked", got.Status, got.PreviousStatus)
		}
	})
	t.Run("removed input port has no row", func(t *testing.T) {
		ev := oneEvent(t, e, db, recs["1fb1717d-b2ce-40b3-aee0-22565bb4b42b"])
		got := decode[enricher.InputPort](t, ev)
		// The request it removed is still known, from the audit trail.
		if got.ID != "" || got.Status != "removed" || *got.PreviousStatus != "pending" ||
			got.RequestedBy == nil || got.RequestedBy.Email != "bo@example.com" || got.ApprovedBy != nil ||
			ev.PartitionKey != "10000000-0000-4000-8000-000000000004" {
			t.Errorf("removed: %s key %s", ev.Data, ev.PartitionKey)
		}
	})
	t.Run("output-port role assignment", func(t *testing.T) {
		ev := oneEvent(t, e, db, recs["3d745c36-5f95-44fe-bd38-f9f06abddedb"]) // dataset_role_assignment_created
		got := decode[enricher.OutputPortMemberChange](t, ev)
		want := enricher.OutputPortMemberChange{
			OutputPort: enricher.OutputPortRef{ID: ordersDaily, Name: "Orders daily", Namespace: "sales-orders-daily",
				DataProductID: ordersID, AccessType: "restricted"},
			User:       enricher.UserRef{ID: anaID, Email: "ana@example.com"},
			AsOf:       time.Date(2026, 11, 2, 9, 4, 0, 0, time.UTC),
			Provenance: enricher.Provenance{ActorID: anaID, AuditRecordID: "3d745c36-5f95-44fe-bd38-f9f06abddedb"},
		}
		if ev.Type != enricher.TypePrefix+"output_port_member.added" || ev.PartitionKey != ordersID ||
			ev.Subject != "output_ports/"+ordersDaily+"/members/"+anaID || got != want {
			t.Errorf("%s %s key %s\n got %+v\nwant %+v", ev.Type, ev.Subject, ev.PartitionKey, got, want)
		}
	})
	t.Run("deleted technical asset: owner from the audit trail", func(t *testing.T) {
		ev := oneEvent(t, e, db, recs["56a5e64e-5983-4bb1-bd21-2f9df357ee27"])
		got := decode[enricher.DeletedEntity](t, ev)
		want := enricher.DeletedEntity{ID: "30000000-0000-4000-8000-000000000002", Name: "orders_tmp", DataProductID: ordersID, Deleted: true,
			AsOf:       time.Date(2026, 11, 2, 9, 12, 0, 0, time.UTC),
			Provenance: enricher.Provenance{ActorID: anaID, AuditRecordID: "56a5e64e-5983-4bb1-bd21-2f9df357ee27"}}
		if got != want || ev.PartitionKey != ordersID {
			t.Errorf("got %+v key %s", got, ev.PartitionKey)
		}
	})
	t.Run("role change", func(t *testing.T) {
		got := decode[enricher.TeamMemberChange](t, oneEvent(t, e, db, recs["f2a6ab6d-d050-43f5-a826-7c2f3673508c"]))
		if got.Role != "Owner" || got.User.Email != "bo@example.com" || got.DataProduct.Namespace != "sales-orders" {
			t.Errorf("role_changed: %+v", got)
		}
	})
}

func TestTechnicalAssetData(t *testing.T) {
	db := portalDB(t)
	// A large integer must keep its digits.
	if err := db.Exec(`UPDATE data_outputs SET configuration = '{"prefix":"orders/","bucket":"sales","max_bytes":9007199254740993}' WHERE id = ?`, ordersS3).Error; err != nil {
		t.Fatal(err)
	}
	rec := fixtureRecords(t, db)["0f1e2d3c-4b5a-4697-8887-766554433204"]
	ev := oneEvent(t, enricher.New(), db, rec)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(ev.Data, &raw); err != nil {
		t.Fatal(err)
	}
	if got := string(raw["configuration"]); got != `{"bucket":"sales","max_bytes":9007199254740993,"prefix":"orders/"}` {
		t.Errorf("configuration %s", got)
	}
	got := decode[enricher.TechnicalAsset](t, ev)
	if got.Platform != "aws" || got.Service != "s3" || got.DataProductID != ordersID || got.Namespace != "sales-orders-s3" {
		t.Errorf("technical asset %+v", got)
	}

	if err := db.Exec(`UPDATE data_outputs SET configuration = '[1]' WHERE id = ?`, ordersS3).Error; err != nil {
		t.Fatal(err)
	}
	if _, err := enricher.New().Events(context.Background(), db, rec); err == nil {
		t.Error("a configuration that is not an object was accepted")
	}
}

func TestTeamMemberRemovedKeepsTheEmail(t *testing.T) {
	db := portalDB(t)
	rec := fixtureRecords(t, db)["b7c8d9e0-f1a2-4b3c-8d4e-5f6a7b8c9d13"]
	// A user the portal no longer has: the e-mail comes from the audit row.
	rec.TargetID = "00000000-0000-4000-8000-0000000000ff"
	got := decode[enricher.TeamMemberChange](t, oneEvent(t, enricher.New(), db, rec))
	if got.User.Email != "chi@example.com" || got.Role != "" {
		t.Errorf("removed: %+v", got)
	}
}

func TestRelationWithUnknownEntity(t *testing.T) {
	db := portalDB(t)
	recs := fixtureRecords(t, db)
	e := enricher.New()
	link := recs["a1b2c3d4-e5f6-4789-8abc-def012345605"] // data_output_dataset_link_approved
	link.SubjectID = "30000000-0000-4000-8000-0000000000ff"
	if _, err := e.Events(context.Background(), db, link); !errors.Is(err, enricher.ErrEntityNotFound) {
		t.Errorf("port asset of an unknown technical asset: err = %v, want ErrEntityNotFound", err)
	}
	// Named by the record itself: deleted with the link.
	link.DeletedSubjectIdentifier = "orders_old"
	got := decode[enricher.PortAsset](t, oneEvent(t, e, db, link))
	if !got.TechnicalAsset.Deleted || got.TechnicalAsset.Name != "orders_old" || got.DataProductID != ordersID {
		t.Errorf("port asset of a deleted technical asset: %+v", got)
	}

	added := recs["7a9e2b10-3c4d-4e5f-8a6b-7c8d9e0f1a02"] // role assignment created
	added.TargetID = "00000000-0000-4000-8000-0000000000ff"
	if _, err := e.Events(context.Background(), db, added); !errors.Is(err, enricher.ErrEntityNotFound) {
		t.Errorf("team member without assignment or removal: err = %v, want ErrEntityNotFound", err)
	}
}

// Every input-port event is the input port as its own action left it, on
// every database the portal may use, although the portal's row has moved on
// since: the fixture's first request was approved, revoked, asked for again
// and cancelled before Herald reads it; the showcase's requests were
// approved or denied.
func TestInputPortConsistentWithItsVerb(t *testing.T) {
	at := func(s string) string { return s } // RFC 3339, or "" for null
	tests := []struct {
		id, status, previous, justification string
		requestedBy, requestedOn            string
		approvedBy, approvedOn, validUntil  string
	}{
		// Churn model on Orders daily: the row holds the second request now.
		{"9f8e7d6c-5b4a-4392-8180-7f6e5d4c3b07", "pending", "", "", "chi@example.com", at("2026-11-01T10:05:00Z"), "", "", ""},
		{flippedApproval, "approved", "pending", "", "chi@example.com", at("2026-11-01T10:05:00Z"), "ana@example.com", at("2026-11-01T10:06:00Z"), ""},
		{"64a5b6c7-d8e9-4f0a-9b1c-2d3e4f5a6b10", "revoked", "approved", "", "chi@example.com", at("2026-11-01T10:05:00Z"), "ana@example.com", at("2026-11-01T10:06:00Z"), ""},
		{"acd3d94e-0d51-43d8-9ca8-8b8d9b748f7f", "pending", "revoked", "Retrain churn model", "chi@example.com", at("2026-11-02T09:14:00Z"), "", "", ""},
		{"1daac05a-be83-480d-919d-736513c44c6a", "cancelled", "pending", "Retrain churn model", "chi@example.com", at("2026-11-02T09:14:00Z"), "", "", ""},
		// Orders on Churn scores: requested, then approved until 2027.
		{"92c13f19-d880-4dab-bf22-54d8e5052a24", "pending", "", "Join churn scores to orders", "ana@example.com", at("2026-11-02T09:16:00Z"), "", "", ""},
		{"58a31362-0402-408d-a322-297cb13e340d", "approved", "pending", "Join churn scores to orders", "ana@example.com", at("2026-11-02T09:16:00Z"),
			"chi@example.com", at("2026-11-02T09:17:00Z"), at("2027-11-02T00:00:00Z")},
		// Forecast on Orders daily: requested, then denied.
		{"42128fa9-8eec-4865-a103-b1a960aeb1f1", "pending", "", "Forecast demand", "bo@example.com", at("2026-11-02T09:19:00Z"), "", "", ""},
		{"cb6055e7-3e8f-407c-8602-8d6e210257a1", "denied", "pending", "Forecast demand", "bo@example.com", at("2026-11-02T09:19:00Z"), "", "", ""},
	}
	email := func(u *enricher.UserRef) string {
		if u == nil {
			return ""
		}
		return u.Email
	}
	when := func(v *time.Time) string {
		if v == nil {
			return ""
		}
		return v.Format(time.RFC3339)
	}
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := testdb.New(t, dialect).Gorm
			if err := portalsample.Load(ctx, db); err != nil {
				t.Fatal(err)
			}
			if err := portalsample.LoadShowcase(ctx, db); err != nil {
				t.Fatal(err)
			}
			recs := fixtureRecords(t, db)
			e := enricher.New()
			for _, tt := range tests {
				rec := recs[tt.id]
				got := decode[enricher.InputPort](t, oneEvent(t, e, db, rec))
				previous := ""
				if got.PreviousStatus != nil {
					previous = *got.PreviousStatus
				}
				g := []string{got.Status, previous, got.Justification, email(got.RequestedBy), when(got.RequestedOn),
					email(got.ApprovedBy), when(got.ApprovedOn), when(got.ValidUntil)}
				w := []string{tt.status, tt.previous, tt.justification, tt.requestedBy, tt.requestedOn, tt.approvedBy, tt.approvedOn, tt.validUntil}
				if !slices.Equal(g, w) || !got.AsOf.Equal(rec.CreatedOn) {
					t.Errorf("%s %s:\n got %q as of %s\nwant %q as of %s", rec.Name, rec.ID[:8], g, got.AsOf, w, rec.CreatedOn)
				}
			}
		})
	}
}

// The role assignments of output ports and data products, on every
// database the portal may use.
func TestRoleAssignmentEvents(t *testing.T) {
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := testdb.New(t, dialect).Gorm
			if err := portalsample.Load(ctx, db); err != nil {
				t.Fatal(err)
			}
			if err := portalsample.LoadShowcase(ctx, db); err != nil {
				t.Fatal(err)
			}
			recs := fixtureRecords(t, db)
			e := enricher.New()
			base := enricher.AuditRecord{SubjectID: ordersDaily, SubjectType: "dataset", TargetID: boID, TargetType: "user",
				ActorID: anaID, CreatedOn: time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)}
			port := enricher.OutputPortRef{ID: ordersDaily, Name: "Orders daily", Namespace: "sales-orders-daily",
				DataProductID: ordersID, AccessType: "restricted"}
			bo := enricher.UserRef{ID: boID, Email: "bo@example.com"}
			for i, tt := range []struct {
				action, typ string // typ "": no event on purpose
			}{
				{"dataset_role_assignment_created", "output_port_member.added"},
				{"dataset_role_assignment_approved", "output_port_member.added"},
				{"dataset_role_assignment_updated", "output_port_member.role_changed"},
				{"dataset_role_assignment_removed", "output_port_member.removed"},
				{"dataset_role_assignment_requested", ""},
				{"dataset_role_assignment_denied", ""},
			} {
				rec := base
				rec.ID, rec.Name = fmt.Sprintf("aaaaaaaa-0000-4000-8000-%012d", i+1), tt.action
				evs, err := e.Events(ctx, db, rec)
				if err != nil {
					t.Fatalf("%s: %v", tt.action, err)
				}
				if tt.typ == "" {
					if len(evs) != 0 {
						t.Errorf("%s: %d events, want none", tt.action, len(evs))
					}
					continue
				}
				if len(evs) != 1 {
					t.Fatalf("%s: %d events, want 1", tt.action, len(evs))
				}
				ev := evs[0]
				want := enricher.OutputPortMemberChange{OutputPort: port, User: bo, AsOf: rec.CreatedOn,
					Provenance: enricher.Provenance{ActorID: anaID, AuditRecordID: rec.ID}}
				// The portal records the user as subject when the action
				// starts from the user's side; the event is the same.
				flipped := rec
				flipped.SubjectID, flipped.SubjectType, flipped.TargetID, flipped.TargetType = rec.TargetID, rec.TargetType, rec.SubjectID, rec.SubjectType
				if got := decode[enricher.OutputPortMemberChange](t, ev); ev.Type != enricher.TypePrefix+tt.typ ||
					ev.PartitionKey != ordersID || ev.Subject != "output_ports/"+ordersDaily+"/members/"+boID || got != want {
					t.Errorf("%s: %s %s key %s\n got %+v\nwant %+v", tt.action, ev.Type, ev.Subject, ev.PartitionKey, got, want)
				}
				sameEvent(t, ev, oneEvent(t, e, db, flipped))
			}

			// A team member's role is read when Herald processes the
			// record, so it is as of then: Bo's role, added as Member at
			// 10:00:30, is Owner since 09:21 the next day.
			readAt := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
			late := enricher.New(enricher.WithClock(func() time.Time { return readAt }))
			added := decode[enricher.TeamMemberChange](t, oneEvent(t, late, db, recs["7a9e2b10-3c4d-4e5f-8a6b-7c8d9e0f1a02"]))
			if added.Role != "Owner" || !added.AsOf.Equal(readAt) || added.User != bo {
				t.Errorf("team_member.added: role %q as of %s, user %+v; want Owner as of %s", added.Role, added.AsOf, added.User, readAt)
			}
			removed := recs["b7c8d9e0-f1a2-4b3c-8d4e-5f6a7b8c9d13"]
			if got := decode[enricher.TeamMemberChange](t, oneEvent(t, e, db, removed)); got.Role != "" || !got.AsOf.Equal(removed.CreatedOn) {
				t.Errorf("team_member.removed: role %q as of %s; want none as of the record", got.Role, got.AsOf)
			}
		})
	}
}
