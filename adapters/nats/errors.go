package nats

import (
	"errors"
	"net/http"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/adapters"
)

// Sentinel errors callers may test with errors.Is.
var (
	// ErrClosed is reported for every message published after Close.
	ErrClosed = errors.New("nats: publisher closed")
	// ErrTooLarge is wrapped (together with adapters.ErrPermanent) when a
	// message exceeds the server's max_payload or the stream's max_msg_size.
	ErrTooLarge = errors.New("nats: message too large")
	// ErrInvalidID is wrapped (with adapters.ErrPermanent) when an event id
	// cannot be carried unchanged in the Nats-Msg-Id header.
	ErrInvalidID = errors.New("nats: invalid event id")
	// ErrEarlierFailed is reported for a message left unsent because an
	// earlier message with the same partition key failed in the same batch:
	// sending it would put it in the stream ahead of its predecessor. It
	// wraps the earlier failure unless that was permanent (see adapters.HeldBack).
	ErrEarlierFailed = errors.New("nats: not sent, an earlier message with the same partition key failed")
	// ErrNotCaptured is reported when the stream exists but none of its
	// subjects takes the message's subject (its event type): the server
	// answers "no responders". It is the event's fault, not the stream's,
	// so it is not marked adapters.ErrUnavailable: the relay retries it and
	// dead-letters it after its attempts, while other types flow.
	ErrNotCaptured = errors.New("nats: no stream subject captures the message's subject")
)

// noResponders reports whether a publish found nothing listening on its
// subject.
func noResponders(err error) bool {
	return errors.Is(err, natsgo.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// JetStream error codes the jetstream package has no constant for.
const (
	errCodeStreamStoreFailed jetstream.ErrorCode = 10077 // the stream could not store the message
	errCodeStreamSealed      jetstream.ErrorCode = 10109 // the stream takes no more writes
)

// destinationErrors say the stream cannot take any message right now: the
// connection is down or going, the server refuses the credentials, or
// nothing (no stream, no JetStream) answers on the subject. An ack that does
// not come within WithAckTimeout counts too: the server stores messages
// without looking at their content, so a missing ack is the server's state,
// not the event's.
var destinationErrors = []error{
	natsgo.ErrConnectionClosed,
	natsgo.ErrConnectionReconnecting,
	natsgo.ErrConnectionDraining,
	natsgo.ErrDisconnected,
	natsgo.ErrReconnectBufExceeded,
	natsgo.ErrNoServers,
	natsgo.ErrStaleConnection,
	natsgo.ErrNoResponders,
	natsgo.ErrTimeout,
	natsgo.ErrAuthorization,
	natsgo.ErrAuthExpired,
	natsgo.ErrAuthRevoked,
	natsgo.ErrAccountAuthExpired,
	natsgo.ErrPermissionViolation,
	natsgo.ErrMaxConnectionsExceeded,
	natsgo.ErrMaxAccountConnectionsExceeded,
	jetstream.ErrNoStreamResponse,
	jetstream.ErrAsyncPublishTimeout,
	jetstream.ErrTooManyStalledMsgs,
	jetstream.ErrJetStreamNotEnabled,
	jetstream.ErrJetStreamNotEnabledForAccount,
	jetstream.ErrStreamNotFound,
	jetstream.ErrConnectionClosed,
	jetstream.ErrServerShutdown,
}

// destinationWide reports whether a failed send or ack is a fault of the
// stream or connection as a whole (adapters.ErrUnavailable) rather than a
// refusal of this one message.
func destinationWide(err error) bool {
	for _, target := range destinationErrors {
		if errors.Is(err, target) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch {
	case storeRefusedSize(apiErr):
		return false
	case apiErr.ErrorCode == errCodeStreamSealed:
		return true
	default:
		// JetStream answers 503 when it cannot store anything: the
		// stream is full (max_msgs or max_bytes with discard new), the
		// server is out of resources, or the cluster has no leader.
		return apiErr.Code == http.StatusServiceUnavailable
	}
}

// storeRefusedSize reports whether the stream's store refused a message for
// its size: the one 503 that is about the message. The server sends its
// store's error text as the description.
func storeRefusedSize(apiErr *jetstream.APIError) bool {
	return apiErr.ErrorCode == errCodeStreamStoreFailed && strings.Contains(apiErr.Description, "message too large")
}

// markUnavailable wraps err with adapters.Unavailable when it is a fault of
// the destination as a whole, and returns it unchanged otherwise.
func markUnavailable(err error) error {
	if destinationWide(err) {
		return adapters.Unavailable(err)
	}
	return err
}
