package outbox

import (
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
	// upsertRelay renews a relay's membership: destination, name, expiry.
	upsertRelay string
	// insertBuckets creates a destination's missing bucket rows.
	insertBuckets func(destination string) string
	// doorbell: writers' commits can wake a waiting relay (LISTEN/NOTIFY).
	doorbell bool
	// unrouted and routed test the routed column as its partial index
	// predicate is written, so that the planner can use the index.
	unrouted, routed string
	// skipLocked ends a SELECT that locks its rows, skipping rows another
	// transaction has locked; "" where there are no row locks (SQLite).
	skipLocked string
	// leaseIsolation is the isolation of taking buckets: READ COMMITTED on
	// MySQL, whose REPEATABLE READ would add gap locks.
	leaseIsolation sql.IsolationLevel
	// insertIgnore inserts a row unless its (event_id, destination)
	// exists: prefix and suffix around "INTO herald_outbox (…) VALUES …".
	insertIgnore [2]string
}

const upsertRelayStd = `INSERT INTO herald_outbox_relays (destination, name, expires_at) VALUES (?, ?, ?)
ON CONFLICT (destination, name) DO UPDATE SET expires_at = excluded.expires_at`

func insertBucketsStd(destination string) string {
	return `INSERT INTO herald_outbox_buckets (destination, bucket) VALUES ` + bucketRows(destination) + ` ON CONFLICT DO NOTHING`
}

const sqliteTimeLayout = "2006-01-02T15:04:05.000Z"

// Fixed width, so that string order is time order.
func sqliteTime(t time.Time) any { return t.UTC().Format(sqliteTimeLayout) }

var sqliteDialect = dialect{
	name:          "sqlite",
	encodeTime:    sqliteTime,
	nowSQL:        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
	upsertRelay:   upsertRelayStd,
	insertBuckets: insertBucketsStd,
	unrouted:      "routed = 0",
	routed:        "routed = 1",
	insertIgnore:  [2]string{"INSERT", " ON CONFLICT DO NOTHING"},
	migrationsTable: `CREATE TABLE IF NOT EXISTS herald_schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`,
}

var postgresDialect = dialect{
	name:          "postgres",
	encodeTime:    func(t time.Time) any { return t.UTC() },
	nowSQL:        "now()",
	upsertRelay:   upsertRelayStd,
	insertBuckets: insertBucketsStd,
	doorbell:      true,
	skipLocked:    " FOR UPDATE SKIP LOCKED",
	unrouted:      "NOT routed",
	routed:        "routed",
	insertIgnore:  [2]string{"INSERT", " ON CONFLICT DO NOTHING"},
	migrationsTable: `CREATE TABLE IF NOT EXISTS herald_schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL
)`,
}

var mysqlDialect = dialect{
	name:       "mysql",
	encodeTime: func(t time.Time) any { return t.UTC() },
	nowSQL:     "UTC_TIMESTAMP(6)",
	upsertRelay: `INSERT INTO herald_outbox_relays (destination, name, expires_at) VALUES (?, ?, ?)
ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)`,
	insertBuckets: func(destination string) string {
		return `INSERT IGNORE INTO herald_outbox_buckets (destination, bucket) VALUES ` + bucketRows(destination)
	},
	unrouted:       "routed = 0",
	routed:         "routed = 1",
	insertIgnore:   [2]string{"INSERT IGNORE", ""},
	skipLocked:     " FOR UPDATE SKIP LOCKED",
	leaseIsolation: sql.LevelReadCommitted,
	migrationsTable: `CREATE TABLE IF NOT EXISTS herald_schema_migrations (
  version    INT PRIMARY KEY,
  name       VARCHAR(255) NOT NULL,
  applied_at DATETIME(6) NOT NULL
)`,
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
