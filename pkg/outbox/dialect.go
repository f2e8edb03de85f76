package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// ErrUnsupportedDialect is returned for a database Herald has no schema for.
var ErrUnsupportedDialect = errors.New("unsupported database dialect")

// Dialects lists the dialects whose migrations are embedded.
func Dialects() []string { return []string{"sqlite", "postgres", "mysql"} }

// dialect holds what differs between databases. Statements are written out
// whole rather than composed from fragments, so each can be read, run in a
// console and EXPLAINed as it is.
type dialect struct {
	name string
	// encodeTime converts a time to the column's parameter form.
	encodeTime func(time.Time) any
	// nowSQL is the dialect's "current UTC time" in column form, for the
	// printed migration script.
	nowSQL string
	// migrationsTable creates herald_schema_migrations.
	migrationsTable string
	// claim leases up to limit claimable rows to owner; see Store.Claim.
	claim func(ctx context.Context, db *gorm.DB, a claimArgs) ([]Row, error)
}

type claimArgs struct {
	owner       string
	destination string
	now         time.Time
	until       time.Time
	limit       int
	ordered     bool
}

// claimable is the condition every dialect claims by, with the destination
// and the current time as its arguments. With ordering, a row qualifies only
// while no earlier row of its partition key is pending for its destination:
// the key's head. A head that is leased or waiting out a backoff is pending, so
// nothing behind it moves, while other keys flow; rows without a key are
// never held back.
const (
	claimableWhere = `o.state = 'pending' AND o.destination = ? AND o.available_at <= ?`
	orderedWhere   = ` AND (o.partition_key = '' OR NOT EXISTS (
    SELECT 1 FROM herald_outbox p
    WHERE p.destination = o.destination AND p.partition_key = o.partition_key
      AND p.state = 'pending' AND p.seq < o.seq))`
	returnedColumns = `seq, destination, event_id, event_type, partition_key, payload, attempts, created_at, last_error`
)

func candidates(ordered bool) string {
	if ordered {
		return claimableWhere + orderedWhere
	}
	return claimableWhere
}

const sqliteTimeLayout = "2006-01-02T15:04:05.000Z"

// Fixed width, so that string order is time order.
func sqliteTime(t time.Time) any { return t.UTC().Format(sqliteTimeLayout) }

var sqliteDialect = dialect{
	name:       "sqlite",
	encodeTime: sqliteTime,
	nowSQL:     "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
	migrationsTable: `CREATE TABLE IF NOT EXISTS herald_schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`,
	// One statement: SQLite has one writer at a time, so the statement is
	// atomic without row locks (and SQLite has none to skip).
	claim: func(ctx context.Context, db *gorm.DB, a claimArgs) ([]Row, error) {
		enc := sqliteTime
		q := `UPDATE herald_outbox
SET lease_owner = ?, lease_expires_at = ?, available_at = ?, attempts = attempts + 1
WHERE seq IN (
  SELECT o.seq FROM herald_outbox o
  WHERE ` + candidates(a.ordered) + `
  ORDER BY o.seq LIMIT ?)
RETURNING ` + returnedColumns
		return queryClaimed(ctx, db, a, q, a.owner, enc(a.until), enc(a.until), a.destination, enc(a.now), a.limit)
	},
}

var postgresDialect = dialect{
	name:       "postgres",
	encodeTime: func(t time.Time) any { return t.UTC() },
	nowSQL:     "now()",
	migrationsTable: `CREATE TABLE IF NOT EXISTS herald_schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL
)`,
	// One statement: the subquery locks the rows it picks and skips rows
	// another relay's claim is locking right now, so relays never wait on
	// each other and never take the same row.
	claim: func(ctx context.Context, db *gorm.DB, a claimArgs) ([]Row, error) {
		q := `UPDATE herald_outbox
SET lease_owner = ?, lease_expires_at = ?, available_at = ?, attempts = attempts + 1
WHERE seq IN (
  SELECT o.seq FROM herald_outbox o
  WHERE ` + candidates(a.ordered) + `
  ORDER BY o.seq LIMIT ?
  FOR UPDATE SKIP LOCKED)
RETURNING ` + returnedColumns
		return queryClaimed(ctx, db, a, q, a.owner, a.until.UTC(), a.until.UTC(), a.destination, a.now.UTC(), a.limit)
	},
}

var mysqlDialect = dialect{
	name:       "mysql",
	encodeTime: func(t time.Time) any { return t.UTC() },
	nowSQL:     "UTC_TIMESTAMP(6)",
	migrationsTable: `CREATE TABLE IF NOT EXISTS herald_schema_migrations (
  version    INT PRIMARY KEY,
  name       VARCHAR(255) NOT NULL,
  applied_at DATETIME(6) NOT NULL
)`,
	// MySQL and MariaDB have no UPDATE … RETURNING: lock the rows with
	// SKIP LOCKED, then lease them, in one READ COMMITTED transaction
	// (REPEATABLE READ would take gap locks that stall producers' INSERTs).
	// With ordering, the heads are found before that, by mysqlHeads.
	claim: func(ctx context.Context, db *gorm.DB, a claimArgs) ([]Row, error) {
		q := `SELECT ` + returnedColumns + ` FROM herald_outbox o
WHERE ` + claimableWhere + `
ORDER BY o.seq LIMIT ?
FOR UPDATE SKIP LOCKED`
		args := []any{a.destination, a.now.UTC(), a.limit}
		if a.ordered {
			heads, err := mysqlHeads(ctx, db, a)
			if err != nil || len(heads) == 0 {
				return nil, err
			}
			// The head test is not repeated under the lock: a head stops
			// being one only when it leaves (delivered, dead, leased: the
			// pending and available_at tests catch that) or when an
			// earlier row of its key reappears, which no claim can rule out
			// (a producer's transaction committing late, a dead letter
			// retried) in any form of this statement.
			q = `SELECT ` + returnedColumns + ` FROM herald_outbox o
WHERE o.seq IN (` + placeholders(len(heads)) + `) AND ` + claimableWhere + `
ORDER BY o.seq LIMIT ?
FOR UPDATE SKIP LOCKED`
			args = append(heads, args...)
		}
		var rows []Row
		err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var err error
			rows, err = queryClaimed(ctx, tx, a, q, args...)
			if err != nil || len(rows) == 0 {
				return err
			}
			lease := []any{a.owner, a.until.UTC(), a.until.UTC()}
			for _, r := range rows {
				lease = append(lease, r.Seq)
			}
			err = tx.Exec(`UPDATE herald_outbox
SET lease_owner = ?, lease_expires_at = ?, available_at = ?, attempts = attempts + 1
WHERE seq IN (`+placeholders(len(rows))+`)`, lease...).Error
			for i := range rows {
				rows[i].Attempts++ // the SELECT saw them before this claim counted
			}
			return err
		}, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		return rows, err
	},
}

