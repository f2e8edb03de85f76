// Package servicebus publishes Herald's events to an Azure Service Bus queue
// or topic, through the Azure SDK for Go (azservicebus).
//
// # Model
//
// Every event becomes one Service Bus message:
//
//   - MessageId: the event id. With duplicate detection enabled on the
//     entity, the service drops a second message with the same id inside
//     its window, so a relay that crashed after sending but before marking
//     the outbox rows sent can safely send them again.
//   - Subject (the AMQP subject, "Label" in older tools): the CloudEvents
//     type, so topic subscriptions can filter on it without reading bodies.
//   - With WithSessions, SessionId: the partition key, or the event id for an
//     event without one. With WithPartitionedEntity, PartitionKey: the same.
//   - Content type and body per the binding (WithBinding). Structured, the
//     default: application/cloudevents+json and the stored CloudEvent byte
//     for byte. Binary: the data as the body, datacontenttype as the content
//     type, every other attribute as a "cloudEvents:"-prefixed application
//     property (cloudEvents:id, cloudEvents:type, cloudEvents:partitionkey,
//     cloudEvents:traceparent, ...), as the CloudEvents AMQP binding lays
//     them out.
//
// # Batches, sizes and order
//
// Publish packs messages into the SDK's MessageBatch, which measures each
// message as encoded against the limit the service announces for the entity
// (256 KB on Standard, 1 MB batches on Premium), and sends one batch at a
// time, in order. A batch is stored or refused whole. A message too large
// for an empty batch is sent on its own, since a Premium entity may accept
// messages up to 100 MB; if the service refuses it too, it fails permanently
// (ErrTooLarge) and the relay dead-letters it.
//
// Once a message with a partition key has failed, for whatever reason
// (permanent ones, such as an oversize message, included), the later messages
// of that key in the same Publish call are not sent (ErrEarlierFailed): the
// relay decides what becomes of the key, and delivers its events in order. A
// session-enabled entity (WithSessions) then hands each key's events to one
// consumer at a time, in order.
//
// # Errors
//
// Only what no retry can fix is permanent: an oversize message, an event id
// or partition key Service Bus cannot carry (empty, over 128 characters), a
// payload the Binary binding cannot lay out. Everything the service or the
// network says is transient, including denied access and a missing entity:
// both are fixed by an operator (a role assignment, which takes minutes to
// apply; an entity created by a deployment running late), and dead-lettering
// every event in the meantime would lose the stream. They are logged at
// error level with what to fix, and when such a failure concerns the whole
// entity the rest of the Publish call fails at once instead of each batch
// waiting through the SDK's retries.
//
// Failures of the entity or the way to it as a whole are marked
// adapters.ErrUnavailable, so that the relay pauses the destination and
// spends no attempt of any event on them: a lost connection, session or
// link, a network error, refused credentials (CodeUnauthorizedAccess, or a
// credential that could not get a token), a missing, disabled or full entity
// (CodeNotFound, entity-disabled, resource-limit-exceeded), a busy or timed
// out service (server-busy, CodeTimeout), and ErrSendTimeout: no answer
// within WithSendTimeout. Other conditions (not-allowed, from a session
// entity sent a message without a SessionId, say) stay plain transient, for
// the relay's own rule. A held-back message wraps its predecessor's error, so
// it is unavailable when that was, but never permanent: it was not refused
// itself. Messages left unsent because ctx ended wrap ctx's error, and those
// cut short by Close ErrClosed; neither is marked.
//
// MaxPublishTime (adapters.Bounded) allows WithSendTimeout for two calls per
// message (one opening the batch it joins, one sending it), since sizes, not
// the count, decide how many share a batch, plus a little slack.
//
// Service Bus acknowledges a duplicate like any message and drops it
// afterwards without saying so, so Result.Duplicate is never set.
//
// # Testing
//
// The Publisher runs, through the real SDK client, against a local Service
// Bus peer (.ci/servicebus.sh, on rhea; internal/testservicebus): the shared
// conformance suite with sessions, duplicate detection, subject filters,
// boot errors and Check. What the peer cannot produce (partitioned
// entities, a hung send, every error condition the service may return) is
// tested through a narrow interface over the SDK's Sender, whose only
// production implementation is *azservicebus.Sender; an opt-in test runs the
// suite against a real namespace. docs/adapters/servicebus.md lists what is
// proven against what.
package servicebus
