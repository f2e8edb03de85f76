package servicebus

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/heraldhq/herald/adapters"
)

// ContentType is the content type of a message in the Structured binding: the
// body is a CloudEvent in the JSON event format.
const ContentType = "application/cloudevents+json"

// PropertyPrefix prefixes each CloudEvents attribute's application property
// in the Binary binding, as the CloudEvents AMQP binding prescribes
// (cloudEvents:id, cloudEvents:type, ...).
const PropertyPrefix = "cloudEvents:"

// maxIdentifierLen is the longest MessageId, SessionId and PartitionKey
// Service Bus accepts (its quota table: 128 for message and session ids;
// partition keys share the session id's limit).
const maxIdentifierLen = 128

// toMessage maps one event to the Service Bus message the Publisher sends.
// Every error it returns is permanent: the same event would fail the same
// way on every retry.
//
// It is the single definition of the wire mapping. Publish hands its result
// to the SDK; the wire tests convert it to the AMQP message the SDK would put
// on the wire and round-trip that through a real AMQP 1.0 broker.
func (c *config) toMessage(m adapters.Message) (*azservicebus.Message, error) {
	if err := checkIdentifier(m.ID); err != nil {
		return nil, adapters.Permanent(fmt.Errorf("%w: %w", ErrInvalidID, err))
	}
	msg := &azservicebus.Message{
		// Service Bus duplicate detection drops a second message with the
		// same MessageId inside the entity's window.
		MessageID: new(m.ID),
	}
	if m.Type != "" {
		// The AMQP subject (Service Bus "Label"): lets a topic subscription
		// filter on the event type without reading the body.
		msg.Subject = new(m.Type)
	}
	if c.sessions || c.partitioned {
		group := c.partitionOf(m)
		if err := checkIdentifier(group); err != nil {
			return nil, adapters.Permanent(fmt.Errorf("%w: %w", ErrInvalidPartitionKey, err))
		}
		if c.sessions {
			msg.SessionID = new(group)
		}
		if c.partitioned {
			// Equal to SessionId when both are set, as the service requires.
			msg.PartitionKey = new(group)
		}
	}

	switch c.binding {
	case Binary:
		parts, err := decodeBinary(m.ID, m.Payload)
		if err != nil {
			return nil, adapters.Permanent(fmt.Errorf("event %s: %w", m.ID, err))
		}
		msg.ContentType = parts.contentType
		msg.ApplicationProperties = parts.properties
		msg.Body = parts.body
	default:
		msg.ContentType = new(ContentType)
		msg.Body = m.Payload
	}
	return msg, nil
}

// partitionOf is the key that decides an event's session and partition: its
// partition key, or for an event without one its own id, which spreads such
// events freely and matches where duplicate detection on a partitioned
// entity would place them.
func (c *config) partitionOf(m adapters.Message) string {
	if m.PartitionKey != "" {
		return m.PartitionKey
	}
	return m.ID
}

func checkIdentifier(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case utf8.RuneCountInString(s) > maxIdentifierLen:
		return fmt.Errorf("%d characters, Service Bus allows at most %d", utf8.RuneCountInString(s), maxIdentifierLen)
	}
	return nil
}

// binaryParts is an event laid out for the binary content mode.
type binaryParts struct {
	contentType *string
	properties  map[string]any
	body        []byte
}

