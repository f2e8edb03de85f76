package consumer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Outcome is what [Ledger.Process] did with an event.
type Outcome int

// The outcomes of Process. Each of them means the event is handled: ack it.
const (
	// Applied: fn ran and committed with the event's id.
	Applied Outcome = iota + 1
	// Duplicate: this consumer had already handled the id; fn did not run.
	Duplicate
	// Stale: this consumer had already applied a newer event about the same
	// subject; the id is recorded and fn did not run.
	Stale
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case Stale:
		return "stale"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Ledger records, in the consumer's own database and transaction, which
// events a consumer has applied, and the latest event time applied per
// subject (the stale-update rule).
//
// A Ledger is safe for concurrent use, and so is the same consumer name in
// several processes: the database's keys and locks, not the Ledger, keep one
// event from being applied twice.
type Ledger struct {
	db       *sql.DB
	d        dialect
	consumer string
}

// NewLedger returns the ledger of the named consumer in db. The name is
// required and identifies the consumer for good: several consumers (services,
// or one service's independent handlers) can share one database, each seeing
// only its own records. Renaming a consumer makes it see every event as new.
func NewLedger(db *sql.DB, dialect Dialect, consumer string) (*Ledger, error) {
	if db == nil {
		return nil, errors.New("consumer ledger: db: required")
	}
	d, err := dialectOf(dialect)
	if err != nil {
		return nil, fmt.Errorf("consumer ledger: %w", err)
	}
	switch {
	case consumer == "":
		return nil, fmt.Errorf("consumer ledger: consumer name: required: %w", ErrInvalid)
	case len(consumer) > maxConsumerLen:
		return nil, fmt.Errorf("consumer ledger: consumer name: longer than %d bytes: %w", maxConsumerLen, ErrInvalid)
	}
	return &Ledger{db: db, d: d, consumer: consumer}, nil
}

// Migrate creates the ledger's two tables and their index if they do not
// exist ([MigrationSQL] lists the statements). It is safe to run at every
// start, from several processes at once.
func (l *Ledger) Migrate(ctx context.Context) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate consumer ledger: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if l.d.name == Postgres {
		// Concurrent CREATE TABLE IF NOT EXISTS can still collide on
		// PostgreSQL's catalogue; serialise the replicas of a service that
		// all migrate at boot. (MySQL DDL is not transactional and safe
		// without; SQLite has one writer.)
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(`+strconv.FormatInt(migrateLockKey, 10)+`)`); err != nil {
			return fmt.Errorf("migrate consumer ledger: lock: %w", err)
		}
	}
	for _, stmt := range l.d.schema {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate consumer ledger: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate consumer ledger: %w", err)
	}
	return nil
}

// migrateLockKey is the PostgreSQL advisory lock Migrate holds: an arbitrary
// constant ("herald consumer" in ASCII, in part).
const migrateLockKey int64 = 0x68657261_6c64_63

// Handle is what a receiver does with a message body: [Parse] it, then
// [Ledger.Process] it with fn, which gets the parsed event. It returns the
// event as far as it was parsed, for logs. An error wrapping [ErrInvalid]
// (not a CloudEvent) will never succeed: dead-letter the message; any other
// error: let the broker redeliver it.
func (l *Ledger) Handle(ctx context.Context, body []byte, fn func(ctx context.Context, tx *sql.Tx, ev Event) error) (Event, Outcome, error) {
	ev, err := Parse(body)
	if err != nil {
		return ev, 0, err
	}
	outcome, err := l.Process(ctx, ev, func(ctx context.Context, tx *sql.Tx) error { return fn(ctx, tx, ev) })
	return ev, outcome, err
}

// Process runs fn at most once per event id for this consumer: in ONE
// transaction it records the id (INSERT ... ON CONFLICT DO NOTHING on
// PostgreSQL/SQLite, INSERT IGNORE on MySQL/MariaDB), then applies the
// stale-update rule (if ev.Subject and ev.Time are set and this consumer
// already applied a strictly newer Time for that Subject, the event is Stale:
// its id is recorded, fn is not run), then runs fn(ctx, tx) and commits. If fn
// returns an error the transaction rolls back (nothing recorded) and Process
// returns that error wrapped, so the broker's redelivery retries it. A
// Duplicate or Stale outcome returns a nil error: the caller acks.
//
// fn must do its database work through tx and must not commit or roll it
// back. Times are compared at microsecond precision, the precision every
// dialect stores; an event as new as the newest applied is applied.
//
// Any error means the event was not recorded: do not ack, so the broker
// redelivers it. That includes the database's own refusals under contention
// (a MySQL deadlock, a PostgreSQL serialization failure), which a retry
// resolves. An error wrapping [ErrInvalid] (an empty id, an id or subject
// longer than the ledger stores) will never succeed: dead-letter the message.
func (l *Ledger) Process(ctx context.Context, ev Event, fn func(ctx context.Context, tx *sql.Tx) error) (Outcome, error) {
	if err := checkEvent(ev); err != nil {
		return 0, fmt.Errorf("consumer %s: %w", l.consumer, err)
	}
	if fn == nil {
		return 0, fmt.Errorf("consumer %s: event %s: nil fn", l.consumer, ev.ID)
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("consumer %s: event %s: begin: %w", l.consumer, ev.ID, err)
	}
	defer func() { _ = tx.Rollback() }() // after Commit, a no-op

	outcome, err := l.record(ctx, tx, ev)
	if err != nil {
		return 0, fmt.Errorf("consumer %s: event %s: %w", l.consumer, ev.ID, err)
	}
	switch outcome {
	case Duplicate:
		return Duplicate, nil // nothing written; the deferred rollback ends tx
	case Applied:
		if err := fn(ctx, tx); err != nil {
			return 0, fmt.Errorf("consumer %s: event %s (%s): %w", l.consumer, ev.ID, ev.Type, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("consumer %s: event %s: commit: %w", l.consumer, ev.ID, err)
	}
	return outcome, nil
}

func checkEvent(ev Event) error {
	switch {
	case ev.ID == "":
		return &AttributeError{Attribute: "id", Reason: "required"}
	case len(ev.ID) > maxIDLen:
		return &AttributeError{Attribute: "id", Reason: fmt.Sprintf("longer than the %d bytes the ledger stores", maxIDLen)}
	case len(ev.Subject) > maxSubjectLen:
		return &AttributeError{Attribute: "subject", Reason: fmt.Sprintf("longer than the %d bytes the ledger stores", maxSubjectLen)}
	}
	return nil
}

// record claims ev's id for this consumer and applies the stale-update rule,
// in tx. Applied means fn is to run.
func (l *Ledger) record(ctx context.Context, tx *sql.Tx, ev Event) (Outcome, error) {
	res, err := tx.ExecContext(ctx, l.d.insertEvent,
		l.consumer, ev.ID, outcomeApplied, l.d.encodeTime(storedTime(time.Now())))
	if err != nil {
		return 0, fmt.Errorf("record event id: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("record event id: %w", err)
	}
	if n == 0 {
		return Duplicate, nil
	}
	if ev.Subject == "" || ev.Time.IsZero() {
		return Applied, nil
	}
	stale, err := l.advanceSubject(ctx, tx, ev.Subject, storedTime(ev.Time), ev.ID)
	if err != nil {
		return 0, err
	}
	if !stale {
		return Applied, nil
	}
	if _, err := tx.ExecContext(ctx, l.d.markStale, l.consumer, ev.ID); err != nil {
		return 0, fmt.Errorf("record stale event: %w", err)
	}
	return Stale, nil
}

// advanceSubject locks the subject's row, creating it if needed, and moves it
// to t unless it already holds a later time (stale). The lock is held to the
// end of tx, so two events of one subject are applied one after the other and
// the second compares against the first's time.
func (l *Ledger) advanceSubject(ctx context.Context, tx *sql.Tx, subject string, t time.Time, id string) (stale bool, err error) {
	if _, err := tx.ExecContext(ctx, l.d.touchSubject, l.consumer, subject, l.d.encodeTime(t), id); err != nil {
		return false, fmt.Errorf("subject %s: %w", subject, err)
	}
	var (
		rawTime  any
		latestID string
	)
	if err := tx.QueryRowContext(ctx, l.d.selectSubject, l.consumer, subject).Scan(&rawTime, &latestID); err != nil {
		return false, fmt.Errorf("subject %s: %w", subject, err)
	}
	latest, err := l.d.decodeTime(rawTime)
	if err != nil {
		return false, fmt.Errorf("subject %s: %w", subject, err)
	}
	switch {
	case latest.After(t):
		return true, nil
	case latest.Equal(t) && latestID == id:
		return false, nil // the row this transaction just created
	}
	if _, err := tx.ExecContext(ctx, l.d.updateSubject, l.d.encodeTime(t), id, l.consumer, subject); err != nil {
		return false, fmt.Errorf("subject %s: %w", subject, err)
	}
	return false, nil
}

// Prune deletes this consumer's records of event ids handled before the
// given time, and returns how many it deleted, to keep the events table from
// growing for ever. The per-subject times are kept, so the stale-update rule
// still protects every subject; but a pruned id delivered again counts as
// new, and is applied again unless a newer event of its subject was applied
// since. Prune only what no broker can redeliver any more: older than the
// longest retention, redelivery and dead-letter replay window you run with.
func (l *Ledger) Prune(ctx context.Context, before time.Time) (int64, error) {
	res, err := l.db.ExecContext(ctx, l.d.pruneEvents, l.consumer, l.d.encodeTime(storedTime(before)))
	if err != nil {
		return 0, fmt.Errorf("consumer %s: prune: %w", l.consumer, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("consumer %s: prune: %w", l.consumer, err)
	}
	return n, nil
}
