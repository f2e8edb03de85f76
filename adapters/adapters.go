package adapters

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Message is one outbox event on its way to a broker.
type Message struct {
	// ID is the CloudEvents id: the broker's duplicate-detection key.
	ID string
	// Type is the CloudEvents type, used for subjects and routing.
	Type string
	// PartitionKey is the ordering key; empty when the event has none.
	PartitionKey string
	// Payload is the CloudEvents structured JSON exactly as stored.
	Payload []byte
	// TraceParent is the event's W3C traceparent, empty when it has none.
	// Adapters put it where the broker's tracing looks (a traceparent
	// header), so a trace crosses the broker whatever the binding.
	TraceParent string
}

// Result is the outcome of publishing one Message.
type Result struct {
	// Err is nil when the broker has durably accepted the message.
	Err error
	// Duplicate is true when the broker accepted the message but recognised
	// its id as already stored (a re-publish after a crash or retry).
	Duplicate bool
	// RetryAfter is how long the receiver asked the sender to wait before
	// trying again (an HTTP Retry-After, a throttling hint); 0 when it did
	// not say. The relay never retries a failed message sooner.
	RetryAfter time.Duration
	// Status is the HTTP status the receiver answered, for adapters that
	// speak HTTP to it (webhooks); 0 otherwise, or when no answer came.
	// The delivery log records it.
	Status int
}

// Publisher sends messages to one broker.
//
// Publish returns exactly one Result per message, in order, and never panics
// or fails as a whole: a broker that is down yields an error in every Result,
// each wrapping ErrUnavailable. Once a message with a partition key fails,
// for whatever reason (permanent ones included), the later messages with that
// key in the same call are not sent: the relay decides what happens to the
// key (it retries the head, or parks the key behind its dead letter), and a
// later event must never overtake an earlier one at the broker.
// Publish may be called from one goroutine at a time; Close waits for nothing
// that Publish has not already returned.
type Publisher interface {
	Publish(ctx context.Context, msgs []Message) []Result
	Close() error
}

// ErrPermanent marks an error that no retry can fix.
var ErrPermanent = errors.New("permanent")

// Permanent wraps err so that errors.Is(err, ErrPermanent) holds.
func Permanent(err error) error {
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// ErrUnavailable marks a fault of the destination as a whole rather than of
// one message: the broker is unreachable, reconnecting, throttling, refusing
// the credentials, or the queue or topic is missing. The relay pauses the
// destination behind a circuit breaker and spends no attempt of any event on
// it, so an outage of any length dead-letters nothing. Adapters wrap every
// such error with Unavailable; an error of one message (it is malformed,
// oversize, refused for what it is) must not be marked.
var ErrUnavailable = errors.New("destination unavailable")

// Unavailable wraps err so that errors.Is(err, ErrUnavailable) holds.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// HeldBack returns the error of a message not sent because an earlier
// message with its key failed in the same Publish with cause; earlierFailed
// is the adapter's own sentinel for it. The error wraps cause, so that what
// the relay acts on (ErrUnavailable, a context error) shows through, but
// never cause's permanence: the held-back message was not refused itself and
// must not be dead-lettered for its predecessor's fault.
func HeldBack(earlierFailed error, key string, cause error) error {
	if !errors.Is(cause, ErrPermanent) {
		return fmt.Errorf("%w (key %q): %w", earlierFailed, key, cause)
	}
	err := fmt.Errorf("%w (key %q): %v", earlierFailed, key, cause) //nolint:errorlint // deliberately not wrapping the permanence
	if errors.Is(cause, ErrUnavailable) {
		return Unavailable(err)
	}
	return err
}

// FailAll returns one Result per message, each carrying err. Adapters use it
// when the whole batch fails before anything is sent.
func FailAll(n int, err error) []Result {
	res := make([]Result, n)
	for i := range res {
		res[i].Err = err
	}
	return res
}

// Bounded is implemented by publishers that know how long one Publish of n
// messages may take at most, from their own timeouts (an ack wait, an HTTP
// request timeout, how many requests run at once). The relay cuts a Publish
// off after that long; messages still unsent then are given back to the
// outbox, not counted as attempts. Without it the relay allows
// DefaultMaxPublishTime.
type Bounded interface {
	MaxPublishTime(n int) time.Duration
}

// DefaultMaxPublishTime bounds a Publish of a publisher that is not Bounded.
const DefaultMaxPublishTime = 2 * time.Minute

// BoundSlack is what a Bounded publisher adds to the sum of its own waits
// for the work between them (building messages, scheduling, a busy machine).
const BoundSlack = 2 * time.Second

// Limited is implemented by publishers that know the largest event their
// destination takes. MaxMessageBytes is the largest Message.Payload, in bytes
// of the CloudEvent JSON as the outbox stores it, that the publisher expects
// to be accepted, with what it adds itself (headers, message attributes,
// envelope) already taken off the broker's limit. Writers use it to keep an
// event out of the outbox that could only be dead-lettered: the enricher
// quarantines a record whose event is larger (enricher.WithMaxEventBytes).
// Where part of what the adapter adds depends on the event (attributes
// copied from it), the allowance covers events as Herald writes them; a
// payload within the limit whose additions exceed it still fails
// permanently in Publish.
type Limited interface {
	MaxMessageBytes() int
}

// Checker is implemented by publishers that can tell whether their broker is
// reachable right now; readiness probes use it. It must not publish.
type Checker interface {
	Check(ctx context.Context) error
}

// Binding is the CloudEvents content mode an adapter lays an event out in.
// Every adapter that offers a choice takes this one type, so the config
// value means the same for all of them.
type Binding int

const (
	// Structured sends the stored CloudEvent JSON, byte for byte, as the
	// body (content type application/cloudevents+json): what the outbox
	// holds is what consumers get. The default.
	Structured Binding = iota
	// Binary sends the event's data as the body (content type: the
	// datacontenttype) and every other attribute in the broker's message
	// metadata, named as the broker's CloudEvents binding prescribes, so
	// consumers can route and filter without parsing bodies.
	Binary
)

// String returns the name ParseBinding accepts.
func (b Binding) String() string {
	switch b {
	case Structured:
		return "structured"
	case Binary:
		return "binary"
	default:
		return fmt.Sprintf("Binding(%d)", int(b))
	}
}

// ParseBinding turns a configuration value, "structured" or "binary", into a
// Binding.
func ParseBinding(s string) (Binding, error) {
	switch s {
	case "structured":
		return Structured, nil
	case "binary":
		return Binary, nil
	default:
		return 0, fmt.Errorf("binding %q: want structured or binary", s)
	}
}
