// Package bench measures Herald end to end on a configured database and
// broker: how fast the database alone can hand out and delete outbox rows,
// how fast the broker alone accepts publishes, how close the relay comes to
// the lower of those two ceilings, how long an event takes from its
// producer's commit to the broker's ack at a steady offered rate, and what
// the process costs in CPU and memory meanwhile.
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
//     "herald-bench.>", purged at the start and deleted at the end. The
//     configured stream is never touched. An embedded JetStream server keeps
//     its files in a temporary directory.
//   - Every message the bench's relays publish passes a check: an event the
//     bench did not write (a producer still using the database) is refused
//     with [ErrForeignEvent], which stops the run; the relay records it as a
//     failed attempt, so the row stays pending for the real relay.
//
// Nothing stops a live `herald serve` on the same outbox from relaying the
// bench's rows into the production stream: run the bench on a database no
// relay serves, such as a fresh schema. A phase that loses rows to another
// relay fails with [ErrLost].
//
// # Phases
//
// One run measures, in order: the database drain ceiling (Store.Claim and
// Store.Complete, no publish), the broker publish ceiling (Publisher.Publish
// in batches of relay.batch_size), the relays draining a backlog, and the
// commit→ack latency at a fixed offered rate with the relay's normal wake-up
// (LISTEN/NOTIFY on PostgreSQL, polling elsewhere). With several relays,
// each ceiling uses as many workers, each with its own connection pool and
// publisher, as there are relays. Resources are the whole process's: relays,
// the producer goroutine and, when embedded, the JetStream server.
package bench
