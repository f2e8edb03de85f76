package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/outbox"
)

// referenceBatch is the reference relay's rows per transaction.
const referenceBatch = 500

// The reference relay's statements, written out whole per dialect so each
// can be run and EXPLAINed as it is. They take the destination, the event
// type and the batch size: the bench's event type keeps them off rows the
// bench did not write, and the destination lets them use the outbox's
// pending index as a relay's claim does.
const (
	referencePostgres = `DELETE FROM herald_outbox WHERE seq IN (
  SELECT seq FROM herald_outbox
  WHERE state = 'pending' AND destination = $1 AND event_type = $2
  ORDER BY seq LIMIT $3
  FOR UPDATE SKIP LOCKED)
RETURNING event_id, payload`
	// SQLite has one writer at a time, and so no row locks to skip.
	referenceSQLite = `DELETE FROM herald_outbox WHERE seq IN (
  SELECT seq FROM herald_outbox
  WHERE state = 'pending' AND destination = ? AND event_type = ?
  ORDER BY seq LIMIT ?)
RETURNING event_id, payload`
	// MariaDB has DELETE … RETURNING, but refuses a LIMIT subquery on the
	// table it deletes from (and MySQL has no RETURNING): lock the rows,
	// then delete them by key, in the same transaction.
	referenceMySQLLock = `SELECT seq, event_id, payload FROM herald_outbox
WHERE state = 'pending' AND destination = ? AND event_type = ?
ORDER BY seq LIMIT ?
FOR UPDATE SKIP LOCKED`
	// FORCE INDEX, which only the multi-table form takes: once few rows are
	// left, MariaDB prefers a full scan to 500 key lookups, and the scan
	// waits on every row another worker has locked or deleted.
	referenceMySQLDelete = `DELETE o FROM herald_outbox o FORCE INDEX (PRIMARY) WHERE o.seq IN (%s)`
)

// mysqlDeadlock is the MySQL and MariaDB error number of a transaction
// rolled back to break a deadlock.
const mysqlDeadlock = 1213

// referenceStats are what the reference workers did, summed.
type referenceStats struct {
	rows, transactions atomic.Int64
	// deadlocks counts batches rolled back by MySQL or MariaDB and retried.
	deadlocks atomic.Int64
	// publishing is the time spent from a batch's first publish to its
	// last ack, in nanoseconds.
	publishing atomic.Int64
}

// referencePhase measures the naive relay written out plainly: in one
// transaction, delete a batch of pending rows returning them, publish every
// one straight with the JetStream client, wait for all the acks, commit.
// No lease, no ordering, no retry bookkeeping: what Herald's relay should
// come close to, on the same database and broker.
func (b *bench) referencePhase(ctx context.Context, rep *Report) error {
	n := b.opts.Events
	b.progress("2/5 reference relay: writing %d events", n)
	b.settle(ctx)
	load, err := b.writeBacklog(ctx, n)
	if err != nil {
		return err
	}
	rep.Load = load
	b.progress("2/5 reference relay: draining with %d worker(s), %d rows per transaction", len(b.lanes), referenceBatch)
	var (
		got acks
		st  referenceStats
		wg  sync.WaitGroup
	)
	errs := make([]error, len(b.lanes))
	cpu0, _ := cpuTime()
	start := time.Now()
	for i, l := range b.lanes {
		wg.Go(func() { errs[i] = b.referenceWorker(ctx, l, &got, &st) })
	}
	wg.Wait()
	wall := time.Since(start)
	cpu1, _ := cpuTime()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: reference relay: %w", err)
	}
	left, err := b.lanes[0].app.Store.Count(ctx, outbox.Filter{State: outbox.StatePending, Type: EventType})
	if err != nil {
		return fmt.Errorf("bench: reference relay: %w", err)
	}
	if done := st.rows.Load(); done != int64(n) || left != 0 {
		return fmt.Errorf("bench: reference relay: %w: relayed %d of %d rows and %d are left pending: is another relay serving this outbox?",
			ErrLost, done, n, left)
	}
	// Timed to the last ack, as Herald's relay is: the commit after it is
	// the counterpart of the relay recording its last batch.
	took := got.lastAck().Sub(start)
	r := &Reference{
		Throughput:   *throughput(n, took),
		Workers:      len(b.lanes),
		Transactions: st.transactions.Load(),
		Deadlocks:    st.deadlocks.Load(),
		PublishShare: 100 * float64(st.publishing.Load()) / float64(took*time.Duration(len(b.lanes))),
		Acked:        got.acked.Load(),
		Duplicates:   got.duplicates.Load(),
		CPUCores:     (cpu1 - cpu0).Seconds() / wall.Seconds(),
	}
	if r.Transactions > 0 {
		r.MeanBatch = float64(n) / float64(r.Transactions)
	}
	rep.Reference = r
	return b.checkPhase(ctx, rep, "reference relay", got.stored())
}

