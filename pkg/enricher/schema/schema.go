// Package schema generates the published contract of the enricher's events
// from their one source of truth, the Go types of their data (package
// enricher) and its catalogue of event types:
//
//   - schemas/<type>/v1.json: the JSON Schema (draft-07) of each event
//     type's data, the file every event's dataschema names;
//   - schemas/<type>/v1.cloudevent.json: the whole CloudEvent of that type,
//     the envelope (schemas/cloudevent/v1.json) with the type's own
//     constraints and its data schema;
//   - docs/asyncapi.yaml: an AsyncAPI 3.0 document with the channels of
//     every broker adapter;
//   - docs/events.md: the catalogue for people, with an example of each
//     event.
//
// `herald schema export` writes them; a test fails when the checked-in files
// differ from what [Generate] returns, so they are never edited by hand.
//
// Every schema's $id is the URL it is published at, the one events'
// dataschema names (Options.Base, the enricher's schema base, plus its path
// under schemas/), so a standard validator loads the folder, registers each
// file by its $id and resolves every reference without fetching anything.
// References stay relative ("v1.json", "../cloudevent/v1.json"): against
// the $id they name the published URL, and in a checkout, for tools that
// ignore $id, the file beside. The AsyncAPI document carries its own copy
// of every schema under components.schemas, referenced by JSON pointer, so
// it parses alone, from any working directory.
package schema

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
)

// Where Generate puts each document, relative to the repository root.
const (
	SchemaDir    = "schemas"
	EventsDoc    = "docs/events.md"
	AsyncAPIDoc  = "docs/asyncapi.yaml"
	EnvelopePath = "cloudevent/" + enricher.SchemaVersion + ".json"
)

const draft07 = "http://json-schema.org/draft-07/schema#"

// Options say what to document.
type Options struct {
	// Rules decide which portal actions each event type lists; the zero
	// value means enricher.DefaultRules().
	Rules enricher.Rules
	// Examples holds one real event per type, by type (see
	// internal/portalsample.Examples). Every event type needs one.
	Examples map[string]event.Event
	// Base is the URL the schemas directory is published at, the
	// enricher's schema base (enricher.WithSchemaBase): every schema's $id
	// starts with it. Empty means enricher.DefaultSchemaBase, which is what
	// events' dataschema names by default.
	Base string
}

// ErrNoExample is returned when an event type has no example.
var ErrNoExample = errors.New("no example event")

// Generate returns every generated file, by slash-separated path relative to
// the repository root.
func Generate(opts Options) (map[string][]byte, error) {
	if len(opts.Rules.List()) == 0 {
		opts.Rules = enricher.DefaultRules()
	}
	switch {
	case opts.Base == "":
		opts.Base = enricher.DefaultSchemaBase
	case !strings.HasSuffix(opts.Base, "/"):
		opts.Base += "/" // as enricher.WithSchemaBase does, so $id and dataschema agree
	}
	types := opts.Rules.EventTypes()
	for _, et := range types {
		ex, ok := opts.Examples[et.Type]
		if !ok {
			return nil, fmt.Errorf("%s: %w", et.Type, ErrNoExample)
		}
		if ex.Type != et.Type {
			return nil, fmt.Errorf("example of %s has type %s", et.Type, ex.Type)
		}
	}

	schemas, err := schemaFiles(types)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, sf := range schemas {
		b, err := indentJSON(sf.file(opts.Base))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sf.path, err)
		}
		files[SchemaDir+"/"+sf.path] = b
	}
	asyncapi, err := asyncAPI(opts, types, schemas)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", AsyncAPIDoc, err)
	}
	files[AsyncAPIDoc] = asyncapi
	md, err := markdown(opts, types)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EventsDoc, err)
	}
	files[EventsDoc] = md
	return files, nil
}

// schemaFile is one published JSON Schema: where it lives under the schema
// base, and its body, which names the other schemas it uses through ref so
// that the same body serves as a file and inside the AsyncAPI document.
type schemaFile struct {
	path string
	body func(ref func(target string) string) object
}

// file is the published form: $schema and $id, then the body with
// references relative to the file.
func (sf schemaFile) file(base string) object {
	return append(object{{"$schema", draft07}, {"$id", base + sf.path}}, sf.body(sf.relativeRef)...)
}

// relativeRef names target, a path under the schema base, relative to sf.
// Every schema lives one directory down (<dir>/<file>), so a target is
// either beside sf or one directory up and down again.
func (sf schemaFile) relativeRef(target string) string {
	dir, _, _ := strings.Cut(sf.path, "/")
	if tdir, file, _ := strings.Cut(target, "/"); tdir == dir {
		return file
	}
	return "../" + target
}

// schemaFiles lists every published schema: the envelope, then each event
// type's data and whole CloudEvent.
func schemaFiles(types []enricher.EventType) ([]schemaFile, error) {
	noRefs := func(o object) func(func(string) string) object {
		return func(func(string) string) object { return o }
	}
	out := []schemaFile{{EnvelopePath, noRefs(envelopeSchema())}}
	for _, et := range types {
		data, err := dataSchema(et)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", et.Type, err)
		}
		out = append(out,
			schemaFile{enricher.SchemaPath(et.Type), noRefs(data)},
			schemaFile{cloudEventPath(et.Type), func(ref func(string) string) object { return eventSchema(et, ref) }})
	}
	return out, nil
}

// cloudEventPath is where the schema of the whole CloudEvent of type typ
// lives, relative to the schema base.
func cloudEventPath(typ string) string {
	return typ + "/" + enricher.SchemaVersion + ".cloudevent.json"
}

