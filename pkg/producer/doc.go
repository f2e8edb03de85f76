// Package producer is the relay: it moves events from the outbox to a broker.
//
// A [Relay] leases buckets of partition keys (see package outbox), reads the
// pending rows of its buckets in seq order, publishes their stored bytes
// through an [adapters.Publisher] one batch at a time, and records each
// batch's outcomes in one transaction; the three steps overlap, up to three
// batches deep (docs/outbox.md, "How relays deliver"):
//
//   - accepted by the broker: the row is deleted (or marked delivered);
//   - failed: the row waits out an exponential backoff with jitter (or a
//     retry schedule) and is tried again, with the error kept in last_error;
//     with ordering, its key's later rows wait with it;
//   - failed permanently (adapters.ErrPermanent), or for the last allowed
//     time: the row is dead-lettered with its reason, and the rows behind it
//     keep flowing.
//
// Delivery is at least once. If a relay dies after publishing and before
// recording, its bucket leases run out and another relay publishes the rows
// again;
// the event id travels as the broker's duplicate-detection id, so the broker
// drops the copy, and consumers de-duplicate by the same id for brokers that
// cannot.
//
// Run stops gracefully when its context is cancelled: it reads nothing more,
// waits (up to the shutdown timeout) for the acks of the batch in flight,
// records them, hands its buckets back at once, and returns. Rows it had read
// and not published simply stay pending.
package producer
