package servicebus

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"
)

// Sentinel errors callers may test with errors.Is.
var (
	// ErrClosed is reported for every message published after Close, and
	// for a send that Close cut short.
	ErrClosed = errors.New("servicebus: publisher closed")
	// ErrTooLarge is wrapped, with adapters.ErrPermanent, when the entity
	// refuses a message for its size even when it is sent on its own.
	ErrTooLarge = errors.New("servicebus: message too large")
	// ErrInvalidID is wrapped, with adapters.ErrPermanent, when an event id
	// cannot be a MessageId (empty, or longer than 128 characters).
	ErrInvalidID = errors.New("servicebus: invalid event id")
	// ErrInvalidPartitionKey is wrapped, with adapters.ErrPermanent, when a
	// partition key cannot be a SessionId or PartitionKey (longer than 128
	// characters).
	ErrInvalidPartitionKey = errors.New("servicebus: invalid partition key")
	// ErrInvalidEvent is wrapped, with adapters.ErrPermanent, when the Binary
	// binding cannot lay out a payload: not a JSON object, a required
	// attribute missing, or an attribute value that no CloudEvents type has.
	ErrInvalidEvent = errors.New("servicebus: payload is not a CloudEvent the binary binding can carry")
	// ErrEarlierFailed is reported for a message left unsent because an
	// earlier message with the same partition key failed in the same
	// Publish: sending it would let it overtake its predecessor, which the
	// relay retries later. It wraps the earlier failure unless that was
	// permanent (see adapters.HeldBack).
	ErrEarlierFailed = errors.New("servicebus: not sent, an earlier message with the same partition key failed")
	// ErrSendTimeout is wrapped, with adapters.ErrUnavailable, when a call
	// into the SDK (the SDK's own retries included) outlived
	// WithSendTimeout: the service stores a message without looking at it,
	// so no answer in time is the service's or the network's state.
	ErrSendTimeout = errors.New("servicebus: send timed out")
)

// Error conditions Service Bus sends that go-amqp has no constant for.
const (
	condEntityDisabled amqp.ErrCond = "com.microsoft:entity-disabled"
	condServerBusy     amqp.ErrCond = "com.microsoft:server-busy"
	condTimeout        amqp.ErrCond = "com.microsoft:timeout"
)

// destinationConditions are the AMQP conditions that say the entity takes no
// message right now, whatever it holds: refused credentials, a missing,
// disabled or full entity, a busy or timed-out service, a connection or link
// the service tore down.
var destinationConditions = map[amqp.ErrCond]bool{
	amqp.ErrCondUnauthorizedAccess:    true,
	amqp.ErrCondNotFound:              true,
	amqp.ErrCondResourceLimitExceeded: true,
	condEntityDisabled:                true,
	condServerBusy:                    true,
	condTimeout:                       true,
	amqp.ErrCondConnectionForced:      true,
	amqp.ErrCondInternalError:         true,
	amqp.ErrCondDetachForced:          true,
}

// destinationWide reports whether a failed send is a fault of the entity or
// the way to it as a whole (adapters.ErrUnavailable) rather than of the
// messages sent: see destinationConditions, the SDK's codes for the same
// (unauthorized, not found, connection lost, timeout), a connection,
// session or link error, a network error, a credential that could not get a
// token, and ErrSendTimeout. The Publisher closing or the caller giving up is
// neither, nor a size refusal or another AMQP condition (not-allowed: a
// session entity sent a message without a SessionId, say), which the relay
// judges by its own rule.
func destinationWide(err error) bool {
	if errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		isTooLarge(err) {
		return false
	}
	if errors.Is(err, ErrSendTimeout) {
		return true
	}
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) {
		switch sbErr.Code {
		case azservicebus.CodeUnauthorizedAccess, azservicebus.CodeNotFound,
			azservicebus.CodeConnectionLost, azservicebus.CodeTimeout:
			return true
		}
	}
	var (
		connErr *amqp.ConnError
		sessErr *amqp.SessionError
		amqpErr *amqp.Error
		linkErr *amqp.LinkError
		netErr  net.Error
		// azidentity's errors say so when getting a token failed for
		// good (bad secret, no managed identity).
		credErr interface{ NonRetriable() }
	)
	switch {
	case errors.As(err, &connErr), errors.As(err, &sessErr):
		return true // whatever the reason, the way to the entity is gone
	case errors.As(err, &amqpErr):
		// A condition says more than the link that carried it: a link
		// detached for not-allowed is no outage.
		return destinationConditions[amqpErr.Condition]
	default:
		return errors.As(err, &linkErr) || errors.As(err, &netErr) || errors.As(err, &credErr)
	}
}

