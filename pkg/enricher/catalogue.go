package enricher

import (
	"slices"
)

// SchemaVersion is the version of every event type's data schema. The
// versioning policy (docs/events.md): an additive change (a new optional or
// always-present field, a new event type) keeps the version; a breaking one
// (a field removed, renamed or retyped, a meaning changed) gets a new version
// and a new schema file, and Herald emits both versions during a deprecation
// window.
const SchemaVersion = "v1"

// SchemaPath is where the JSON Schema of the data of events of type typ
// lives, relative to the schema base: "<type>/v1.json".
func SchemaPath(typ string) string { return typ + "/" + SchemaVersion + ".json" }

// EventType describes one event type of the catalogue, for its documentation
// and schemas.
type EventType struct {
	Type         string // e.g. "io.herald.portal.input_port.approved"
	Entity, Verb string // e.g. "input_port", "approved"
	Summary      string // what happened, one sentence
	EntityDoc    string // what the entity is
	Subject      string // the subject's pattern, e.g. "data_products/{id}"
	PartitionKey string // what the partition key is
	KeyWhy       string // why that key, when it is not obvious
	// Actions are the portal actions the rules map to this type; empty when
	// no rule produces it.
	Actions []string
	// Shapes are zero values of the Go types the data may have: one, or the
	// live shape and [DeletedEntity] when the entity may be gone by the time
	// the record is processed.
	Shapes []any
}

// EventTypes lists every event type of the catalogue, entity by entity,
// with the portal actions t maps to each.
func (t Rules) EventTypes() []EventType {
	kinds := kindsByName()
	var out []EventType
	for _, name := range kindOrder() {
		k := kinds[name]
		for _, v := range k.verbs {
			out = append(out, EventType{
				Type:         TypePrefix + k.name + "." + v.name,
				Entity:       k.name,
				Verb:         v.name,
				Summary:      v.doc,
				EntityDoc:    k.doc,
				Subject:      k.subject,
				PartitionKey: k.partitionKey,
				KeyWhy:       k.keyWhy,
				Actions:      sortedKeys(t.actionsFor(k.name, v.name)),
				Shapes:       k.shapes(v.name),
			})
		}
	}
	return out
}

// Ignored returns the rules that ignore an action on purpose, by action.
func (t Rules) Ignored() []Rule {
	return slices.DeleteFunc(t.List(), func(r Rule) bool { return r.Ignore == "" })
}
