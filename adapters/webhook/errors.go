package webhook

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald/adapters"
)

// Sentinel errors callers may test with errors.Is.
var (
	// ErrClosed is reported for every message published after Close.
	ErrClosed = errors.New("webhook: publisher closed")
	// ErrNotSubscribed: no endpoint subscribes to the event's type, e.g.
	// an endpoint's types were narrowed after the event was routed to it.
	// The event is dead-lettered, never counted as delivered.
	ErrNotSubscribed = errors.New("webhook: no endpoint subscribes to the event type")
	// ErrTooLarge is wrapped (with adapters.ErrPermanent) when a payload
	// exceeds the maximum body size; it is sent to no endpoint.
	ErrTooLarge = errors.New("webhook: payload too large")
	// ErrGone is wrapped (with adapters.ErrPermanent) when an endpoint
	// answered 410 Gone; the Publisher disables it.
	ErrGone = errors.New("webhook: endpoint gone")
	// ErrFailing is wrapped in the reason an endpoint was disabled after
	// failing without a break for WithDisableAfter.
	ErrFailing = errors.New("webhook: endpoint kept failing")
	// ErrRejected is wrapped (with adapters.ErrPermanent) when an endpoint
	// answered a status no retry can change (most 4xx, and 3xx since
	// redirects are not followed).
	ErrRejected = errors.New("webhook: endpoint rejected the event")
	// ErrUnavailable is wrapped when an endpoint answered a status worth
	// retrying (408, 425, 429, 5xx): the event may pass later. It is this
	// package's transient class, and says nothing about the destination as a
	// whole; of these answers, only 429, 502, 503 and 504 (and a failure to
	// connect at all) also wrap adapters.ErrUnavailable, which makes the
	// relay pause the destination. A 500 may be this event's fault in the
	// receiver's code.
	ErrUnavailable = errors.New("webhook: endpoint unavailable")
	// ErrBlockedAddress is wrapped (with adapters.ErrPermanent) when an
	// endpoint's host resolved to an address the SSRF guard refuses.
	ErrBlockedAddress = errors.New("webhook: address not allowed")
	// ErrEarlierFailed is reported for a message left unsent because an
	// earlier message with the same partition key failed in the same batch,
	// at that endpoint or before any was tried (too large, say): sending it
	// would let it overtake its predecessor. It wraps the earlier failure
	// unless that was permanent (see adapters.HeldBack).
	ErrEarlierFailed = errors.New("webhook: not sent, an earlier message with the same partition key failed")
	// ErrTimeout is wrapped when an endpoint did not answer within the
	// request timeout (WithTimeout). It is transient, and not marked
	// adapters.ErrUnavailable: a receiver may be slow on this one event.
	ErrTimeout = errors.New("webhook: request timed out")
	// ErrInvalidID is wrapped (with adapters.ErrPermanent) when an event id
	// cannot be sent unchanged in the webhook-id header.
	ErrInvalidID = errors.New("webhook: invalid event id")
)

// EndpointError is one endpoint's failure to accept one message.
type EndpointError struct {
	// Endpoint is the endpoint's name.
	Endpoint string
	// StatusCode is the HTTP status received, 0 when there was no response.
	StatusCode int
	// RetryAfter is the wait the endpoint asked for with Retry-After (on any
	// retryable status, typically 429 or 503); 0 when it gave none. The
	// relay should not retry sooner.
	RetryAfter time.Duration
	// Err is the cause; it wraps adapters.ErrPermanent when no retry can
	// help.
	Err error
}

func (e *EndpointError) Error() string {
	return fmt.Sprintf("webhook endpoint %q: %v", e.Endpoint, e.Err)
}

func (e *EndpointError) Unwrap() error { return e.Err }

func (e *EndpointError) permanent() bool { return errors.Is(e.Err, adapters.ErrPermanent) }

// DeliveryError reports a message that several endpoints failed to accept.
// (When only one failed, the Result holds its *EndpointError directly.)
//
// It wraps adapters.ErrPermanent only when every failure is permanent: if
// any endpoint may still accept the message, the relay must retry it, and
// the retry goes to every matching endpoint again (receivers drop the copy
// by webhook-id).
type DeliveryError struct {
	Failed []*EndpointError
}

func (e *DeliveryError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		parts[i] = f.Error()
	}
	return fmt.Sprintf("webhook: %d endpoints failed: %s", len(e.Failed), strings.Join(parts, "; "))
}

// Unwrap returns the failures a retry can fix, or all of them when none
// can: errors.Is(err, adapters.ErrPermanent) must not hold while a retry is
// still useful.
func (e *DeliveryError) Unwrap() []error {
	var transient, all []error
	for _, f := range e.Failed {
		all = append(all, f)
		if !f.permanent() {
			transient = append(transient, f)
		}
	}
	if len(transient) > 0 {
		return transient
	}
	return all
}

// RetryAfter returns the longest Retry-After any endpoint behind err asked
// for, and whether one did. The relay uses it to delay its next attempt.
func RetryAfter(err error) (time.Duration, bool) {
	var longest time.Duration
	found := false
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) { //nolint:errorlint // walks the tree itself
		case nil:
		case *EndpointError:
			if e.RetryAfter > 0 && !e.permanent() {
				longest, found = max(longest, e.RetryAfter), true
			}
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return longest, found
}

// combine turns one message's per-endpoint failures into its Result error.
func combine(failed []*EndpointError) error {
	switch len(failed) {
	case 0:
		return nil
	case 1:
		return failed[0]
	default:
		return &DeliveryError{Failed: failed}
	}
}
