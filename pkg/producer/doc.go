// Package producer is the relay: it moves events from the outbox to a broker.
//
// A [Relay] repeats one cycle: claim a batch of pending rows with a lease,
// publish their stored bytes through an [adapters.Publisher], and record each
// row's outcome in one transaction:
//
//   - accepted by the broker: the row is deleted (or marked delivered);
//   - failed: the row waits out an exponential backoff with jitter and is
//     tried again, with the error kept in last_error;
//   - failed permanently (adapters.ErrPermanent), or for the last allowed
//     time: the row is dead-lettered with its reason, and the rows behind it
//     keep flowing.
//
// Delivery is at least once. If a relay dies after publishing and before
// recording, its lease runs out and another relay publishes the batch again;
// the event id travels as the broker's duplicate-detection id, so the broker
// drops the copy, and consumers de-duplicate by the same id for brokers that
// cannot.
//
// Run stops gracefully when its context is cancelled: it claims nothing more,
// waits (up to the shutdown timeout) for the acks of the batch in flight,
// records them, hands back rows it claimed but did not publish, and returns.
package producer
