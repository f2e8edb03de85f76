package sqs

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/heraldhq/herald/adapters"
)

// contentCodes are the SQS error codes that blame a message's own content:
// sending the same message again cannot succeed. Everything else (throttling,
// server errors, KMS, permissions, a missing queue) may pass once the
// service or the operator has recovered, so it stays transient rather than
// dead-lettering events for a fault that is not theirs.
var contentCodes = map[string]bool{
	"InvalidParameterValue":  true,
	"InvalidMessageContents": true,
	"InvalidAttributeName":   true,
	"InvalidAttributeValue":  true,
	"BatchRequestTooLong":    true,
}

// destinationCodes are the SQS error codes that say no message can go to the
// queue right now, whatever it holds: throttling, credentials or permissions
// refused, the queue or its KMS key missing, disabled or throttled. The relay
// pauses the destination for them (adapters.ErrUnavailable) instead of
// spending each event's attempts. The SDK's own list of throttling codes
// (retry.DefaultThrottleErrorCodes) counts too.
var destinationCodes = map[string]bool{
	"RequestThrottled": true,
	"OverLimit":        true,

	"AccessDenied":                true,
	"AccessDeniedException":       true,
	"InvalidClientTokenId":        true,
	"UnrecognizedClientException": true,
	"SignatureDoesNotMatch":       true,
	"IncompleteSignature":         true,
	"MissingAuthenticationToken":  true,
	"InvalidAccessKeyId":          true,
	"ExpiredToken":                true,
	"ExpiredTokenException":       true,
	"RequestExpired":              true,
	"InvalidSecurity":             true,
	"AuthFailure":                 true,
	"OptInRequired":               true,

	"QueueDoesNotExist":         true,
	"NonExistentQueue":          true, // the query protocol's name for QueueDoesNotExist
	"QueueDeletedRecently":      true,
	"ResourceNotFoundException": true,

	"KmsAccessDenied":    true,
	"KmsDisabled":        true,
	"KmsInvalidKeyUsage": true,
	"KmsInvalidState":    true,
	"KmsNotFound":        true,
	"KmsOptInRequired":   true,
	"KmsThrottled":       true,
}

// isDestinationCode reports whether an SQS error code is one of
// destinationCodes or a throttling code the SDK knows.
func isDestinationCode(code string) bool {
	code = normalizeCode(code)
	_, throttle := retry.DefaultThrottleErrorCodes[code]
	return throttle || destinationCodes[code]
}

// destinationWide reports whether a failed SendMessageBatch call is a fault
// of the queue or the way to it as a whole (adapters.ErrUnavailable): one of
// destinationCodes, a server error (5xx, after the SDK's retries), no
// connection at all (refused, DNS, TLS), or credentials that could not be
// had. A call refused for its messages' content is not.
func destinationWide(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if contentCodes[normalizeCode(apiErr.ErrorCode())] {
			return false
		}
		if isDestinationCode(apiErr.ErrorCode()) || apiErr.ErrorFault() == smithy.FaultServer {
			return true
		}
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) && status.HTTPStatusCode() >= http.StatusInternalServerError {
		return true
	}
	var sendErr *smithyhttp.RequestSendError
	var signErr *v4.SigningError
	var netErr net.Error
	return errors.As(err, &sendErr) || errors.As(err, &signErr) || errors.As(err, &netErr)
}

// markUnavailable wraps err with adapters.Unavailable when it is a fault of
// the destination as a whole, and returns it unchanged otherwise.
func markUnavailable(err error) error {
	if destinationWide(err) {
		return adapters.Unavailable(err)
	}
	return err
}

// normalizeCode strips the prefixes SQS puts on its error codes in some
// protocols ("AWS.SimpleQueueService.NonExistentQueue",
// "com.amazonaws.sqs#QueueDoesNotExist").
func normalizeCode(code string) string {
	code = strings.TrimPrefix(code, "AWS.SimpleQueueService.")
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	return code
}

// entryError turns SQS's refusal of one batch entry into the message's
// error: permanent when the sender's content is at fault, unavailable when
// the code says the queue takes nothing now (throttling, KMS, permissions).
// Other refusals of one entry (an internal error) stay plain transient: the
// queue answered the call, and the relay judges a batch of which nothing got
// through by its own rule.
func entryError(f sqstypes.BatchResultErrorEntry) error {
	err := &EntryError{Code: aws.ToString(f.Code), Message: aws.ToString(f.Message), SenderFault: f.SenderFault}
	switch {
	case f.SenderFault && contentCodes[normalizeCode(err.Code)]:
		return adapters.Permanent(err)
	case isDestinationCode(err.Code):
		return adapters.Unavailable(err)
	default:
		return err
	}
}

// isContentError reports whether a whole SendMessageBatch call was refused
// for the content of its messages. The adapter checks sizes and characters
// before sending, so this should not happen; if SQS counts differently, the
// call's messages are retried one by one so that only the culprit fails.
func isContentError(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorFault() != smithy.FaultServer &&
		contentCodes[normalizeCode(apiErr.ErrorCode())]
}

// dedupeInterval is how long SQS remembers a FIFO deduplication id.
const dedupeInterval = 5 * time.Minute

// maxSentIDs bounds the memory of sentIDs: about 6 MB. Past it, duplicates
// are still dropped by SQS but may be reported as new.
const maxSentIDs = 1 << 16

// sentIDs remembers the SQS message ids that recent sends returned. SQS
// answers a FIFO send whose deduplication id it has seen within the
// interval with success and the original message's id, and does not store
// it again: a message id seen before marks a duplicate. Only sends by this
// Publisher are remembered, so a re-publish after a relay restart is dropped
// by SQS just the same but reported as new.
type sentIDs struct {
	now   func() time.Time
	at    map[string]time.Time
	order []string // insertion order; order[head:] are live
	head  int
}

func newSentIDs() *sentIDs {
	return &sentIDs{now: time.Now, at: map[string]time.Time{}}
}

// seen records id and reports whether it was already recorded.
func (s *sentIDs) seen(id string) bool {
	if id == "" {
		return false
	}
	now := s.now()
	for s.head < len(s.order) {
		oldest := s.order[s.head]
		if now.Sub(s.at[oldest]) <= dedupeInterval && len(s.order)-s.head < maxSentIDs {
			break
		}
		delete(s.at, oldest)
		s.head++
	}
	if s.head > len(s.order)/2 {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
	if _, ok := s.at[id]; ok {
		return true
	}
	s.at[id] = now
	s.order = append(s.order, id)
	return false
}
