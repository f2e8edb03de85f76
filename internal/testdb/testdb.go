// Package testdb gives tests a fresh, empty outbox database of each dialect:
// an SQLite file, a PostgreSQL schema or a MySQL/MariaDB database of its own,
// on the machine's real servers, dropped again when the test ends.
//
// The servers are found through HERALD_TEST_POSTGRES_DSN (default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable) and
// HERALD_TEST_MYSQL_DSN (default root@tcp(127.0.0.1:3306)/test). A server
// that cannot be reached skips the test, unless HERALD_REQUIRE_SERVICES=1
// (as in CI), where it fails it.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/outbox"
)

// Dialects are the dialects tests run against.
func Dialects() []string { return []string{"sqlite", "postgres", "mysql"} }

// DB is one isolated test database.
type DB struct {
	Dialect string
	// DSN opens this database (and only it) again, e.g. for a subprocess
	// or a LISTEN connection.
	DSN  string
	Gorm *gorm.DB
}

// Postgres and MySQL DSNs of the servers, from the environment.
func serverDSN(dialect string) string {
	switch dialect {
	case "postgres":
		if v := os.Getenv("HERALD_TEST_POSTGRES_DSN"); v != "" {
			return v
		}
		return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	case "mysql":
		if v := os.Getenv("HERALD_TEST_MYSQL_DSN"); v != "" {
			return v
		}
		return "root@tcp(127.0.0.1:3306)/test"
	}
	return ""
}

func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("HERALD_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s unavailable (HERALD_REQUIRE_SERVICES=1): %v", what, err)
	}
	t.Skipf("%s unavailable: %v", what, err)
}

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "herald_t_" + hex.EncodeToString(b[:])
}

// New returns an empty database of the dialect; Migrated returns one with
// the outbox schema applied.
func New(t testing.TB, dialect string) DB {
	t.Helper()
	var db DB
	switch dialect {
	case "sqlite":
		db = DB{Dialect: dialect, DSN: filepath.Join(t.TempDir(), "outbox.db")}
	case "postgres":
		db = newPostgres(t)
	case "mysql":
		db = newMySQL(t)
	default:
		t.Fatalf("testdb: unknown dialect %q", dialect)
	}
	g, err := outbox.Open(dialect, db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	db.Gorm = g
	t.Cleanup(func() { closeDB(g) })
	return db
}

// Migrated returns a database with the outbox schema applied.
func Migrated(t testing.TB, dialect string) DB {
	t.Helper()
	db := New(t, dialect)
	if _, err := outbox.Migrate(context.Background(), db.Gorm); err != nil {
		t.Fatal(err)
	}
	return db
}

func closeDB(g *gorm.DB) {
	if sqlDB, err := g.DB(); err == nil {
		_ = sqlDB.Close()
	}
}

// A schema per test: cheaper than a database, and search_path makes it
// invisible to every other test.
func newPostgres(t testing.TB) DB {
	t.Helper()
	admin, err := outbox.OpenPostgres(serverDSN("postgres"))
	if err == nil {
		err = admin.Exec("SELECT 1").Error
	}
	if err != nil {
		unavailable(t, "PostgreSQL", err)
	}
	schema := randomName()
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.Exec("DROP SCHEMA " + schema + " CASCADE").Error
		closeDB(admin)
	})
	u, err := url.Parse(serverDSN("postgres"))
	if err != nil {
		t.Fatalf("HERALD_TEST_POSTGRES_DSN must be a URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return DB{Dialect: "postgres", DSN: u.String()}
}

func newMySQL(t testing.TB) DB {
	t.Helper()
	admin, err := outbox.OpenMySQL(serverDSN("mysql"))
	if err == nil {
		err = admin.Exec("SELECT 1").Error
	}
	if err != nil {
		unavailable(t, "MySQL/MariaDB", err)
	}
	name := randomName()
	if err := admin.Exec("CREATE DATABASE " + name).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.Exec("DROP DATABASE " + name).Error
		closeDB(admin)
	})
	cfg, err := gomysql.ParseDSN(serverDSN("mysql"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName = name
	return DB{Dialect: "mysql", DSN: cfg.FormatDSN()}
}
