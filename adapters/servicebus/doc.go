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
// When a batch fails, messages later in the same Publish call that share a
// partition key with it are not sent (ErrEarlierFailed), so the relay's
// retry delivers that key's events in order. A session-enabled entity
// (WithSessions) then hands each key's events to one consumer at a time, in
// order.
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
// Service Bus acknowledges a duplicate like any message and drops it
// afterwards without saying so, so Result.Duplicate is never set.
//
// # Testing
//
// No Service Bus emulator runs in CI. The Publisher's logic is tested
// through a narrow interface over the SDK's Sender, whose only production
// implementation is *azservicebus.Sender; the wire mapping is proven against
// RabbitMQ's AMQP 1.0; an opt-in test runs everything against a real
// namespace. docs/adapters/servicebus.md lists what is proven against what.
package servicebus