// dataSchema is the schema of an event type's data: its one shape, or any of
// its shapes (live or deleted).
func dataSchema(et enricher.EventType) (object, error) {
	s := object{
		{"title", et.Type + " data, " + enricher.SchemaVersion},
		{"description", et.Summary + " " + et.EntityDoc},
	}
	var shapes []object
	for _, shape := range et.Shapes {
		t := reflect.TypeOf(shape)
		body, err := reflectType(t)
		if err != nil {
			return nil, err
		}
		shapes = append(shapes, append(object{{"title", t.Name()}, {"description", shapeDoc(et, t)}}, body...))
	}
	if len(shapes) == 1 {
		return append(s, shapes[0][2:]...), nil // the shape's body, under the type's title
	}
	s.set("anyOf", shapes)
	return s, nil
}

func shapeDoc(et enricher.EventType, t reflect.Type) string {
	entity := strings.ReplaceAll(et.Entity, "_", " ")
	if t == reflect.TypeFor[enricher.DeletedEntity]() {
		return "The " + entity + " no longer exists in the portal: only its id, the name the portal kept and its owner are known. deleted is true."
	}
	return "The " + entity + " as the portal holds it when Herald processes the audit record."
}

// envelopeSchema is Herald's CloudEvents 1.0 envelope in structured JSON
// mode: the rules package event enforces.
func envelopeSchema() object {
	str := func(desc string, more ...member) object {
		return append(object{{"description", desc}, {"type", "string"}}, more...)
	}
	return object{
		{"title", "Herald CloudEvent, " + enricher.SchemaVersion},
		{"description", "A CloudEvents 1.0 event in structured JSON mode as Herald emits it. Every broker adapter " +
			"delivers these bytes unchanged (NATS, SQS and Service Bus bodies; webhook request bodies)."},
		{"type", "object"},
		{"required", []string{"specversion", "id", "source", "type", "time"}},
		{"properties", object{
			{"specversion", object{{"description", "CloudEvents version."}, {"const", event.SpecVersion}}},
			// Herald's own ids are UUIDv7s, but a producer writing the outbox
			// with SQL may use another version (MySQL's UUID() is a v1), and
			// the relay accepts any: the promise is the form, not the version.
			{"id", str("A canonical lower-case UUID, assigned once; a redelivered event keeps it. Consumers "+
				"de-duplicate by it. Herald creates UUIDv7s; producers writing the outbox themselves may use another version.",
				member{"pattern", uuidPattern})},
			{"source", str("The producing system, a URI-reference, e.g. /portal.", member{"minLength", 1}, member{"format", "uri-reference"})},
			{"type", str("Reverse-DNS, lower case: io.herald.portal.<entity>.<verb>.", member{"pattern", `^[a-z0-9]+([._-][a-z0-9]+)*$`})},
			{"subject", str("The entity the event is about, e.g. data_products/<id>.", member{"minLength", 1})},
			{"time", str("When the change happened in the portal (the start of its transaction), not when Herald saw it.",
				member{"format", "date-time"})},
			{"datacontenttype", str("The media type of data: JSON.", member{"pattern", `^application/([a-z0-9.!#$&^_-]+\+)?json(;.*)?$`})},
			{"dataschema", str("The JSON Schema of data.", member{"format", "uri"})},
			{"partitionkey", str("The ordering key: events with the same key are delivered in order when ordering is on.",
				member{"minLength", 1}, member{"maxLength", event.MaxPartitionKeyLen})},
			{"traceparent", str("The W3C trace context of the producing transaction.",
				member{"pattern", `^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`})},
			{"data", object{{"description", "The event's data; its schema is dataschema."}}},
		}},
	}
}

// eventSchema is the whole CloudEvent of one type; ref names the envelope
// and the data schema.
func eventSchema(et enricher.EventType, ref func(target string) string) object {
	return object{
		{"title", et.Type + " CloudEvent, " + enricher.SchemaVersion},
		{"description", et.Summary},
		{"allOf", []any{
			object{{"$ref", ref(EnvelopePath)}},
			object{
				{"type", "object"},
				{"required", []string{"subject", "datacontenttype", "dataschema", "partitionkey", "data"}},
				{"properties", object{
					{"type", object{{"const", et.Type}}},
					{"subject", object{{"type", "string"}, {"pattern", subjectPattern(et.Subject)}}},
					{"datacontenttype", object{{"const", event.ContentTypeJSON}}},
					{"dataschema", object{{"type", "string"}, {"pattern", "/" + regexp.QuoteMeta(enricher.SchemaPath(et.Type)) + "$"}}},
					{"partitionkey", object{{"description", "The partition key: " + et.PartitionKey + "."}, {"type", "string"}, {"pattern", uuidPattern}}},
					{"data", object{{"$ref", ref(enricher.SchemaPath(et.Type))}}},
				}},
			},
		}},
	}
}

// subjectPattern turns "data_products/{id}" into a regular expression with
// a UUID for each placeholder.
func subjectPattern(pattern string) string {
	uuid := strings.TrimSuffix(strings.TrimPrefix(uuidPattern, "^"), "$")
	var b strings.Builder
	b.WriteByte('^')
	for rest := pattern; rest != ""; {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			b.WriteString(regexp.QuoteMeta(rest))
			break
		}
		end := strings.IndexByte(rest[open:], '}')
		b.WriteString(regexp.QuoteMeta(rest[:open]))
		b.WriteString(uuid)
		rest = rest[open+end+1:]
	}
	b.WriteByte('$')
	return b.String()
}

// byEntity groups event types by entity, in catalogue order.
func byEntity(types []enricher.EventType) [][]enricher.EventType {
	var out [][]enricher.EventType
	for _, et := range types {
		if n := len(out); n > 0 && out[n-1][0].Entity == et.Entity {
			out[n-1] = append(out[n-1], et)
			continue
		}
		out = append(out, []enricher.EventType{et})
	}
	return out
}