// mysqlOrderedWhere is orderedWhere for MySQL and MariaDB. They cannot
// bound a correlated index scan by p.seq < o.seq, so for a key's head a
// NOT EXISTS reads every pending row of its key, and a claim over a hot key
// reads the key once per head. Asking for the key's first pending row reads
// one index entry. The hint keeps the optimizer from walking the claim
// index in seq order instead, looking for the key (500 rows a head where
// it did so).
const mysqlOrderedWhere = ` AND (o.partition_key = '' OR o.seq = (
    SELECT p.seq FROM herald_outbox p FORCE INDEX (herald_outbox_key)
    WHERE p.destination = o.destination AND p.partition_key = o.partition_key AND p.state = 'pending'
    ORDER BY p.seq LIMIT 1))`

// mysqlHeadWindow sizes, in batches, the pending rows mysqlHeads looks at
// first.
const mysqlHeadWindow = 10

// mysqlHeads finds the seqs of up to twice limit claimable heads with plain
// reads, which take no locks; twice, so that a claimer whose first picks
// another claimer is locking still fills its batch.
//
// The first read looks only at the oldest mysqlHeadWindow·limit pending
// rows, and only when none of them is claimable does a second read search
// the whole destination. A claim that finds fewer free heads than its limit
// (every key's head leased, say) would otherwise read every pending row, and
// on MariaDB concurrent relays making such claims slowed each other down
// until four ordered relays took 56 to 586 s to drain 100k events
// (docs/benchmarks.md). No head waits on the window for long: the rows
// ahead of it only leave, and a window without a claimable row falls
// through to the full search.
func mysqlHeads(ctx context.Context, db *gorm.DB, a claimArgs) ([]any, error) {
	window := `SELECT o.seq FROM (
  SELECT seq, destination, partition_key, state, available_at FROM herald_outbox
  WHERE state = 'pending' AND destination = ?
  ORDER BY seq LIMIT ?) o
WHERE ` + claimableWhere + mysqlOrderedWhere + `
ORDER BY o.seq LIMIT ?`
	var found []int64
	err := db.WithContext(ctx).Raw(window, a.destination, mysqlHeadWindow*a.limit, a.destination, a.now.UTC(), 2*a.limit).Scan(&found).Error
	if err == nil && len(found) == 0 {
		all := `SELECT o.seq FROM herald_outbox o
WHERE ` + claimableWhere + mysqlOrderedWhere + `
ORDER BY o.seq LIMIT ?`
		err = db.WithContext(ctx).Raw(all, a.destination, a.now.UTC(), 2*a.limit).Scan(&found).Error
	}
	if err != nil {
		return nil, fmt.Errorf("find heads: %w", err)
	}
	seqs := make([]any, len(found))
	for i, s := range found {
		seqs[i] = s
	}
	return seqs, nil
}

// queryClaimed runs a claim statement and scans the rows it returns.
func queryClaimed(ctx context.Context, db *gorm.DB, a claimArgs, q string, args ...any) ([]Row, error) {
	rows, err := db.WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		r := Row{State: StatePending, LeaseOwner: a.owner, LeaseExpiresAt: a.until.UTC(), AvailableAt: a.until.UTC()}
		var created any
		var lastErr sql.NullString
		if err := rows.Scan(&r.Seq, &r.Destination, &r.EventID, &r.EventType, &r.PartitionKey, &r.Payload, &r.Attempts, &created, &lastErr); err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		if r.CreatedAt, err = decodeTime(created); err != nil {
			return nil, fmt.Errorf("created_at of %s: %w", r.EventID, err)
		}
		r.LastError = lastErr.String
		out = append(out, r)
	}
	return out, rows.Err()
}

// decodeTime reads a time column of any dialect: drivers hand back
// time.Time (PostgreSQL, MySQL with parseTime) or text (SQLite).
func decodeTime(v any) (time.Time, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return x.UTC(), nil
	case string:
		s = x
	case []byte:
		s = string(x)
	default:
		return time.Time{}, fmt.Errorf("time column holds %T", v)
	}
	for _, layout := range []string{sqliteTimeLayout, time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("parse time %q", s)
}

func dialectOf(db *gorm.DB) (dialect, error) {
	return dialectByName(db.Name())
}

func dialectByName(name string) (dialect, error) {
	switch strings.ToLower(name) {
	case "sqlite":
		return sqliteDialect, nil
	case "postgres", "postgresql":
		return postgresDialect, nil
	case "mysql", "mariadb":
		return mysqlDialect, nil
	default:
		return dialect{}, fmt.Errorf("%w: %q (supported: %v)", ErrUnsupportedDialect, name, Dialects())
	}
}
