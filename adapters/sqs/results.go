package sqs

import (
	"errors"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

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
// error: permanent when the sender's content is at fault.
func entryError(f sqstypes.BatchResultErrorEntry) error {
	err := &EntryError{Code: aws.ToString(f.Code), Message: aws.ToString(f.Message), SenderFault: f.SenderFault}
	if f.SenderFault && contentCodes[normalizeCode(err.Code)] {
		return adapters.Permanent(err)
	}
	return err
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
