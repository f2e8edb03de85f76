// Package outbox is Herald's transactional outbox: one table in the
// producer's own database, written in the producer's own transaction, so that
// an event exists if and only if the business change that caused it committed.
//
// # Writing
//
// A producer calls [Write] with the transaction that carries its change:
//
//	err := db.Transaction(func(tx *gorm.DB) error {
//		if err := tx.Create(&product).Error; err != nil {
//			return err
//		}
//		ev, err := event.New("io.herald.portal.data_product.created", "/portal", product)
//		if err != nil {
//			return err
//		}
//		return outbox.Write(ctx, tx, ev)
//	})
//
// Write validates every event and stores its serialized CloudEvents JSON. The
// stored bytes are what every later publish sends, so a retry, a second relay
// or a re-publish after a crash sends identical bytes with the same id.
//
// # Destinations
//
// Writers write every event once, for the main destination
// ([MainDestination]). The main destination's relay fans it out
// ([Store.Route]) to each destination a [Router] names, such as a
// partner's webhook for some event types ([Routes] is a static route
// table), before it publishes it. Each destination gets a row of its own,
// so it keeps its own attempts, backoff, per-key order and dead letters:
// one that fails never holds back or duplicates another. A relay serves
// one destination, through [Store.ForDestination].
//
// # Rows and their states
//
// A row is pending until a relay delivers it, then it is deleted (or kept as
// delivered, see [WithKeepDelivered]); after too many failed attempts, or a
// permanent failure, it is dead: kept with its last error for an operator to
// inspect and replay, and out of the way of the rows behind it.
//
// # Relays
//
// Relays lease buckets of partition keys, not rows (docs/outbox.md, "How
// relays deliver"): the database puts every row in one of [Buckets] buckets
// by a hash of its key, and the relay holding a bucket ([Store.Lease]) is the
// only one that reads it. It reads in seq order without locking rows
// ([Store.Read]) and records outcomes in one transaction per batch
// ([Store.Record]): acknowledged rows are deleted, failures wait out their
// backoff. A relay that dies stops renewing its leases; once they run out,
// another relay takes the buckets and publishes what was not recorded again,
// under the same event ids, which brokers de-duplicate.
//
// # Schema
//
// The schema is versioned SQL embedded in the binary, one folder per dialect.
// [Migrate] applies what is missing and records it in herald_schema_migrations;
// [MigrationScript] prints the same SQL for DBAs who apply schema with their
// own tools. PostgreSQL, MySQL 8 / MariaDB 10.6+ and SQLite are supported.
package outbox
