package enricher

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// TypePrefix starts the type of every event mapped from the portal.
const TypePrefix = "io.herald.portal."

// Verbs of the entity events (data products, output ports, technical
// assets). The relation kinds have verbs of their own; [EventTypes] lists
// every one.
const (
	VerbCreated = "created"
	VerbUpdated = "updated"
	VerbDeleted = "deleted"
)

// Portal entity types as the audit table names them in subject_type and
// target_type.
const (
	portalDataProduct = "data_product"
	portalDataset     = "dataset"
	portalDataOutput  = "data_output"
	portalUser        = "user"
)

// isPortalType reports whether s can be a subject_type/target_type: the
// portal writes lower-case snake case (data_product, dataset, user). A rule
// may name a type Herald has not seen, for a portal that renamed one.
func isPortalType(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == ""
}

// ErrInvalidRules is wrapped by every error about a mapping table: an
// unknown entity kind or verb, a role the kind does not have, a duplicate
// action. The message names the entry, e.g.
// `rules[3] (action "x"): event "foo.created": unknown entity kind "foo"`.
var ErrInvalidRules = errors.New("invalid mapping rules")

// Rule maps one portal action, declaratively, to one event type or, with
// Ignore, deliberately to none. It is what a mapping file holds:
//
//	rules:
//	  - action: data_product_dataset_link_approved
//	    event: input_port.approved
//	    roles: {consumer: data_product, output_port: dataset}  # optional: the kind's defaults
//	  - action: data_product_role_assignment_requested
//	    ignore: a pending request grants nothing; the approval adds the member
type Rule struct {
	// Action is the portal's action name (the audit table's events.name).
	Action string `yaml:"action"`
	// Event is "<entity>.<verb>", e.g. "input_port.approved"; the event type
	// is TypePrefix + Event.
	Event string `yaml:"event,omitempty"`
	// Roles says which portal entity type (subject_type/target_type) plays
	// each role of the entity kind. The enricher finds each role by its type
	// on whichever side of the record it is, which is what normalises the
	// portal's inconsistent orientation. Roles left out take the kind's
	// default.
	Roles map[string]string `yaml:"roles,omitempty"`
	// Ignore, instead of Event, marks an action that is known and on purpose
	// yields no event; the text says why and is shown in the docs. Such a
	// record enriches to zero events and no error, unlike an action without
	// a rule, which fails with ErrUnmapped.
	Ignore string `yaml:"ignore,omitempty"`
}

// Rules is a validated mapping table: what every portal action becomes. Build
// one with [DefaultRules], [NewRules] or [ParseRules]; the zero value maps
// nothing. A Rules value is immutable and safe to share.
type Rules struct {
	byAction map[string]rule
}

// rule is a validated Rule.
type rule struct {
	Rule
	kind  *kind             // nil for an ignored action
	verb  string            // the verb of Event
	roles map[string]string // every role of the kind → portal type
}

func (r rule) eventType() string { return TypePrefix + r.kind.name + "." + r.verb }

