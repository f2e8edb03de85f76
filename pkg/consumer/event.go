package consumer

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"reflect"
	"regexp"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/enricher"
)

// ErrInvalid is wrapped by every error about an event that no retry can fix:
// a body that is not a CloudEvent, a missing required attribute, an id or
// subject too long for the ledger. Dead-letter such a message on your side
// instead of letting the broker redeliver it for ever.
var ErrInvalid = errors.New("invalid event")

// AttributeError reports one missing or malformed CloudEvents attribute.
type AttributeError struct {
	Attribute string // the CloudEvents attribute name, e.g. "id"
	Reason    string
}

func (e *AttributeError) Error() string { return "cloudevent " + e.Attribute + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *AttributeError) Unwrap() error { return ErrInvalid }

// Event is a received Herald event, parsed leniently (forward compatible).
type Event struct {
	ID, Source, Type, Subject, PartitionKey, TraceParent, DataSchema string

	Time time.Time
	Data json.RawMessage
}

// Parse reads a CloudEvents structured-JSON body. It requires specversion
// "1.0", id, source and type (error naming the attribute); it ignores
// attributes and data fields it does not know, so a newer producer never
// breaks an older consumer.
//
// The optional attributes it reads (subject, time, dataschema, partitionkey,
// traceparent) must be strings when present, and time an RFC 3339 timestamp;
// JSON null counts as absent. All problems are reported at once; each is an
// [*AttributeError] and errors.Is(err, [ErrInvalid]) holds.
func Parse(body []byte) (Event, error) {
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(body, &attrs); err != nil || attrs == nil {
		if err == nil {
			err = errors.New("null")
		}
		return Event{}, fmt.Errorf("%w: body is not a JSON object: %w", ErrInvalid, err)
	}

	var errs []error
	bad := func(attr, reason string) { errs = append(errs, &AttributeError{Attribute: attr, Reason: reason}) }
	str := func(attr string, required bool) string {
		raw, ok := attrs[attr]
		if !ok || string(raw) == "null" {
			if required {
				bad(attr, "required")
			}
			return ""
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			bad(attr, "must be a string")
			return ""
		}
		if s == "" && required {
			bad(attr, "must not be empty")
		}
		return s
	}

	if v := str("specversion", true); v != "" && v != "1.0" {
		bad("specversion", fmt.Sprintf("%q is not supported, want %q", v, "1.0"))
	}
	ev := Event{
		ID:           str("id", true),
		Source:       str("source", true),
		Type:         str("type", true),
		Subject:      str("subject", false),
		DataSchema:   str("dataschema", false),
		PartitionKey: str("partitionkey", false),
		TraceParent:  str("traceparent", false),
	}
	if ts := str("time", false); ts != "" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			bad("time", fmt.Sprintf("%q is not an RFC 3339 timestamp", ts))
		}
		ev.Time = t.UTC()
	}
	if raw, ok := attrs["data"]; ok && string(raw) != "null" {
		ev.Data = raw
	}
	if err := errors.Join(errs...); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// Decode returns the event's data as the catalogue's Go type: a value (not a
// pointer) of the [enricher] data type for the event's type, such as
// [enricher.DataProduct] for io.herald.portal.data_product.created or
// [enricher.InputPort] for io.herald.portal.input_port.approved. A deletion
// decodes as [enricher.DeletedDataProduct], [enricher.DeletedOutputPort] or
// [enricher.DeletedTechnicalAsset], which carry the entity's last known
// state for teardown. A created or updated event of an entity that was gone
// by the time Herald processed the audit record decodes as
// [enricher.DeletedEntity] when its data says "deleted": true; a type switch
// tells them apart.
//
// known is false, with a nil error, for a type the catalogue does not have,
// and for a catalogue type whose dataschema names a data version other than
// [enricher.SchemaVersion] (Herald emits both versions during a deprecation
// window; this consumer understands its own): an unknown or newer event type
// must not fail a consumer. An error means the data does not fit the type.
func (e Event) Decode() (data any, known bool, err error) {
	shapes, ok := catalogue()[e.Type]
	if !ok || !e.currentVersion() {
		return nil, false, nil
	}
	if len(e.Data) == 0 {
		return nil, true, fmt.Errorf("event %s (%s): data: absent", e.ID, e.Type)
	}
	t, err := e.shape(shapes)
	if err != nil {
		return nil, true, err
	}
	v := reflect.New(t)
	if err := json.Unmarshal(e.Data, v.Interface()); err != nil {
		return nil, true, fmt.Errorf("event %s (%s): decode data as %s: %w", e.ID, e.Type, t.Name(), err)
	}
	return v.Elem().Interface(), true, nil
}

// DecodeData unmarshals the data into T (unknown fields ignored).
func DecodeData[T any](e Event) (T, error) {
	var v T
	if len(e.Data) == 0 {
		return v, fmt.Errorf("event %s (%s): data: absent", e.ID, e.Type)
	}
	if err := json.Unmarshal(e.Data, &v); err != nil {
		return v, fmt.Errorf("event %s (%s): decode data as %T: %w", e.ID, e.Type, v, err)
	}
	return v, nil
}

var deletedEntity = reflect.TypeFor[enricher.DeletedEntity]()

// catalogue maps every catalogue event type to the Go types its data may
// have, from the same list the JSON Schemas are generated from.
var catalogue = sync.OnceValue(func() map[string][]reflect.Type {
	out := map[string][]reflect.Type{}
	for _, et := range enricher.DefaultRules().EventTypes() {
		for _, s := range et.Shapes {
			out[et.Type] = append(out[et.Type], reflect.TypeOf(s))
		}
	}
	return out
})

// shape picks the type of e's data among the type's shapes: DeletedEntity
// when it is the only one or the data says deleted, the live one otherwise.
func (e Event) shape(shapes []reflect.Type) (reflect.Type, error) {
	if len(shapes) == 1 {
		return shapes[0], nil
	}
	var marker struct {
		Deleted bool `json:"deleted"`
	}
	if err := json.Unmarshal(e.Data, &marker); err != nil {
		return nil, fmt.Errorf("event %s (%s): decode data: %w", e.ID, e.Type, err)
	}
	for _, t := range shapes {
		if (t == deletedEntity) == marker.Deleted {
			return t, nil
		}
	}
	return shapes[0], nil
}

var schemaFile = regexp.MustCompile(`^v[0-9]+\.json$`)

// currentVersion reports whether e's data follows this build's schema
// version. Herald's dataschema ends in <type>/<version>.json; an event
// without one, or with another producer's, is taken to be current.
func (e Event) currentVersion() bool {
	if e.DataSchema == "" {
		return true
	}
	u, err := url.Parse(e.DataSchema)
	if err != nil {
		return true
	}
	dir, file := path.Split(u.Path)
	if !schemaFile.MatchString(file) || path.Base(dir) != e.Type {
		return true
	}
	return file == enricher.SchemaVersion+".json"
}