// isTooLarge reports whether err is the service (or the link's announced
// max-message-size) refusing a message for its size. The SDK maps this to
// ErrMessageTooLarge for single sends but returns the raw AMQP error for
// batches.
func isTooLarge(err error) bool {
	var amqpErr *amqp.Error
	return errors.Is(err, azservicebus.ErrMessageTooLarge) ||
		(errors.As(err, &amqpErr) && amqpErr.Condition == amqp.ErrCondMessageSizeExceeded)
}

// affectsEntity reports whether a failed send says nothing can be sent to
// the entity right now (bad credentials, a missing or disabled entity, a
// lost connection, a full entity, no answer within WithSendTimeout, the
// Publisher closing or the caller giving up), so the rest of a Publish call
// fails at once instead of waiting through the SDK's retries once per batch.
// Other failures (the service's own timeout, a busy server, an oversize
// batch) may well spare the next batch. This is narrower than
// destinationWide, which decides what the relay is told.
func affectsEntity(err error) bool {
	if errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrSendTimeout) {
		return true
	}
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) {
		switch sbErr.Code {
		case azservicebus.CodeUnauthorizedAccess, azservicebus.CodeNotFound,
			azservicebus.CodeConnectionLost, azservicebus.CodeClosed:
			return true
		}
	}
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) {
		switch amqpErr.Condition {
		case amqp.ErrCondUnauthorizedAccess, amqp.ErrCondNotFound,
			amqp.ErrCondResourceLimitExceeded, condEntityDisabled:
			return true
		}
	}
	var connErr *amqp.ConnError
	var sessErr *amqp.SessionError
	return errors.As(err, &connErr) || errors.As(err, &sessErr)
}

// hint says what an operator can do about err, or "" when there is nothing
// specific to say. Such failures are retried like any other (see doc.go for
// why they are not permanent); the hint makes the log and the boot error
// point at the fix.
func hint(err error, entity string) string {
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) {
		switch sbErr.Code {
		case azservicebus.CodeUnauthorizedAccess:
			return "the identity needs the Azure Service Bus Data Sender role on the entity or namespace, " +
				"or the SAS policy of the connection string needs the Send claim"
		case azservicebus.CodeNotFound:
			return fmt.Sprintf("queue or topic %q does not exist in the namespace", entity)
		}
	}
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) {
		switch amqpErr.Condition {
		case amqp.ErrCondUnauthorizedAccess:
			return "the identity needs the Azure Service Bus Data Sender role on the entity or namespace, " +
				"or the SAS policy of the connection string needs the Send claim"
		case amqp.ErrCondNotFound:
			return fmt.Sprintf("queue or topic %q does not exist in the namespace", entity)
		case condEntityDisabled:
			return fmt.Sprintf("queue or topic %q is disabled", entity)
		case amqp.ErrCondResourceLimitExceeded:
			return fmt.Sprintf("queue or topic %q is full (its maximum size is reached) until consumers catch up", entity)
		}
	}
	if isTooLarge(err) {
		return "a batch exceeded the entity's size limit; if WithMaxBatchBytes is set, lower it"
	}
	return ""
}

// needsOperator reports whether err will not go away without someone fixing
// configuration or permissions, which is logged at error level.
func needsOperator(err error) bool {
	var sbErr *azservicebus.Error
	if errors.As(err, &sbErr) &&
		(sbErr.Code == azservicebus.CodeUnauthorizedAccess || sbErr.Code == azservicebus.CodeNotFound) {
		return true
	}
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) {
		switch amqpErr.Condition {
		case amqp.ErrCondUnauthorizedAccess, amqp.ErrCondNotFound, condEntityDisabled:
			return true
		}
	}
	return false
}