// referenceWorker relays batches on one lane until it finds no row left to
// take. Rows other workers have locked are theirs: they either commit them
// or fail the phase, so an empty batch means this worker is done.
//
// On MySQL and MariaDB a batch can deadlock with another worker's: when
// their SKIP LOCKED reads ran side by side they took alternate rows, and
// the DELETE by key reads, and waits on, rows next to its own: the other's.
// The deadlock strikes the DELETE, before anything is published, so the
// batch is simply taken again, as any relay on MySQL must be ready to.
func (b *bench) referenceWorker(ctx context.Context, l lane, got *acks, st *referenceStats) error {
	db, err := l.app.DB.DB()
	if err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		n, err := b.referenceBatch(ctx, db, l.js, got, st)
		if my := (*gomysql.MySQLError)(nil); errors.As(err, &my) && my.Number == mysqlDeadlock {
			st.deadlocks.Add(1)
			continue
		}
		if err != nil || n == 0 {
			return err
		}
	}
}

// referenceBatch relays one batch in one transaction and returns its rows.
// Cancelling ctx rolls the transaction back: the rows stay pending for the
// bench's cleanup.
func (b *bench) referenceBatch(ctx context.Context, db *sql.DB, js jetstream.JetStream, got *acks, st *referenceStats) (int, error) {
	var opts *sql.TxOptions
	if b.cfg.Database.Driver == "mysql" {
		// As the relay's claim does: REPEATABLE READ would take gap locks.
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op once committed
	msgs, err := b.referenceTake(ctx, tx)
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	start := time.Now()
	acked, dups, err := publishAsync(ctx, js, msgs, rawMaxPending)
	st.publishing.Add(int64(time.Since(start)))
	got.add(acked, dups)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	st.transactions.Add(1)
	st.rows.Add(int64(len(msgs)))
	return len(msgs), nil
}

// referenceTake deletes up to referenceBatch pending bench rows in tx and
// returns them as messages.
func (b *bench) referenceTake(ctx context.Context, tx *sql.Tx) ([]*natsgo.Msg, error) {
	q := referencePostgres
	switch b.cfg.Database.Driver {
	case "sqlite":
		q = referenceSQLite
	case "mysql":
		q = referenceMySQLLock
	}
	rows, err := tx.QueryContext(ctx, q, outbox.MainDestination, EventType, referenceBatch)
	if err != nil {
		return nil, fmt.Errorf("take a batch: %w", err)
	}
	defer func() { _ = rows.Close() }()
	msgs := make([]*natsgo.Msg, 0, referenceBatch)
	var seqs []any
	for rows.Next() {
		var (
			seq     int64
			id      string
			payload []byte
		)
		dest := []any{&id, &payload}
		if b.cfg.Database.Driver == "mysql" {
			dest = []any{&seq, &id, &payload}
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("take a batch: scan: %w", err)
		}
		msgs = append(msgs, rawMessage(id, payload))
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("take a batch: %w", err)
	}
	if b.cfg.Database.Driver != "mysql" || len(msgs) == 0 {
		return msgs, nil
	}
	del := fmt.Sprintf(referenceMySQLDelete, strings.TrimSuffix(strings.Repeat("?, ", len(seqs)), ", "))
	if _, err := tx.ExecContext(ctx, del, seqs...); err != nil {
		return nil, fmt.Errorf("take a batch: delete: %w", err)
	}
	return msgs, nil
}
