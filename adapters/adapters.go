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
}

// Publisher sends messages to one broker.
//
// Publish returns exactly one Result per message, in order, and never panics
// or fails as a whole: a broker that is down yields an error in every Result.
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

// FailAll returns one Result per message, each carrying err. Adapters use it
// when the whole batch fails before anything is sent.
func FailAll(n int, err error) []Result {
	res := make([]Result, n)
	for i := range res {
		res[i].Err = err
	}
	return res
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
