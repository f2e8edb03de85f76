package nats

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/pkg/event"
)

// Binding is the CloudEvents NATS protocol binding's content mode.
// Structured: header Content-Type application/cloudevents+json and the
// stored event as the body. Binary: the event's data as the body, every other
// attribute as a "ce-" header (ce-id, ce-type, …, ce-partitionkey,
// ce-traceparent), Content-Type the datacontenttype; publishing parses each
// payload, and one that is not a valid CloudEvent fails permanently.
type Binding = adapters.Binding

// The two content modes.
const (
	Structured = adapters.Structured
	Binary     = adapters.Binary
)

// ParseBinding is adapters.ParseBinding.
func ParseBinding(s string) (Binding, error) { return adapters.ParseBinding(s) }

// ErrNotCloudEvent is wrapped (with adapters.ErrPermanent) when the binary
// binding meets a payload it cannot split into attributes and data.
var ErrNotCloudEvent = errors.New("nats: payload is not a valid CloudEvent")

// Header names of the binding's binary mode.
const (
	// headerPrefix precedes every CloudEvents attribute name in binary mode.
	headerPrefix = "ce-"
	// headerContentType carries the datacontenttype in binary mode as well
	// as ce-datacontenttype: the binding tells the modes apart by whether
	// Content-Type starts with application/cloudevents, and generic NATS
	// tooling reads Content-Type to decode a body.
	headerContentType = "Content-Type"
)

// newMessage lays out one event per the configured binding. Every error
// is about the event itself, and so permanent.
func newMessage(b Binding, subject, id, traceParent string, payload []byte) (*natsgo.Msg, error) {
	var msg *natsgo.Msg
	if b != Binary {
		msg = &natsgo.Msg{
			Subject: subject,
			Header: natsgo.Header{
				jetstream.MsgIDHeader: []string{id},
				headerContentType:     []string{ContentType},
			},
			Data: payload,
		}
	} else {
		header, data, err := binaryParts(id, payload)
		if err != nil {
			return nil, err
		}
		msg = &natsgo.Msg{Subject: subject, Header: header, Data: data}
	}
	if traceParent != "" {
		// W3C Trace Context's header, which tracing middleware on the
		// consumer side reads whatever the binding.
		msg.Header[headerTraceParent] = []string{traceParent}
	}
	return msg, nil
}

const headerTraceParent = "traceparent"

// binaryParts splits a structured CloudEvent into binary-mode headers and
// body. The event is validated with event.Parse, but the header values are
// taken from the payload's own JSON text, so that a time or an extension
// reaches the consumer exactly as the producer wrote it.
func binaryParts(id string, payload []byte) (natsgo.Header, []byte, error) {
	ev, err := event.Parse(payload)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotCloudEvent, err)
	}
	// The relay checks this too; a mismatch here would make consumers
	// de-duplicate on a different id than the stream does.
	if ev.ID != id {
		return nil, nil, fmt.Errorf("%w: its id %q differs from the event id %q", ErrNotCloudEvent, ev.ID, id)
	}
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(payload, &attrs); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotCloudEvent, err)
	}
	header := natsgo.Header{jetstream.MsgIDHeader: []string{id}}
	for name, raw := range attrs {
		if name == "data" || name == "data_base64" {
			continue
		}
		value, ok, err := attributeValue(name, raw)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			header[headerPrefix+name] = []string{percentEncode(value)}
		}
	}
	data, err := dataBytes(attrs["data"], attrs["data_base64"])
	if err != nil {
		return nil, nil, err
	}
	if ct := ev.DataContentType; ct != "" && isPrintableASCII(ct) {
		header[headerContentType] = []string{ct}
	}
	return header, data, nil
}

// attributeValue returns an attribute's canonical string form, or false
// for a null (which the JSON format defines as absent).
func attributeValue(name string, raw json.RawMessage) (string, bool, error) {
	if !isAttributeName(name) {
		return "", false, fmt.Errorf("%w: %q is not a CloudEvents attribute name (lower-case letters and digits)",
			ErrNotCloudEvent, name)
	}
	raw = bytes.TrimSpace(raw)
	switch {
	case isJSONNull(raw):
		return "", false, nil
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, fmt.Errorf("%w: attribute %s: %w", ErrNotCloudEvent, name, err)
		}
		return s, true, nil
	case string(raw) == "true" || string(raw) == "false":
		return string(raw), true, nil
	case len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'):
		return string(raw), true, nil // a JSON number's text is its canonical form
	default:
		return "", false, fmt.Errorf("%w: attribute %s is an object or array, which no attribute type allows",
			ErrNotCloudEvent, name)
	}
}

// dataBytes returns the body of a binary-mode message: data's JSON text as
// it stands in the payload (not re-encoded), or data_base64 decoded.
func dataBytes(data, dataBase64 json.RawMessage) ([]byte, error) {
	hasData := data != nil && !isJSONNull(data)
	hasBase64 := dataBase64 != nil && !isJSONNull(dataBase64)
	switch {
	case hasData && hasBase64:
		return nil, fmt.Errorf("%w: both data and data_base64 are set", ErrNotCloudEvent)
	case hasData:
		return data, nil
	case hasBase64:
		var s string
		if err := json.Unmarshal(dataBase64, &s); err != nil {
			return nil, fmt.Errorf("%w: data_base64 is not a string: %w", ErrNotCloudEvent, err)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: data_base64: %w", ErrNotCloudEvent, err)
		}
		return b, nil
	default:
		return nil, nil
	}
}

func isJSONNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// isAttributeName checks the CloudEvents naming rule, which also keeps the
// header name free of anything (':', spaces, line breaks) that would break
// the header block.
func isAttributeName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// percentEncode encodes a header value as the binding requires: space,
// '"', '%' and every byte outside printable ASCII become %XY, so that a
// subject with a line break or non-ASCII text survives the header block
// and decodes back exactly (url.PathUnescape does it).
func percentEncode(s string) string {
	if !strings.ContainsFunc(s, needsEncoding) {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEncoding(rune(c)) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0x0f])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// needsEncoding reports whether a byte (or, in ContainsFunc, a rune: any
// non-ASCII rune needs it too) must be percent-encoded.
func needsEncoding(r rune) bool {
	return r <= ' ' || r >= 0x7f || r == '"' || r == '%'
}
