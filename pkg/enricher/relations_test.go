package enricher_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/portalsample"
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
	for _, tt := range []struct {
		id, status string
		previous   *string
	}{
		{"9f8e7d6c-5b4a-4392-8180-7f6e5d4c3b07", "pending", nil},
		{flippedApproval, "approved", &pending},
		{"64a5b6c7-d8e9-4f0a-9b1c-2d3e4f5a6b10", "revoked", &approved},
	} {
		rec := recs[tt.id]
		got := decode[enricher.InputPort](t, oneEvent(t, e, db, rec))
		want := enricher.InputPort{
			ID:             "40000000-0000-4000-8000-000000000001",
			DataProduct:    enricher.EntityRef{ID: churnID, Name: "Churn model", Namespace: "churn-model"},
			OutputPort:     enricher.EntityRef{ID: ordersDaily, Name: "Orders daily", Namespace: "sales-orders-daily", DataProductID: ordersID},
			Status:         tt.status,
			PreviousStatus: tt.previous,
			Justification:  "Train churn model",
			RequestedBy:    &enricher.UserRef{ID: chiID, Email: "chi@example.com"},
			RequestedOn:    at("2026-11-01T10:05:00Z"),
			ApprovedBy:     &enricher.UserRef{ID: anaID, Email: "ana@example.com"},
			ApprovedOn:     at("2026-11-01T10:06:00Z"),
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
			"3d745c36-5f95-44fe-bd38-f9f06abddedb", // dataset_role_assignment_created
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
		if got.ID != "" || got.Status != "removed" || got.RequestedBy != nil || *got.PreviousStatus != "pending" ||
			ev.PartitionKey != "10000000-0000-4000-8000-000000000004" {
			t.Errorf("removed: %s key %s", ev.Data, ev.PartitionKey)
		}
	})
	t.Run("deleted technical asset: owner from the audit trail", func(t *testing.T) {
		ev := oneEvent(t, e, db, recs["56a5e64e-5983-4bb1-bd21-2f9df357ee27"])
		got := decode[enricher.DeletedEntity](t, ev)
		want := enricher.DeletedEntity{ID: "30000000-0000-4000-8000-000000000002", Name: "orders_tmp", DataProductID: ordersID, Deleted: true,
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
