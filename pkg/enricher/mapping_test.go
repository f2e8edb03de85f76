package enricher_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
)

// portalActions are the portal's action names as the fixture's README lists
// them: every one must have a rule, mapped or ignored on purpose.
func portalActions() []string {
	var out []string
	add := func(prefix string, suffixes ...string) {
		for _, s := range suffixes {
			out = append(out, prefix+s)
		}
	}
	add("data_product_", "created", "updated", "removed", "setting_updated")
	add("data_product_role_assignment_", "created", "updated", "removed", "requested", "approved", "denied")
	add("data_product_dataset_link_", "requested", "approved", "denied", "removed", "revoked", "cancelled")
	add("dataset_", "created", "updated", "removed", "setting_updated")
	add("dataset_role_assignment_", "created", "updated", "removed", "requested", "approved", "denied")
	add("data_output_", "created", "updated", "removed")
	add("data_output_dataset_link_", "requested", "approved", "denied", "removed")
	return out
}

func TestDefaultRulesCoverEveryPortalAction(t *testing.T) {
	rules := enricher.DefaultRules()
	actions := portalActions()
	if len(actions) != 33 {
		t.Fatalf("%d portal actions, want the README's 33", len(actions))
	}
	for _, a := range actions {
		if _, ok := rules.Lookup(a); !ok {
			t.Errorf("no rule for portal action %s", a)
		}
	}
	if n := len(rules.List()); n != len(actions) {
		t.Errorf("%d rules for %d portal actions: a rule for an action the portal does not have", n, len(actions))
	}
	// Every event type of the catalogue is produced by some action.
	for _, et := range rules.EventTypes() {
		if len(et.Actions) == 0 {
			t.Errorf("%s: no portal action maps to it", et.Type)
		}
	}
	for _, r := range rules.Ignored() {
		if r.Ignore == "" || r.Event != "" {
			t.Errorf("ignored rule %+v", r)
		}
	}
}

func TestEventTypesMatchTheIssueCatalogue(t *testing.T) {
	var got []string
	for _, et := range enricher.DefaultRules().EventTypes() {
		got = append(got, strings.TrimPrefix(et.Type, enricher.TypePrefix))
	}
	want := []string{
		"data_product.created", "data_product.updated", "data_product.deleted",
		"output_port.created", "output_port.updated", "output_port.deleted",
		"technical_asset.created", "technical_asset.updated", "technical_asset.deleted",
		"port_asset.linked", "port_asset.unlinked",
		"input_port.requested", "input_port.approved", "input_port.denied", "input_port.revoked", "input_port.cancelled", "input_port.removed",
		"team_member.added", "team_member.role_changed", "team_member.removed",
		"output_port_member.added", "output_port_member.role_changed", "output_port_member.removed",
	}
	if !slices.Equal(got, want) {
		t.Errorf("event types\n got %v\nwant %v", got, want)
	}
}