// decodeBinary splits a CloudEvent in the JSON format into the parts of the
// binary content mode: every attribute but datacontenttype becomes a
// "cloudEvents:" application property, datacontenttype becomes the content
// type, and data (or the decoded data_base64) becomes the body.
//
// Attribute values keep their JSON type: strings stay strings, booleans
// booleans, integers become AMQP longs, as the binding maps them. time is
// sent as its canonical string, which the binding allows, rather than as an
// AMQP timestamp: that type has millisecond precision and would cut the
// stored time short.
func decodeBinary(id string, payload []byte) (binaryParts, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(payload, &members); err != nil {
		return binaryParts{}, fmt.Errorf("%w: not a JSON object: %w", ErrInvalidEvent, err)
	}
	parts := binaryParts{properties: make(map[string]any, len(members))}
	var dataContentType string
	for name, raw := range members {
		switch name {
		case "data", "data_base64":
			continue
		case "datacontenttype":
			if err := json.Unmarshal(raw, &dataContentType); err != nil {
				return binaryParts{}, fmt.Errorf("%w: datacontenttype is not a string", ErrInvalidEvent)
			}
			continue
		}
		if !isAttributeName(name) {
			return binaryParts{}, fmt.Errorf("%w: %q is not a CloudEvents attribute name (lower-case letters and digits)",
				ErrInvalidEvent, name)
		}
		v, err := attributeValue(raw)
		if err != nil {
			return binaryParts{}, fmt.Errorf("%w: attribute %q: %w", ErrInvalidEvent, name, err)
		}
		if v != nil { // null means absent
			parts.properties[PropertyPrefix+name] = v
		}
	}
	for _, required := range []string{"specversion", "id", "source", "type"} {
		if s, ok := parts.properties[PropertyPrefix+required].(string); !ok || s == "" {
			return binaryParts{}, fmt.Errorf("%w: required attribute %q is missing or not a non-empty string", ErrInvalidEvent, required)
		}
	}
	// The relay checks this too; a mismatch would make consumers
	// de-duplicate on another id than the service does.
	if got := parts.properties[PropertyPrefix+"id"]; got != id {
		return binaryParts{}, fmt.Errorf("%w: its id %q differs from the event id %q", ErrInvalidEvent, got, id)
	}
	body, contentType, err := dataBody(members, dataContentType)
	if err != nil {
		return binaryParts{}, err
	}
	parts.body = body
	if contentType != "" {
		parts.contentType = new(contentType)
	}
	return parts, nil
}

// attributeValue turns one JSON attribute value into its AMQP type. nil, nil
// means JSON null.
func attributeValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case nil, string, bool:
		return v, nil
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return nil, fmt.Errorf("number %s is not an integer, the only number type CloudEvents has", v)
		}
		return n, nil
	default:
		return nil, errors.New("objects and arrays are not CloudEvents attribute values")
	}
}

// dataBody returns the body and AMQP content type for the event's data,
// following the JSON event format's rules for reading it back.
func dataBody(members map[string]json.RawMessage, dataContentType string) ([]byte, string, error) {
	data, hasData := members["data"]
	encoded, hasBase64 := members["data_base64"]
	if hasData && string(data) == "null" {
		hasData = false
	}
	switch {
	case hasData && hasBase64:
		return nil, "", fmt.Errorf("%w: both data and data_base64 are present", ErrInvalidEvent)
	case hasBase64:
		var s string
		if err := json.Unmarshal(encoded, &s); err != nil {
			return nil, "", fmt.Errorf("%w: data_base64 is not a string", ErrInvalidEvent)
		}
		body, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, "", fmt.Errorf("%w: data_base64: %w", ErrInvalidEvent, err)
		}
		return body, dataContentType, nil
	case !hasData:
		return nil, dataContentType, nil
	case dataContentType == "":
		// The JSON format implies application/json for data without a
		// datacontenttype; say so, since the body alone no longer shows it.
		return data, "application/json", nil
	case isJSONMediaType(dataContentType) || data[0] != '"':
		// JSON data is carried as the JSON text it was stored as.
		return data, dataContentType, nil
	default:
		// Non-JSON data is stored as a JSON string; the body is its value.
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, "", fmt.Errorf("%w: data: %w", ErrInvalidEvent, err)
		}
		return []byte(s), dataContentType, nil
	}
}

// isAttributeName checks the CloudEvents naming rule, so that application
// property names stay predictable for subscription filters.
func isAttributeName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func isJSONMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}