// NewRules validates rules and returns them as a table. Every problem is
// reported, each naming its entry; errors.Is(err, ErrInvalidRules) holds.
func NewRules(rules []Rule) (Rules, error) {
	kinds := kindsByName()
	t := Rules{byAction: make(map[string]rule, len(rules))}
	var errs []error
	for i, r := range rules {
		v, err := validateRule(kinds, r)
		if err == nil {
			if _, dup := t.byAction[r.Action]; dup {
				err = errors.New("action listed twice")
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: rules[%d] (action %q): %w", ErrInvalidRules, i, r.Action, err))
			continue
		}
		t.byAction[r.Action] = v
	}
	if len(errs) > 0 {
		return Rules{}, errors.Join(errs...)
	}
	return t, nil
}

func validateRule(kinds map[string]*kind, r Rule) (rule, error) {
	switch {
	case strings.TrimSpace(r.Action) == "":
		return rule{}, errors.New("action: required")
	case r.Event == "" && r.Ignore == "":
		return rule{}, errors.New("event or ignore: one is required")
	case r.Event != "" && r.Ignore != "":
		return rule{}, errors.New("event and ignore: give one, not both")
	case r.Ignore != "":
		if len(r.Roles) > 0 {
			return rule{}, errors.New("roles: an ignored action has none")
		}
		return rule{Rule: r}, nil
	}
	entity, verb, ok := strings.Cut(r.Event, ".")
	k := kinds[entity]
	switch {
	case !ok:
		return rule{}, fmt.Errorf("event %q: want <entity>.<verb>, e.g. input_port.approved", r.Event)
	case k == nil:
		return rule{}, fmt.Errorf("event %q: unknown entity kind %q (want one of %s)", r.Event, entity, strings.Join(slices.Sorted(maps.Keys(kinds)), ", "))
	case !slices.ContainsFunc(k.verbs, func(v verbSpec) bool { return v.name == verb }):
		return rule{}, fmt.Errorf("event %q: %s has no verb %q (want one of %s)", r.Event, entity, verb, strings.Join(k.verbNames(), ", "))
	}
	roles := make(map[string]string, len(k.roles))
	for _, ro := range k.roles {
		roles[ro.name] = ro.portalType
	}
	for _, name := range slices.Sorted(maps.Keys(r.Roles)) {
		typ := r.Roles[name]
		if _, known := roles[name]; !known {
			return rule{}, fmt.Errorf("roles.%s: %s has no such role (want one of %s)", name, entity, strings.Join(k.roleNames(), ", "))
		}
		if !isPortalType(typ) {
			return rule{}, fmt.Errorf("roles.%s: %q is not a portal entity type (lower-case snake case, e.g. %s)", name, typ, roles[name])
		}
		roles[name] = typ
	}
	// Roles are found by type, so two roles of one type could not be told
	// apart on a record.
	seen := map[string]string{}
	for _, ro := range k.roles {
		typ := roles[ro.name]
		if other, dup := seen[typ]; dup {
			return rule{}, fmt.Errorf("roles: %s and %s are both %q; each role needs a type of its own", other, ro.name, typ)
		}
		seen[typ] = ro.name
	}
	return rule{Rule: r, kind: k, verb: verb, roles: roles}, nil
}

// DefaultRules is the built-in catalogue: every portal action Herald knows,
// mapped or ignored on purpose. It is valid by construction (a test proves
// it), so it returns no error.
func DefaultRules() Rules {
	t, err := NewRules(defaultRules())
	if err != nil {
		// Only a broken build reaches this; the package's tests catch it.
		panic(err)
	}
	return t
}

// List returns the table's rules ordered by action.
func (t Rules) List() []Rule {
	out := make([]Rule, 0, len(t.byAction))
	for _, a := range slices.Sorted(maps.Keys(t.byAction)) {
		r := t.byAction[a]
		out = append(out, Rule{Action: r.Action, Event: r.Event, Roles: maps.Clone(r.Roles), Ignore: r.Ignore})
	}
	return out
}

// Lookup returns the rule for action, if any.
func (t Rules) Lookup(action string) (Rule, bool) {
	r, ok := t.byAction[action]
	if !ok {
		return Rule{}, false
	}
	return Rule{Action: r.Action, Event: r.Event, Roles: maps.Clone(r.Roles), Ignore: r.Ignore}, true
}

// ruleFile is the YAML form of a mapping file.
type ruleFile struct {
	// Extends is "default" (the built-in catalogue, which the file's rules
	// then override action by action) or "none" (only the file's rules).
	Extends string `yaml:"extends"`
	Rules   []Rule `yaml:"rules"`
}

// ParseRules reads a mapping file:
//
//	extends: default        # default | none; default when left out
//	rules:
//	  - action: data_product_dataset_link_removed
//	    event: input_port.revoked
//	  - action: dataset_role_assignment_created
//	    ignore: this deployment grants output-port roles elsewhere
//
// With "extends: default" each rule replaces the built-in rule of the same
// action or adds one. Unknown keys, an unknown entity kind, a bad verb or
// role are errors naming the entry (errors.Is(err, ErrInvalidRules)), so a
// typo fails at boot, not at the first audit record it would have mapped.
func ParseRules(r io.Reader) (Rules, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Rules{}, fmt.Errorf("read mapping rules: %w", err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return Rules{}, fmt.Errorf("%w: %w", ErrInvalidRules, err)
	}
	rules := f.Rules
	switch f.Extends {
	case "", "default":
		merged := defaultRules()
		for _, r := range f.Rules {
			if i := slices.IndexFunc(merged, func(d Rule) bool { return d.Action == r.Action }); i >= 0 {
				merged = slices.Delete(merged, i, i+1)
			}
		}
		// The file's rules come first so that errors number its entries.
		rules = append(slices.Clone(f.Rules), merged...)
	case "none":
	default:
		return Rules{}, fmt.Errorf("%w: extends: %q: want default or none", ErrInvalidRules, f.Extends)
	}
	return NewRules(rules)
}

// defaultRules is the built-in catalogue. Portal names are legacy: "dataset"
// is an output port, "data_output" a technical asset, a
// data_products_datasets row an input port, a data_outputs_datasets row a
// technical asset published on an output port (a port asset).
func defaultRules() []Rule {
	ev := func(action, event string) Rule { return Rule{Action: action, Event: event} }
	ignore := func(action, why string) Rule { return Rule{Action: action, Ignore: why} }
	return []Rule{
		ev("data_product_created", "data_product.created"),
		ev("data_product_updated", "data_product.updated"),
		// Consumers see settings as part of the data product, so a setting
		// change is a data product update carrying the new settings.
		ev("data_product_setting_updated", "data_product.updated"),
		ev("data_product_removed", "data_product.deleted"),

		ev("dataset_created", "output_port.created"),
		ev("dataset_updated", "output_port.updated"),
		ev("dataset_setting_updated", "output_port.updated"),
		ev("dataset_removed", "output_port.deleted"),

		ev("data_output_created", "technical_asset.created"),
		ev("data_output_updated", "technical_asset.updated"),
		ev("data_output_removed", "technical_asset.deleted"),

		ignore("data_output_dataset_link_requested", "a technical asset waiting to be published on an output port changes nothing a consumer provisions; the approval emits port_asset.linked"),
		ev("data_output_dataset_link_approved", "port_asset.linked"),
		ignore("data_output_dataset_link_denied", "a refused publication leaves the output port as it was"),
		ev("data_output_dataset_link_removed", "port_asset.unlinked"),

		ev("data_product_dataset_link_requested", "input_port.requested"),
		ev("data_product_dataset_link_approved", "input_port.approved"),
		ev("data_product_dataset_link_denied", "input_port.denied"),
		ev("data_product_dataset_link_revoked", "input_port.revoked"),
		ev("data_product_dataset_link_cancelled", "input_port.cancelled"),
		ev("data_product_dataset_link_removed", "input_port.removed"),

		ev("data_product_role_assignment_created", "team_member.added"),
		ev("data_product_role_assignment_approved", "team_member.added"),
		ev("data_product_role_assignment_updated", "team_member.role_changed"),
		ev("data_product_role_assignment_removed", "team_member.removed"),
		ignore("data_product_role_assignment_requested", "a pending request to join grants nothing; its approval emits team_member.added"),
		ignore("data_product_role_assignment_denied", "a refused request leaves the team as it was"),

		// Output ports have role assignments of their own, and their owners
		// decide who is granted access: consumers need them as much as a data
		// product's team.
		ev("dataset_role_assignment_created", "output_port_member.added"),
		ev("dataset_role_assignment_approved", "output_port_member.added"),
		ev("dataset_role_assignment_updated", "output_port_member.role_changed"),
		ev("dataset_role_assignment_removed", "output_port_member.removed"),
		ignore("dataset_role_assignment_requested", "a pending request for a role on an output port grants nothing; its approval emits output_port_member.added"),
		ignore("dataset_role_assignment_denied", "a refused request leaves the output port's members as they were"),
	}
}