func TestParseRules(t *testing.T) {
	t.Run("empty file is the default catalogue", func(t *testing.T) {
		r, err := enricher.ParseRules(strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(r.List(), enricher.DefaultRules().List(), rulesEqual) {
			t.Error("an empty file differs from the default catalogue")
		}
	})
	t.Run("override and add", func(t *testing.T) {
		r, err := enricher.ParseRules(strings.NewReader(`
rules:
  - action: data_product_dataset_link_removed
    event: input_port.revoked
  - action: dataset_data_product_link_approved
    event: input_port.approved
    roles: {consumer: data_product, output_port: dataset}
  - action: data_product_role_assignment_denied
    ignore: still nothing
`))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := r.Lookup("data_product_dataset_link_removed"); got.Event != "input_port.revoked" {
			t.Errorf("override: %+v", got)
		}
		if _, ok := r.Lookup("dataset_data_product_link_approved"); !ok {
			t.Error("added rule missing")
		}
		if _, ok := r.Lookup("data_product_created"); !ok {
			t.Error("a default rule was lost")
		}
	})
	t.Run("extends none", func(t *testing.T) {
		r, err := enricher.ParseRules(strings.NewReader("extends: none\nrules:\n  - action: x_done\n    ignore: nothing to say\n"))
		if err != nil || len(r.List()) != 1 {
			t.Fatalf("rules %v, err %v; want exactly the file's one rule", r.List(), err)
		}
	})
	for _, tt := range []struct{ name, yaml, want string }{
		{"unknown entity kind", "rules:\n  - action: a\n    event: dataset.created\n",
			`rules[0] (action "a"): event "dataset.created": unknown entity kind "dataset"`},
		{"bad verb", "rules:\n  - {action: a, event: data_product.approved}\n  - {action: b, event: output_port.removed}\n",
			`rules[0] (action "a"): event "data_product.approved": data_product has no verb "approved"`},
		{"no verb", "rules:\n  - {action: a, event: data_product}\n", `event "data_product": want <entity>.<verb>`},
		{"unknown role", "rules:\n  - {action: a, event: input_port.approved, roles: {requester: data_product}}\n",
			`rules[0] (action "a"): roles.requester: input_port has no such role`},
		{"roles of one type", "rules:\n  - {action: a, event: input_port.approved, roles: {output_port: data_product}}\n",
			`roles: consumer and output_port are both "data_product"`},
		{"bad portal type", "rules:\n  - {action: a, event: input_port.approved, roles: {consumer: Data-Product}}\n",
			`roles.consumer: "Data-Product" is not a portal entity type`},
		{"event and ignore", "rules:\n  - {action: a, event: data_product.created, ignore: why}\n", "give one, not both"},
		{"neither", "rules:\n  - {action: a}\n", "event or ignore: one is required"},
		{"no action", "rules:\n  - {event: data_product.created}\n", "rules[0] (action \"\"): action: required"},
		{"duplicate", "rules:\n  - {action: a, ignore: x}\n  - {action: a, ignore: y}\n", `rules[1] (action "a"): action listed twice`},
		{"unknown key", "rules:\n  - {action: a, evnt: data_product.created}\n", "evnt"},
		{"bad extends", "extends: builtin\n", `extends: "builtin"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := enricher.ParseRules(strings.NewReader(tt.yaml))
			if !errors.Is(err, enricher.ErrInvalidRules) {
				t.Fatalf("err = %v, want ErrInvalidRules", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("every problem at once", func(t *testing.T) {
		_, err := enricher.ParseRules(strings.NewReader("rules:\n  - {action: a, event: x.y}\n  - {action: b, event: data_product.z}\n"))
		if err == nil || !strings.Contains(err.Error(), "rules[0]") || !strings.Contains(err.Error(), "rules[1]") {
			t.Errorf("err = %v, want both entries named", err)
		}
	})
}

func rulesEqual(a, b enricher.Rule) bool {
	return a.Action == b.Action && a.Event == b.Event && a.Ignore == b.Ignore && len(a.Roles) == len(b.Roles)
}

func TestWithRules(t *testing.T) {
	db := portalDB(t)
	rules, err := enricher.ParseRules(strings.NewReader(`
extends: none
rules:
  - action: data_product_created
    ignore: this deployment announces data products elsewhere
  - action: dataset_created
    event: output_port.updated
`))
	if err != nil {
		t.Fatal(err)
	}
	e := enricher.New(enricher.WithRules(rules))
	recs := fixtureRecords(t, db)
	evs, err := e.Events(context.Background(), db, recs["e0c1f6a2-5d0b-4c1e-9a53-0b7f2d3c4e01"])
	if err != nil || len(evs) != 0 {
		t.Errorf("ignored action: events %v, err %v; want none and no error", evs, err)
	}
	ev := oneEvent(t, e, db, recs["c3d4e5f6-0718-4293-a4b5-c6d7e8f90a03"])
	if ev.Type != enricher.TypePrefix+"output_port.updated" {
		t.Errorf("remapped action: type %s", ev.Type)
	}
	if _, err := e.Events(context.Background(), db, recs["0f1e2d3c-4b5a-4697-8887-766554433204"]); !errors.Is(err, enricher.ErrUnmapped) {
		t.Errorf("action the table lacks: err = %v, want ErrUnmapped", err)
	}
}

// A rule may spell a role's portal type differently, for a portal that
// renamed its audit types.
func TestRuleRoleTypes(t *testing.T) {
	db := portalDB(t)
	rules, err := enricher.NewRules([]enricher.Rule{{Action: "output_port_updated", Event: "output_port.updated", Roles: map[string]string{"output_port": "output_port"}}})
	if err != nil {
		t.Fatal(err)
	}
	rec := validRecord()
	rec.Name, rec.SubjectID, rec.SubjectType = "output_port_updated", ordersDaily, "output_port"
	ev := oneEvent(t, enricher.New(enricher.WithRules(rules)), db, rec)
	if ev.Subject != "output_ports/"+ordersDaily || ev.PartitionKey != ordersID {
		t.Errorf("subject %s key %s", ev.Subject, ev.PartitionKey)
	}
	// A record without the role's type is malformed for the action.
	rec.SubjectType = "dataset"
	if _, err := enricher.New(enricher.WithRules(rules)).Events(context.Background(), db, rec); !errors.Is(err, enricher.ErrInvalidRecord) {
		t.Errorf("err = %v, want ErrInvalidRecord", err)
	}
}

func TestWithCustom(t *testing.T) {
	db := portalDB(t)
	var got enricher.AuditRecord
	custom := func(_ context.Context, _ *gorm.DB, rec enricher.AuditRecord) ([]event.Event, error) {
		got = rec
		ev, err := event.New("com.example.portal.maintenance", "/portal", map[string]string{"by": rec.ActorID})
		return []event.Event{ev}, err
	}
	rec := validRecord()
	rec.Name, rec.SubjectID, rec.SubjectType = "portal_maintenance_started", "", ""
	rec.ActorID = strings.ToUpper(anaID)

	e := enricher.New(enricher.WithCustom(rec.Name, custom))
	ev := oneEvent(t, e, db, rec)
	if ev.Type != "com.example.portal.maintenance" || got.ActorID != anaID {
		t.Errorf("event %s, record seen %+v; want the custom event from the normalised record", ev.Type, got)
	}

	// A custom enricher goes ahead of the rules, and its error is wrapped.
	boom := errors.New("boom")
	e = enricher.New(enricher.WithCustom("data_product_created", func(context.Context, *gorm.DB, enricher.AuditRecord) ([]event.Event, error) {
		return nil, boom
	}))
	if _, err := e.Events(context.Background(), db, validRecord()); !errors.Is(err, boom) || !strings.Contains(err.Error(), validRecord().ID) {
		t.Errorf("err = %v, want boom naming the record", err)
	}

	// nil removes it: the rules apply again.
	e = enricher.New(enricher.WithCustom("data_product_created", custom), enricher.WithCustom("data_product_created", nil))
	if ev := oneEvent(t, e, db, validRecord()); ev.Type != enricher.TypePrefix+"data_product.created" {
		t.Errorf("type %s after removing the custom enricher", ev.Type)
	}
}
