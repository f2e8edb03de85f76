// Package consumer is the core of Herald's consumer kit: what a Go service
// that receives Herald's events needs to apply each one exactly once, in
// effect, although the broker delivers it at least once.
//
// It has two halves. [Parse] and [Event.Decode] read an event leniently, so a
// newer Herald never breaks an older consumer. [Ledger] remembers, in the
// consumer's own database and in the same transaction as the consumer's own
// writes, which events it has applied.
//
// # Delivery semantics
//
// Herald delivers every event at least once. A relay that dies after
// publishing a batch and before recording it publishes the batch again; a
// broker redelivers a message that was not acknowledged in time; an operator
// replays dead letters. Some brokers drop a copy within a window (JetStream's
// duplicate window, SQS FIFO's five minutes, Service Bus duplicate
// detection), but an SQS standard queue, a webhook, or any copy later than
// the window reaches the consumer twice. So every consumer must be
// idempotent.
//
// The de-duplication key is the CloudEvents id: a UUIDv7 assigned once, when
// the event is written to the outbox, and kept by every retry, relay
// take-over and replay. Nothing else identifies a delivery: two events with
// the same subject, type and data are two events.
//
// # Processing an event
//
// For each message received:
//
//  1. [Parse] the body. An error wrapping [ErrInvalid] means it is not a
//     CloudEvent Herald could have sent: no redelivery will fix it, so
//     dead-letter it (or ack and log it) instead of letting it block the rest.
//  2. Call [Ledger.Process] with a function that applies the event through the
//     transaction it is given. Inside it, [Event.Decode] returns the data as
//     the catalogue's Go type (package enricher's data types, from which the
//     published JSON Schemas are generated). An unknown event type is
//     known == false, not an error: return nil and the event is recorded as
//     handled.
//  3. On a nil error, ack: the outcome is [Applied], [Duplicate] (handled
//     before; the function did not run) or [Stale] (see below; it did not run
//     either). On any other error, do not ack: nothing was recorded and the
//     function's writes were rolled back, so the broker's redelivery retries
//     the whole thing. Use the broker's own dead-letter setting (JetStream
//     MaxDeliver, an SQS redrive policy, Service Bus max delivery count) so
//     an event that always fails does not block the others for ever.
//
// Process records the event id and runs the function in one database
// transaction: the id is recorded if and only if the function's writes
// commit. A crash at any point leaves either both or neither, and a
// redelivery then finds either a [Duplicate] or a fresh start.
//
// Two deliveries of one event handled at the same moment, by two goroutines
// or two replicas, do not both run the function: the second's INSERT of the
// id waits on the first's uncommitted row, then finds it committed
// (Duplicate) or rolled back (it proceeds).
//
// # Side effects outside the database
//
// A call to a cloud API cannot join the transaction. Make it idempotent
// itself (create-if-absent, keyed by the entity's id, or a request id derived
// from the event id), call it inside the function, and return its error: the
// transaction then rolls back, the id is not recorded, and the retry calls it
// again. If the call succeeds and the commit then fails, the retry calls it a
// second time, which is why it must be idempotent.
//
// # The stale-update rule
//
// An event carries the state of its entity as Herald saw it; events of one
// partition key are published in order, but a broker without ordering (an
// SQS standard queue, parallel webhook deliveries), a redelivery or a replay
// can hand a consumer an older event after a newer one. Applying it would
// undo the newer state. So, per consumer and subject (the entity the event
// is about, e.g. data_products/<id>), the ledger keeps the time of the newest
// event applied, and Process skips an event whose time is strictly older:
// the outcome is [Stale], its id is recorded so a redelivery is a
// [Duplicate], and the function does not run. An event as new as the newest
// is applied. Events without a subject or a time skip the rule.
//
// The subject's row is locked from the comparison to the commit (SELECT ...
// FOR UPDATE on PostgreSQL and MySQL; SQLite has one writer at a time), so
// two events of one subject processed at once are applied one after the
// other, and the later check sees the earlier's time. Times are compared at
// microsecond precision, the finest every dialect stores.
//
// The rule fits events that carry a whole state, as the created, updated and
// deleted events of Herald's catalogue do. A consumer of events that each
// carry a delta of their own should drop the subject, or keep its own rule.
//
// # Forward compatibility
//
// Parse requires only what de-duplication and routing need (specversion
// "1.0", id, source, type) and ignores attributes it does not know; Decode
// and [DecodeData] ignore data fields they do not know. Herald's versioning
// policy makes additive changes within a schema version, and emits a
// breaking change as a new version (a new dataschema) beside the old one for
// a deprecation window: Decode reports an event of another data version as
// not known, so a consumer keeps applying the version it was built for.
//
// # Databases
//
// The ledger keeps two small tables in the consumer's own database:
// PostgreSQL, MySQL/MariaDB or SQLite, through database/sql and whichever
// driver the consumer already uses (pgx's stdlib, go-sql-driver/mysql, a
// pure-Go or cgo SQLite). [Ledger.Migrate] creates them; [MigrationSQL]
// returns the same statements for a migration tool. Several consumers can
// share the tables: every row carries the consumer's name. Ids and consumer
// names may be up to 255 bytes long and subjects up to 1024 (CloudEvents ids
// are 36-byte UUIDs), compared byte for byte on every dialect. Times are stored
// in UTC; on MySQL they are written as text, so the DSN's parseTime and loc
// do not matter. For SQLite, open the database with a busy timeout (e.g.
// _pragma=busy_timeout(10000)) so concurrent writers wait for each other
// instead of failing. [Ledger.Prune] deletes old event ids when the table
// grows too large.
package consumer
