// Package bench measures Herald end to end on a configured database and
// broker, against yardsticks measured in the same run on the same database
// and broker: how fast the broker alone accepts publishes, how fast a naive
// relay written out plainly drains the outbox, how close Herald's relay
// comes to both at several backlog sizes, what the outbox's wake-up costs
// the producers' commits, how long an event takes from its producer's
// commit to the broker's ack at a steady offered rate, and what the process
// costs in CPU and memory meanwhile.
//
// # Isolation
//
// The bench writes real rows and real messages, so it keeps them apart from
// anything it did not create:
//
//   - An SQLite outbox is always a fresh temporary file, whatever the config
//     names. A PostgreSQL or MySQL/MariaDB outbox must be empty when the
//     bench starts ([ErrOutboxNotEmpty] otherwise), because relays claim
//     every pending row; at the end the bench deletes the rows of its own
//     event type ([EventType]) and no others. The schema must be migrated.
//   - Events go to a stream of their own, [Stream] capturing
//     "herald-bench.>", purged at the start and after each phase, and
//     deleted at the end. The configured stream is never touched. An
//     embedded JetStream server keeps its files in a temporary directory.
//   - The writers' phase creates [CopyTable] beside the outbox and drops it
//     again, also when the phase fails.
//   - Every message the bench's relays publish passes a check: an event the
//     bench did not write (a producer still using the database) is refused
//     with [ErrForeignEvent], which stops the run; the relay records it as a
//     failed attempt, so the row stays pending for the real relay. The
//     reference relay takes only rows of the bench's event type.
//
// Nothing stops a live `herald serve` on the same outbox from relaying the
// bench's rows into the production stream: run the bench on a database no
// relay serves, such as a fresh schema. A phase that loses rows to another
// relay fails with [ErrLost].
//
// # Phases
//
// One run measures, in order, each phase starting from an outbox without
// bench rows and an empty stream:
//
//  1. The broker ceiling: pre-built events published straight with the
//     JetStream client, not through Herald's adapter, up to 1,024 acks
//     pending.
//  2. The reference relay: in one transaction, DELETE … RETURNING the
//     oldest 500 pending bench rows (SELECT … FOR UPDATE SKIP LOCKED, then
//     DELETE, on MySQL and MariaDB), publish each with the JetStream client,
//     await the acks, commit. No lease, no ordering: the pipeline Herald's
//     relay adds its guarantees to.
//  3. Herald's relays draining a backlog of each size in Options.Backlogs,
//     reported as a multiple of 1 and 2 and in µs per event, so that one
//     can see the per-event cost stay flat as the backlog grows.
//  4. The writers' commit rate: one row per transaction, in turns into the
//     outbox with whatever triggers it has (read from the catalog, with the
//     LISTEN connections `herald serve` holds on PostgreSQL) and into
//     [CopyTable], a copy with the same columns and indexes and no
//     triggers, after an unrecorded warm-up turn on each: a first turn is
//     slower whichever table it is on. No relay runs.
//  5. Commit→ack latency at a fixed offered rate with the relay's normal
//     wake-up (LISTEN/NOTIFY on PostgreSQL, polling elsewhere).
//
// After each of 1, 2, 3 and 5 the stream must hold exactly the events the
// phase had acked, each once, before it is purged for the next. With
// several relays, 1 and 2 use as many workers, each with its own
// connection pool and broker connection, as there are relays. Resources
// are the whole process's: relays, the producer goroutines and, when
// embedded, the JetStream server.
package bench
