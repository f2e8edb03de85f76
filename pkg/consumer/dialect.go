package consumer

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Dialect names the SQL database a [Ledger] keeps its tables in.
type Dialect string

// The dialects a Ledger supports. MySQL covers MariaDB too.
const (
	Postgres Dialect = "postgres"
	MySQL    Dialect = "mysql"
	SQLite   Dialect = "sqlite"
)

// The ledger's tables. Every row carries the consumer's name, so any number
// of consumers can share one pair of tables.
const (
	// EventsTable holds one row per event id a consumer has handled: applied,
	// or recorded as stale.
	EventsTable = "herald_consumer_events"
	// SubjectsTable holds, per consumer and subject, the time and id of the
	// newest event applied: what the stale-update rule compares against.
	SubjectsTable = "herald_consumer_subjects"
)

// Size limits, in bytes, the same on every dialect so that a consumer can move
// between databases: MySQL keys have a length limit, and PostgreSQL index
// entries one of their own. CloudEvents ids are UUIDs (36 bytes) and Herald's
// subjects are well under 100 bytes.
const (
	maxConsumerLen = 255
	maxIDLen       = 255
	maxSubjectLen  = 1024
)

// The outcome column's values.
const (
	outcomeApplied = "applied"
	outcomeStale   = "stale"
)

// dialect holds one database's statements, with its placeholders, and how it
// stores times.
type dialect struct {
	name   Dialect
	schema []string

	insertEvent   string // records an id, doing nothing if the consumer has it
	markStale     string
	touchSubject  string // creates the subject's row if missing and, on MySQL, locks it
	selectSubject string // reads (and on PostgreSQL/MySQL locks) the subject's row
	updateSubject string
	pruneEvents   string

	// encodeTime turns a UTC time truncated to the microsecond into the
	// value the database stores; decodeTime reads it back.
	encodeTime func(time.Time) any
	decodeTime func(any) (time.Time, error)
}

func dialectOf(d Dialect) (dialect, error) {
	switch d {
	case Postgres:
		return postgresDialect(), nil
	case MySQL:
		return mysqlDialect(), nil
	case SQLite:
		return sqliteDialect(), nil
	}
	return dialect{}, fmt.Errorf("dialect %q: want %q, %q or %q: %w", d, Postgres, MySQL, SQLite, ErrInvalid)
}

// MigrationSQL returns the statements that create the ledger's tables in d,
// separated by ";\n", for a DBA or a migration tool. They are idempotent (IF
// NOT EXISTS), the same ones [Ledger.Migrate] runs. It returns "" for an
// unknown dialect.
func MigrationSQL(d Dialect) string {
	dl, err := dialectOf(d)
	if err != nil {
		return ""
	}
	return strings.Join(dl.schema, ";\n") + ";\n"
}

// statements common to every dialect, written with ? placeholders.
const (
	insertEventSQL = `INSERT INTO ` + EventsTable + ` (consumer, event_id, outcome, processed_at) VALUES (?, ?, ?, ?)`
	markStaleSQL   = `UPDATE ` + EventsTable + ` SET outcome = '` + outcomeStale + `' WHERE consumer = ? AND event_id = ?`
	touchSQL       = `INSERT INTO ` + SubjectsTable + ` (consumer, subject, event_time, event_id) VALUES (?, ?, ?, ?)`
	selectSQL      = `SELECT event_time, event_id FROM ` + SubjectsTable + ` WHERE consumer = ? AND subject = ?`
	updateSQL      = `UPDATE ` + SubjectsTable + ` SET event_time = ?, event_id = ? WHERE consumer = ? AND subject = ?`
	pruneSQL       = `DELETE FROM ` + EventsTable + ` WHERE consumer = ? AND processed_at < ?`
)

func postgresDialect() dialect {
	return dialect{
		name: Postgres,
		schema: []string{
			`CREATE TABLE IF NOT EXISTS ` + EventsTable + ` (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, event_id)
)`,
			`CREATE INDEX IF NOT EXISTS ` + EventsTable + `_processed_at ON ` + EventsTable + ` (consumer, processed_at)`,
			`CREATE TABLE IF NOT EXISTS ` + SubjectsTable + ` (
    consumer   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    event_time TIMESTAMPTZ NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (consumer, subject)
)`,
		},
		// ON CONFLICT DO NOTHING waits for a concurrent transaction inserting
		// the same key, then does nothing if it committed: the second of two
		// deliveries of one event sees the first's outcome.
		insertEvent:   dollars(insertEventSQL + ` ON CONFLICT (consumer, event_id) DO NOTHING`),
		markStale:     dollars(markStaleSQL),
		touchSubject:  dollars(touchSQL + ` ON CONFLICT (consumer, subject) DO NOTHING`),
		selectSubject: dollars(selectSQL + ` FOR UPDATE`),
		updateSubject: dollars(updateSQL),
		pruneEvents:   dollars(pruneSQL),
		encodeTime:    func(t time.Time) any { return t },
		decodeTime:    decodeTime(false),
	}
}

