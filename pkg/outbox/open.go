package outbox

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/glebarez/sqlite"
	gomysql "github.com/go-sql-driver/mysql"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Open opens the outbox database of the given dialect ("sqlite", "postgres"
// or "mysql") with the settings the outbox relies on; see OpenSQLite,
// OpenPostgres and OpenMySQL.
func Open(dialectName, dsn string) (*gorm.DB, error) {
	d, err := dialectByName(dialectName)
	if err != nil {
		return nil, err
	}
	switch d.name {
	case "postgres":
		return OpenPostgres(dsn)
	case "mysql":
		return OpenMySQL(dsn)
	default:
		return OpenSQLite(dsn)
	}
}

// OpenLazy is Open without connecting: a server that is down fails the
// first query, not the open, and only a DSN that does not parse fails here.
// It is for a database a process reads now and then (the portal), whose
// outage must not stop the process from starting.
func OpenLazy(dialectName, dsn string) (*gorm.DB, error) {
	d, err := dialectByName(dialectName)
	if err != nil {
		return nil, err
	}
	cfg := gormConfig()
	cfg.DisableAutomaticPing = true
	var dialector gorm.Dialector
	switch d.name {
	case "postgres":
		dialector = postgres.Open(dsn)
	case "mysql":
		mdsn, err := mysqlDSN(dsn)
		if err != nil {
			return nil, err
		}
		// gorm would ask the server's version at open; Herald's SQL
		// needs none.
		dialector = mysql.New(mysql.Config{DSN: mdsn, SkipInitializeWithVersion: true})
	default:
		// A file: opening it waits on no server.
		return OpenSQLite(dsn)
	}
	db, err := gorm.Open(dialector, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d.name, err)
	}
	return db, nil
}

func gormConfig() *gorm.Config {
	return &gorm.Config{
		Logger: logger.Discard,
		// Herald's statements are single statements or explicit
		// transactions; gorm's implicit one around each would only add
		// round trips to the relay's hot path.
		SkipDefaultTransaction: true,
	}
}

// OpenSQLite opens (creating if needed) an SQLite database file set up for an
// outbox shared by a producer and a relay: WAL so readers never block the
// writer, a busy timeout so writers queue instead of failing, and IMMEDIATE
// transactions so a transaction that reads before it writes cannot fail to
// upgrade its lock halfway through.
func OpenSQLite(path string) (*gorm.DB, error) {
	if path == "" {
		return nil, fmt.Errorf("open sqlite: path required")
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	db, err := gorm.Open(sqlite.Open(path+sep+q.Encode()), gormConfig())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return db, nil
}

// OpenPostgres opens a PostgreSQL database through pgx. dsn is a URL
// (postgres://user@host:5432/db?sslmode=disable) or key=value string.
func OpenPostgres(dsn string) (*gorm.DB, error) {
	db, err := gorm.Open(postgres.Open(dsn), gormConfig())
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return db, nil
}

// OpenMySQL opens a MySQL or MariaDB database. dsn is the go-sql-driver form
// (user:pass@tcp(host:3306)/db); times are read and written as UTC whatever
// the DSN says, because the outbox stores UTC.
func OpenMySQL(dsn string) (*gorm.DB, error) {
	mdsn, err := mysqlDSN(dsn)
	if err != nil {
		return nil, err
	}
	db, err := gorm.Open(mysql.Open(mdsn), gormConfig())
	if err != nil {
		cfg, _ := gomysql.ParseDSN(mdsn) // parsed above
		return nil, fmt.Errorf("open mysql %s@%s/%s: %w", cfg.User, cfg.Addr, cfg.DBName, err)
	}
	return db, nil
}

// mysqlDSN is dsn with the settings Herald relies on: times read and
// written as UTC, and arguments interpolated. Without interpolation every
// query with arguments is a prepared statement the driver prepares,
// executes and closes: two round trips where one does. It is safe with the
// utf8mb4 connections Herald uses, and binary values (the payload) go as
// _binary literals into LONGBLOB.
func mysqlDSN(dsn string) (string, error) {
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("open mysql: %w", err)
	}
	cfg.ParseTime = true
	cfg.Loc = nil // UTC
	cfg.InterpolateParams = true
	return cfg.FormatDSN(), nil
}
