// Package adaptertest is the conformance suite every broker adapter passes.
//
// An adapter's own test describes how to reach its broker in a [Harness] and
// calls [Run]; the suite then checks, against the real server or emulator,
// the promises of adapters.Publisher that the relay relies on:
//
//   - the payload arrives byte for byte and the event id is preserved;
//   - a batch larger than the broker's per-call limit arrives whole, each
//     message once;
//   - a re-published id is flagged Duplicate and stored once (Harness.Dedupe);
//   - messages sharing a partition key arrive in the order published
//     (unless Harness.Unordered);
//   - an oversize message fails permanently, and not as a fault of the
//     destination (adapters.ErrUnavailable), without failing its batch;
//   - once a message with a partition key fails, even permanently, the later
//     messages with that key in the call are held back: they report an error
//     that wraps neither adapters.ErrPermanent nor, when the head failed for
//     what it is, adapters.ErrUnavailable, and never arrive; other keys go on;
//   - an unreachable broker yields a transient error per message, each
//     wrapping adapters.ErrUnavailable and never adapters.ErrPermanent, not a
//     panic or hang;
//   - a publisher that is adapters.Bounded gives a positive bound that does
//     not shrink as the batch grows, and publishes (or reports a down
//     broker) within it;
//   - a publisher that is adapters.Limited claims a positive size within
//     the broker's limit, and an event of exactly that size is taken;
//   - Close is idempotent, and Publish after Close fails per message;
//   - a cancelled context never makes a message look sent when it was not;
//   - Publish always returns exactly one Result per Message;
//   - no goroutine started by a publish cycle outlives Close.
//
// The goroutine check counts every goroutine started while its subtest
// runs, so the test calling Run must not call t.Parallel.
//
// A sketch, for a broker with a 1 MiB limit and duplicate detection:
//
//	func TestConformance(t *testing.T) {
//		adaptertest.Run(t, adaptertest.Harness{
//			Open: func(t *testing.T) (adapters.Publisher, adaptertest.Destination) {
//				queue := createRandomQueue(t) // removed again in t.Cleanup
//				return mustConnect(t, queue), queueReader{queue}
//			},
//			MaxPayload: 1 << 20,
//			Dedupe:     true,
//		})
//	}
package adaptertest

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters"
)

// Harness tells the suite how to reach one broker through one adapter.
type Harness struct {
	// Open returns a publisher bound to a fresh destination (its own stream,
	// queue or endpoint) that no other subtest or test run writes to, and a
	// reader for that destination. The suite calls it once per subtest,
	// never concurrently. Open removes what it created through t.Cleanup. The suite closes the publisher itself; Close being
	// idempotent, Open may register a Close too. Required.
	Open func(t *testing.T) (adapters.Publisher, Destination)

	// OpenDown, if set, returns a publisher that was connected and whose
	// broker has since become unreachable (server stopped, connection cut).
	// Leave it nil when the test cannot do that; the subtest is skipped.
	OpenDown func(t *testing.T) adapters.Publisher

	// MaxPayload is the broker's size limit in bytes. The suite expects a
	// payload of MaxPayload+1 bytes to fail permanently and one of half the
	// limit to go through. Required.
	MaxPayload int

	// BatchLimit is how many messages the broker takes in one call (10 for
	// SQS), or 0 if it has no such limit. The suite publishes well over it
	// in one Publish call.
	BatchLimit int

	// Dedupe is true when the broker drops a re-published event id. When
	// false, the duplicate subtest is skipped.
	Dedupe bool

	// Unordered is true when the broker promises no order at all (an SQS
	// standard queue): the order subtest then checks only that every
	// message arrives once. Per-key order is the relay's job there, and
	// consumers must not rely on it.
	Unordered bool

	// ReceiveTimeout bounds the wait for messages that should arrive; it
	// only runs out when the adapter is broken. Default 30s.
	ReceiveTimeout time.Duration

	// SettleTime is how long the suite waits to be sure that no further
	// message arrives (a duplicate, a message that should not have been
	// sent). Raise it for brokers that deliver with a delay. Default 300ms.
	SettleTime time.Duration

	// IgnoreGoroutines lists substrings of goroutine stacks that the leak
	// check disregards: goroutines the adapter does not own and that end on
	// their own schedule, such as an in-process emulator's. Say why beside
	// each entry; an adapter's own goroutines never belong here. Optional.
	IgnoreGoroutines []string
}

// Destination reads back what the broker holds for one Open call.
type Destination interface {
	// Receive returns the messages not returned before, in the order the
	// broker delivers them, waiting until max have been read or ctx is done.
	// When ctx ends first it returns what it has, with a nil error; an error
	// means the destination could not be read at all.
	Receive(ctx context.Context, max int) ([]Received, error)
}

// Received is one message as the broker holds it.
type Received struct {
	// ID is the event id as the broker recorded it (the dedupe header,
	// message attribute or id field the adapter maps msg.ID to).
	ID string
	// Payload is the message body exactly as stored.
	Payload []byte
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Open == nil {
		t.Fatal("adaptertest: Harness.Open is required")
	}
	if h.MaxPayload <= 0 {
		t.Fatal("adaptertest: Harness.MaxPayload is required")
	}
	if h.ReceiveTimeout <= 0 {
		h.ReceiveTimeout = 30 * time.Second
	}
	if h.SettleTime <= 0 {
		h.SettleTime = 300 * time.Millisecond
	}
	s := &suite{h: h, idPrefix: "evt-" + randomHex(t, 6)}
	t.Run("PublishOne", s.publishOne)
	t.Run("EmptyBatch", s.emptyBatch)
	t.Run("LargeBatch", s.largeBatch)
	t.Run("Duplicates", s.duplicates)
	t.Run("PartitionKeyOrder", s.partitionKeyOrder)
	t.Run("Oversize", s.oversize)
	t.Run("KeyHeldAfterFailure", s.keyHeldAfterFailure)
	t.Run("Bounded", s.bounded)
	t.Run("Limited", s.limited)
	t.Run("CancelledContext", s.cancelledContext)
	t.Run("Close", s.closeTwice)
	t.Run("BrokerDown", s.brokerDown)
	t.Run("NoGoroutineLeak", s.noGoroutineLeak)
}