func mysqlDialect() dialect {
	return dialect{
		name: MySQL,
		// VARBINARY, not VARCHAR: MySQL's default collations compare case-
		// and (on MariaDB) trailing-space-insensitively, which would make
		// two different ids or subjects one key. DATETIME(6) keeps
		// microseconds; the values are UTC, written as text so the session
		// and driver time zones cannot shift them.
		schema: []string{
			`CREATE TABLE IF NOT EXISTS ` + EventsTable + ` (
    consumer     VARBINARY(` + strconv.Itoa(maxConsumerLen) + `) NOT NULL,
    event_id     VARBINARY(` + strconv.Itoa(maxIDLen) + `) NOT NULL,
    outcome      VARCHAR(16) NOT NULL,
    processed_at DATETIME(6) NOT NULL,
    PRIMARY KEY (consumer, event_id),
    KEY ` + EventsTable + `_processed_at (consumer, processed_at)
) ENGINE=InnoDB`,
			`CREATE TABLE IF NOT EXISTS ` + SubjectsTable + ` (
    consumer   VARBINARY(` + strconv.Itoa(maxConsumerLen) + `) NOT NULL,
    subject    VARBINARY(` + strconv.Itoa(maxSubjectLen) + `) NOT NULL,
    event_time DATETIME(6) NOT NULL,
    event_id   VARBINARY(` + strconv.Itoa(maxIDLen) + `) NOT NULL,
    PRIMARY KEY (consumer, subject)
) ENGINE=InnoDB`,
		},
		// INSERT IGNORE also turns other errors (a value too long) into
		// warnings; Process checks lengths before, so only the duplicate key
		// is left to ignore.
		insertEvent: strings.Replace(insertEventSQL, "INSERT", "INSERT IGNORE", 1),
		markStale:   markStaleSQL,
		// A no-op update rather than INSERT IGNORE: on a duplicate, IGNORE
		// takes a shared lock that two transactions would then both try to
		// upgrade for the SELECT ... FOR UPDATE (a deadlock); the update
		// takes the exclusive lock at once.
		touchSubject:  touchSQL + ` ON DUPLICATE KEY UPDATE event_id = event_id`,
		selectSubject: selectSQL + ` FOR UPDATE`,
		updateSubject: updateSQL,
		pruneEvents:   pruneSQL,
		encodeTime:    func(t time.Time) any { return t.Format(mysqlTimeLayout) },
		decodeTime:    decodeTime(true),
	}
}

func sqliteDialect() dialect {
	return dialect{
		name: SQLite,
		// TEXT times in one fixed-width UTC layout, so they also sort and
		// compare as text (Prune's processed_at < ?).
		schema: []string{
			`CREATE TABLE IF NOT EXISTS ` + EventsTable + ` (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
)`,
			`CREATE INDEX IF NOT EXISTS ` + EventsTable + `_processed_at ON ` + EventsTable + ` (consumer, processed_at)`,
			`CREATE TABLE IF NOT EXISTS ` + SubjectsTable + ` (
    consumer   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    event_time TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (consumer, subject)
)`,
		},
		// SQLite has one writer at a time and no row locks: the transaction
		// holds the database's write lock from its first INSERT to its end,
		// which serialises concurrent deliveries as row locks do elsewhere.
		insertEvent:   insertEventSQL + ` ON CONFLICT (consumer, event_id) DO NOTHING`,
		markStale:     markStaleSQL,
		touchSubject:  touchSQL + ` ON CONFLICT (consumer, subject) DO NOTHING`,
		selectSubject: selectSQL,
		updateSubject: updateSQL,
		pruneEvents:   pruneSQL,
		encodeTime:    func(t time.Time) any { return t.Format(sqliteTimeLayout) },
		decodeTime:    decodeTime(false),
	}
}

// dollars rewrites ? placeholders as PostgreSQL's $1, $2, ... The statements
// here hold no ? inside literals.
func dollars(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

const (
	mysqlTimeLayout  = "2006-01-02 15:04:05.000000"
	sqliteTimeLayout = "2006-01-02T15:04:05.000000Z"
)

// storedTime is the form of t every dialect stores exactly: UTC, truncated
// to the microsecond (PostgreSQL's and MySQL's precision). The stale rule
// compares event times at this precision on every dialect.
func storedTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// decodeTime reads a stored time back. A driver may return text (SQLite,
// MySQL without parseTime) or a time.Time. wallClockUTC: MySQL's DATETIME has
// no zone, and the driver reads it in its loc setting; the wall clock is the
// UTC one Process wrote, whatever zone the driver attached.
func decodeTime(wallClockUTC bool) func(any) (time.Time, error) {
	return func(v any) (time.Time, error) {
		switch x := v.(type) {
		case time.Time:
			if wallClockUTC {
				return time.Date(x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond(), time.UTC), nil
			}
			return x.UTC(), nil
		case []byte:
			return parseStoredTime(string(x))
		case string:
			return parseStoredTime(x)
		}
		return time.Time{}, fmt.Errorf("stored time: unexpected %T", v)
	}
}

func parseStoredTime(s string) (time.Time, error) {
	for _, layout := range []string{sqliteTimeLayout, mysqlTimeLayout, time.RFC3339Nano, "2006-01-02 15:04:05.999999999"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("stored time %q: unknown layout", s)
}
