// Package sqs publishes Herald's events to an Amazon SQS queue, standard or
// FIFO.
//
// # Model
//
// Every event becomes one SQS message:
//
//   - body: the stored CloudEvent, byte for byte (structured JSON mode). A
//     payload that SQS would refuse or the SDK would alter on the way (empty,
//     not UTF-8, control characters other than tab, CR and LF) fails
//     permanently with ErrInvalidBody instead of being retried forever.
//   - message attributes (all of data type String): content-type
//     (application/cloudevents+json), ce-specversion, ce-id, ce-type,
//     ce-source, ce-subject, ce-time, ce-partitionkey and ce-traceparent, so
//     consumers can route without parsing the body. Those absent from the
//     event, or that SQS would refuse, are left out. That is at most 9 of the
//     10 attributes SQS allows.
//   - on a FIFO queue (its name ends in ".fifo"): MessageDeduplicationId is
//     the event id, and MessageGroupId the partition key. An event without a
//     key gets its own group (its id), since Herald orders only events that
//     share a key; WithMessageGroupID puts all such events in one group
//     instead. SQS allows 128 printable ASCII characters in these ids; a key
//     or id outside that is replaced by "herald-sha256-" and its SHA-256, so
//     equal keys still share a group and a re-sent id is still dropped.
//
// A message is reported sent once SQS has answered the SendMessageBatch call
// with success for it, that is, stored it.
//
// # Duplicates and order
//
// A FIFO queue drops a message whose deduplication id it has seen in the last
// 5 minutes, and answers with success and the original message's id. So a
// relay that crashed after publishing but before marking the outbox rows sent
// can safely publish them again within that interval. The Publisher flags
// such a re-send Duplicate when it sent the original itself (it remembers the
// message ids of the last 5 minutes, up to 65536); after a restart SQS still
// drops the copy, but it is reported as new. A retry later than 5 minutes is
// stored twice.
//
// A standard queue has no duplicate detection and only best-effort order:
// consumers must dedupe by the CloudEvents id (the ce-id attribute), e.g. with
// a table of processed ids kept longer than the relay's retry horizon, and
// must not rely on order. Use a FIFO queue where order matters.
//
// Messages go out in calls of at most 10 messages and 1 MiB, one call at a
// time and in order; SQS stores a FIFO call's messages in the order given.
// When a message fails, for whatever reason (permanent ones included), the
// later messages of its group (or partition key, on a standard queue) in the
// same Publish are not sent (ErrEarlierFailed): the relay decides what
// becomes of the key, and a successor must not overtake its predecessor. SQS
// answers each message of a call separately, though: if it refused one yet
// stored a later one of the same group in the same call, that later one is
// ahead. The Publisher logs a warning when it sees this.
//
// # Errors
//
// Permanent (wrapping adapters.ErrPermanent, dead-lettered by the relay):
// ErrTooLarge, ErrInvalidID, ErrInvalidBody, and an EntryError whose code
// blames the message's content (InvalidParameterValue, InvalidMessageContents,
// InvalidAttributeName, InvalidAttributeValue).
//
// A fault of the destination as a whole (wrapping adapters.ErrUnavailable:
// the relay pauses the destination and spends no attempt of any event, so an
// outage dead-letters nothing): no connection (refused, DNS, TLS), server
// errors (5xx) and throttling after the SDK's own retries, ErrSendTimeout,
// credentials that could not be had or were refused (AccessDenied,
// InvalidClientTokenId, an expired token), a missing queue (QueueDoesNotExist,
// AWS.SimpleQueueService.NonExistentQueue), and KMS errors of the queue's key,
// all of which an operator or the service fixes without the events being at
// fault. Such a code on one entry of an answered call (KmsThrottled, say)
// marks that entry so too; other refusals of one entry stay plain transient.
//
// A message held back (ErrEarlierFailed) wraps its predecessor's error, so it
// is unavailable when that was, but never permanent: it was not refused
// itself. Messages left unsent because ctx ended wrap ctx's error (ErrClosed
// after Close), unmarked. A call that fails as a whole fails all messages not
// yet sent in that Publish, without further calls.
//
// MaxPublishTime (adapters.Bounded) allows WithSendTimeout for two calls per
// message, since each message goes out in at most two (in a batch and, when
// SQS refuses the batch without naming the culprit, alone), plus a little
// slack.
//
// # Limits
//
// A message may have 1 MiB (DefaultMaxMessageSize), counting its body and,
// for each attribute, name, data type and value, as SQS does. New lowers this
// to the queue's MaximumMessageSize attribute, and WithMaxMessageSize to any
// size down to 1 KiB; a larger event fails permanently with ErrTooLarge. A
// call carries at most 10 messages (MaxBatchEntries) of at most 1 MiB together
// (MaxBatchBytes).
//
// # Credentials and permissions
//
// New loads the default AWS configuration: credentials from the environment
// (AWS_ACCESS_KEY_ID...), the shared profile (AWS_PROFILE), web identity
// (EKS IRSA), or the container or instance role; the region from WithRegion,
// AWS_REGION or the profile, else the queue URL; the endpoint from
// WithEndpoint or AWS_ENDPOINT_URL_SQS. The IAM policy needs sqs:SendMessage
// on the queue (SendMessageBatch is authorized by it), plus
// sqs:GetQueueAttributes unless WithVerifyQueue(false), and kms:GenerateDataKey
// and kms:Decrypt on the key if the queue is encrypted with a customer
// managed KMS key.
package sqs
