package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// SpecVersion is the CloudEvents specification version Herald emits.
const SpecVersion = "1.0"

// ContentTypeJSON is the datacontenttype of every event Herald creates.
const ContentTypeJSON = "application/json"

// MaxPartitionKeyLen bounds the ordering key so it fits every broker's group id
// (SQS MessageGroupId allows 128 characters; Service Bus SessionId 128).
const MaxPartitionKeyLen = 128

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid event")

// Event is a CloudEvents 1.0 event with JSON data.
type Event struct {
	ID              string
	Source          string
	Type            string
	Subject         string
	Time            time.Time
	DataContentType string
	DataSchema      string
	Data            json.RawMessage
	PartitionKey    string
	TraceParent     string
}

// Option sets an optional attribute in [New].
type Option func(*Event)

// WithSubject sets the subject: the entity the event is about, e.g.
// "data_products/<id>" or, for a nested one, "data_products/<id>/members/<user>".
func WithSubject(subject string) Option { return func(e *Event) { e.Subject = subject } }

// WithTime sets when the change happened. The default is the time New is called.
func WithTime(t time.Time) Option { return func(e *Event) { e.Time = t } }

// WithPartitionKey sets the ordering key.
func WithPartitionKey(key string) Option { return func(e *Event) { e.PartitionKey = key } }

// WithTraceParent sets the W3C traceparent of the producing transaction.
func WithTraceParent(tp string) Option { return func(e *Event) { e.TraceParent = tp } }

// WithDataSchema sets the URI of the JSON Schema that data follows.
func WithDataSchema(uri string) Option { return func(e *Event) { e.DataSchema = uri } }

// WithID replaces the generated id. It exists for importers that must keep an
// id assigned elsewhere; everything else should let New assign a UUIDv7.
func WithID(id string) Option { return func(e *Event) { e.ID = id } }

// New creates a valid event with a fresh UUIDv7 id. data is marshalled to JSON
// unless it already is JSON ([]byte or json.RawMessage).
func New(typ, source string, data any, opts ...Option) (Event, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, fmt.Errorf("new event id: %w", err)
	}
	raw, err := marshalData(data)
	if err != nil {
		return Event{}, fmt.Errorf("event data: %w", err)
	}
	e := Event{
		ID:              id.String(),
		Source:          source,
		Type:            typ,
		Time:            time.Now().UTC(),
		DataContentType: ContentTypeJSON,
		Data:            raw,
	}
	for _, opt := range opts {
		opt(&e)
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

func marshalData(data any) (json.RawMessage, error) {
	switch d := data.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return d, nil
	case []byte:
		return json.RawMessage(d), nil
	default:
		return json.Marshal(d)
	}
}

// FieldError reports one invalid attribute.
type FieldError struct {
	Field  string // the CloudEvents attribute name, e.g. "type"
	Reason string
}

func (e *FieldError) Error() string { return "event " + e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

var (
	typePattern        = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*$`)
	traceParentPattern = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)
)

// Validate checks every attribute and returns all problems at once, each a
// *FieldError naming the attribute.
func (e Event) Validate() error {
	var errs []error
	bad := func(field, reason string) { errs = append(errs, &FieldError{Field: field, Reason: reason}) }

	switch {
	case e.ID == "":
		bad("id", "required")
	case !isCanonicalUUID(e.ID):
		bad("id", fmt.Sprintf("%q is not a UUID in canonical lower-case form", e.ID))
	}
	if e.Source == "" {
		bad("source", "required")
	} else if _, err := url.Parse(e.Source); err != nil {
		bad("source", fmt.Sprintf("%q is not a URI-reference", e.Source))
	}
	switch {
	case e.Type == "":
		bad("type", "required")
	case !typePattern.MatchString(e.Type):
		// The type becomes a broker subject or routing key, so keep it to
		// characters every broker accepts in one token sequence.
		bad("type", fmt.Sprintf("%q must be lower-case letters, digits and single '.', '_' or '-' separators", e.Type))
	}
	if e.Time.IsZero() {
		bad("time", "required")
	}
	if e.DataSchema != "" {
		if u, err := url.Parse(e.DataSchema); err != nil || !u.IsAbs() {
			bad("dataschema", fmt.Sprintf("%q is not an absolute URI", e.DataSchema))
		}
	}
	if len(e.Data) > 0 {
		if !isJSONContentType(e.DataContentType) {
			bad("datacontenttype", fmt.Sprintf("%q: Herald carries JSON data only", e.DataContentType))
		}
		if !json.Valid(e.Data) {
			bad("data", "is not valid JSON")
		}
	}
	if len(e.PartitionKey) > MaxPartitionKeyLen {
		bad("partitionkey", fmt.Sprintf("longer than %d bytes", MaxPartitionKeyLen))
	}
	if e.TraceParent != "" && !validTraceParent(e.TraceParent) {
		bad("traceparent", fmt.Sprintf("%q is not a W3C traceparent", e.TraceParent))
	}
	return errors.Join(errs...)
}

func isCanonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s // lower case only: brokers compare ids byte for byte
}

func isJSONContentType(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == ContentTypeJSON || strings.HasSuffix(mt, "+json")
}

func validTraceParent(tp string) bool {
	if !traceParentPattern.MatchString(tp) || strings.HasPrefix(tp, "ff") {
		return false
	}
	// An all-zero trace id or span id is invalid per W3C Trace Context.
	return tp[3:35] != strings.Repeat("0", 32) && tp[36:52] != strings.Repeat("0", 16)
}

// wire is the structured-mode JSON form. Field order is fixed so the same
// event always serializes to the same bytes.
type wire struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            string          `json:"time,omitempty"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	DataSchema      string          `json:"dataschema,omitempty"`
	PartitionKey    string          `json:"partitionkey,omitempty"`
	TraceParent     string          `json:"traceparent,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
}

// MarshalJSON encodes the event in CloudEvents structured JSON. It does not
// validate; use [Event.Validate] first, as the outbox does.
func (e Event) MarshalJSON() ([]byte, error) {
	w := wire{
		SpecVersion:     SpecVersion,
		ID:              e.ID,
		Source:          e.Source,
		Type:            e.Type,
		Subject:         e.Subject,
		DataContentType: e.DataContentType,
		DataSchema:      e.DataSchema,
		PartitionKey:    e.PartitionKey,
		TraceParent:     e.TraceParent,
		Data:            compactJSON(e.Data),
	}
	if !e.Time.IsZero() {
		w.Time = e.Time.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(w)
}

func compactJSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw // Validate reports it; keep the bytes as given.
	}
	return buf.Bytes()
}

// UnmarshalJSON decodes structured JSON. Unknown extension attributes are
// ignored so that a consumer built today reads tomorrow's events.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("decode cloudevent: %w", err)
	}
	if w.SpecVersion != SpecVersion {
		return &FieldError{Field: "specversion", Reason: fmt.Sprintf("%q is not supported, want %q", w.SpecVersion, SpecVersion)}
	}
	var t time.Time
	if w.Time != "" {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, w.Time); err != nil {
			return &FieldError{Field: "time", Reason: fmt.Sprintf("%q is not RFC 3339", w.Time)}
		}
	}
	*e = Event{
		ID:              w.ID,
		Source:          w.Source,
		Type:            w.Type,
		Subject:         w.Subject,
		Time:            t,
		DataContentType: w.DataContentType,
		DataSchema:      w.DataSchema,
		Data:            w.Data,
		PartitionKey:    w.PartitionKey,
		TraceParent:     w.TraceParent,
	}
	return nil
}

// Parse decodes structured JSON and validates the result.
func Parse(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, err
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}
