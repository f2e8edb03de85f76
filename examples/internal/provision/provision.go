// Package provision is the side effect the example consumers share: it
// "provisions" a data product by writing a row in the consumer's own SQLite
// database, in the transaction in which consumer.Ledger records the event
// id. The examples differ only in how they receive and acknowledge; replace
// Provision with your own side effect.
package provision

import (
	"context"
	"database/sql"
	"fmt"

	_ "github.com/glebarez/go-sqlite" // the "sqlite" database/sql driver, pure Go

	"github.com/heraldhq/herald/pkg/consumer"
	"github.com/heraldhq/herald/pkg/enricher"
)

// Func is a side effect of one event, run by consumer.Ledger inside the
// transaction that records the event id.
type Func = func(ctx context.Context, tx *sql.Tx, ev consumer.Event) error

// Open opens the consumer's database with OpenDB and a migrated ledger for
// the consumer named name.
func Open(ctx context.Context, path, name string) (*sql.DB, *consumer.Ledger, error) {
	db, err := OpenDB(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	ledger, err := consumer.NewLedger(db, consumer.SQLite, name)
	if err == nil {
		err = ledger.Migrate(ctx)
	}
	if err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("ledger: %w", err)
	}
	return db, ledger, nil
}

// OpenDB opens the consumer's own database and creates the provisioned
// table; the ledger adds its tables next to it. With PostgreSQL or MySQL,
// open it with their driver and pass consumer.Postgres or consumer.MySQL to
// NewLedger.
func OpenDB(ctx context.Context, path string) (*sql.DB, error) {
	// WAL and a busy timeout make concurrent transactions (several
	// deliveries at once) queue instead of failing; IMMEDIATE takes the
	// write lock at BEGIN, so that a transaction never fails half way for
	// want of it.
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := db.ExecContext(ctx, table); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// table records what the consumer provisioned. event_id is deliberately
// not UNIQUE: the ledger alone keeps it to one row per event, and the
// examples' tests count the rows to prove it.
const table = `CREATE TABLE IF NOT EXISTS provisioned (
  event_id        TEXT NOT NULL,
  data_product_id TEXT NOT NULL,
  namespace       TEXT NOT NULL,
  provisioned_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)`

// Provision is the side effect: here a row in the consumer's own database;
// in real life a bucket, a database schema or a topic named after the data
// product. It runs in the ledger's transaction, so the row exists if and
// only if the event id is recorded. A side effect outside the database must
// be idempotent itself (create if absent) and return its error, so that the
// retry runs it again.
func Provision(ctx context.Context, tx *sql.Tx, ev consumer.Event) error {
	if ev.Type != "io.herald.portal.data_product.created" {
		return nil // not for us: recorded as done, and the message is acknowledged
	}
	data, known, err := ev.Decode()
	if err != nil || !known {
		// An error (data that does not fit its type) fails the event, so it
		// is retried until the broker dead-letters it. Not known: a data
		// version this build does not read; nothing to do.
		return err
	}
	dp, ok := data.(enricher.DataProduct)
	if !ok {
		return nil // an enricher.DeletedEntity: the product was gone before Herald saw it
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO provisioned (event_id, data_product_id, namespace) VALUES (?, ?, ?)`,
		ev.ID, dp.ID, dp.Namespace); err != nil {
		return fmt.Errorf("provision %s: %w", dp.Namespace, err)
	}
	return nil
}
