package sqs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/heraldhq/herald/adapters"
)

// ContentType is the content-type message attribute of every message: the
// body is a CloudEvent in structured JSON mode.
const ContentType = "application/cloudevents+json"

// Message attribute names. The CloudEvents attributes carry the "ce-" prefix
// of the CloudEvents HTTP binding, since SQS has no binding of its own.
const (
	AttrContentType  = "content-type"
	AttrSpecVersion  = "ce-specversion"
	AttrID           = "ce-id"
	AttrType         = "ce-type"
	AttrSource       = "ce-source"
	AttrSubject      = "ce-subject"
	AttrTime         = "ce-time"
	AttrPartitionKey = "ce-partitionkey"
	AttrTraceParent  = "ce-traceparent"
)

// stringType is the DataType of every attribute; SQS counts it in the size.
const stringType = "String"

// hashedPrefix marks a group or deduplication id that is the SHA-256 of a
// value SQS would refuse (a space, a non-ASCII character, over 128 bytes).
const hashedPrefix = "herald-sha256-"

// entry is one message ready to go into a SendMessageBatch call.
type entry struct {
	index int    // position in the Publish call's msgs
	group string // what per-key order is kept by: MessageGroupId on FIFO, partition key on standard
	size  int    // as SQS counts it against its limits
	input sqstypes.SendMessageBatchRequestEntry
}

// prepare turns a message into a batch entry, refusing what SQS could never
// accept; every error it returns is permanent.
func (p *Publisher) prepare(index int, m adapters.Message) (*entry, error) {
	if m.ID == "" {
		return nil, adapters.Permanent(fmt.Errorf("%w: empty", ErrInvalidID))
	}
	if err := checkBody(m.Payload); err != nil {
		return nil, adapters.Permanent(err)
	}
	attrs := attributes(m)
	size := messageSize(m.Payload, attrs)
	if size > p.maxMessageSize {
		return nil, adapters.Permanent(fmt.Errorf("%w: %d bytes with message attributes, the limit is %d bytes (%s)",
			ErrTooLarge, size, p.maxMessageSize, p.limitSource))
	}
	e := &entry{
		index: index,
		size:  size,
		group: p.orderKey(m),
		input: sqstypes.SendMessageBatchRequestEntry{
			// Unique within the call and within the 80-character charset.
			Id:                aws.String(strconv.Itoa(index)),
			MessageBody:       aws.String(string(m.Payload)),
			MessageAttributes: attrs,
		},
	}
	if p.fifo {
		e.input.MessageGroupId = aws.String(e.group)
		e.input.MessageDeduplicationId = aws.String(token(m.ID))
	}
	return e, nil
}

// orderKey is what a message's order is kept by, and held back by: its
// MessageGroupId on a FIFO queue, its partition key on a standard one.
func (p *Publisher) orderKey(m adapters.Message) string {
	if p.fifo {
		return p.groupFor(m)
	}
	return m.PartitionKey
}

// groupFor picks a FIFO message's group: its partition key, else the
// configured fallback, else its own id (no order with other keyless events).
func (p *Publisher) groupFor(m adapters.Message) string {
	switch {
	case m.PartitionKey != "":
		return token(m.PartitionKey)
	case p.cfg.groupID != "":
		return p.cfg.groupID
	default:
		return token(m.ID)
	}
}

// token returns s if SQS accepts it as a MessageGroupId or
// MessageDeduplicationId, and otherwise a stable hash of it, so that equal
// keys still share a group and a re-published id is still dropped.
func token(s string) string {
	if validToken(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return hashedPrefix + hex.EncodeToString(sum[:])
}

// validToken reports whether s is 1 to 128 characters of printable ASCII
// other than space: what SQS allows in group and deduplication ids.
func validToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// checkBody refuses a body SQS would reject, or that the SDK's JSON encoding
// would silently alter (invalid UTF-8 becomes U+FFFD): either way the event
// could never arrive byte for byte.
func checkBody(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", ErrInvalidBody)
	}
	for i := 0; i < len(b); {
		if c := b[i]; c >= 0x20 && c < utf8.RuneSelf {
			i++ // ASCII fast path: nearly every JSON byte
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return fmt.Errorf("%w: invalid UTF-8 at byte %d", ErrInvalidBody, i)
		}
		if !allowedRune(r) {
			return fmt.Errorf("%w: character %U at byte %d is not allowed by SQS", ErrInvalidBody, r, i)
		}
		i += n
	}
	return nil
}

// allowedRune is the character set SQS accepts in bodies and attribute
// values: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
func allowedRune(r rune) bool {
	switch {
	case r == '\t' || r == '\n' || r == '\r':
		return true
	case r >= 0x20 && r <= 0xD7FF:
		return true
	case r >= 0xE000 && r <= 0xFFFD:
		return true
	default:
		return r >= 0x10000 && r <= utf8.MaxRune
	}
}

func allowedString(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !allowedRune(r) {
			return false
		}
	}
	return true
}

// ceHeader holds the top-level CloudEvents attributes the Publisher copies
// into message attributes. RawMessage fields let a value of an unexpected
// JSON type spoil only itself, and keep data from being copied.
type ceHeader struct {
	SpecVersion json.RawMessage `json:"specversion"`
	Type        json.RawMessage `json:"type"`
	Source      json.RawMessage `json:"source"`
	Subject     json.RawMessage `json:"subject"`
	Time        json.RawMessage `json:"time"`
	TraceParent json.RawMessage `json:"traceparent"`
}

// attributes builds the message attributes: the CloudEvents context
// attributes, so consumers can route and filter without parsing the body.
// The id, type and partition key come from the outbox row, the rest from the
// payload; a payload that is not a JSON object only loses those. Values SQS
// would refuse (empty, or characters outside its set) are left out rather
// than failing the event: the body still carries them.
func attributes(m adapters.Message) map[string]sqstypes.MessageAttributeValue {
	var h ceHeader
	_ = json.Unmarshal(m.Payload, &h) // best effort; see above
	typ := m.Type
	if typ == "" {
		typ = jsonString(h.Type)
	}
	attrs := make(map[string]sqstypes.MessageAttributeValue, 9)
	for _, a := range [...]struct{ name, value string }{
		{AttrContentType, ContentType},
		{AttrSpecVersion, jsonString(h.SpecVersion)},
		{AttrID, m.ID},
		{AttrType, typ},
		{AttrSource, jsonString(h.Source)},
		{AttrSubject, jsonString(h.Subject)},
		{AttrTime, jsonString(h.Time)},
		{AttrPartitionKey, m.PartitionKey},
		{AttrTraceParent, jsonString(h.TraceParent)},
	} {
		if allowedString(a.value) {
			attrs[a.name] = sqstypes.MessageAttributeValue{DataType: aws.String(stringType), StringValue: aws.String(a.value)}
		}
	}
	return attrs
}

// jsonString decodes raw as a JSON string, or returns "" if it is not one.
func jsonString(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// messageSize is a message's size as SQS counts it against its limits: the
// body, and for each attribute its name, data type and value.
func messageSize(body []byte, attrs map[string]sqstypes.MessageAttributeValue) int {
	n := len(body)
	for name, v := range attrs {
		n += len(name) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}
