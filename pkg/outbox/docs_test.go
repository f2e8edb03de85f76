package outbox_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// The examples in docs/outbox.md are files under docs/examples; these tests
// run them against the real databases and check the document still shows
// them verbatim, so the documentation cannot drift from what works.

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func shownInDocs(t *testing.T, example string) {
	t.Helper()
	if !strings.Contains(readDoc(t, "outbox.md"), strings.TrimSpace(readDoc(t, filepath.Join("examples", example)))) {
		t.Errorf("docs/outbox.md does not show docs/examples/%s verbatim", example)
	}
}

// readOne reads the one pending row, as a relay holding every bucket would,
// and checks it holds a valid event agreeing with its columns, as the relay
// will.
func readOne(t *testing.T, db testdb.DB) event.Event {
	t.Helper()
	store, _ := outbox.NewStore(db.Gorm)
	rows, err := store.Read(context.Background(), outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 10})
	if err != nil || len(rows) != 1 {
		t.Fatalf("read %d rows, err %v; want 1", len(rows), err)
	}
	ev, err := event.Parse(rows[0].Payload)
	if err != nil {
		t.Fatalf("payload %s: %v", rows[0].Payload, err)
	}
	if ev.ID != rows[0].EventID || ev.Type != rows[0].EventType || ev.PartitionKey != rows[0].PartitionKey {
		t.Fatalf("payload %+v disagrees with row %+v", ev, rows[0])
	}
	return ev
}

func TestDocumentedSQLInsertWorks(t *testing.T) {
	for _, d := range []string{"postgres", "mysql"} {
		t.Run(d, func(t *testing.T) {
			example := "outbox-insert." + d + ".sql"
			shownInDocs(t, example)
			db := testdb.Migrated(t, d)
			tx := db.Gorm.Begin()
			for _, stmt := range strings.Split(readDoc(t, filepath.Join("examples", example)), ";\n") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if err := tx.Exec(stmt).Error; err != nil {
					t.Fatalf("%s: %v", stmt, err)
				}
			}
			if err := tx.Commit().Error; err != nil {
				t.Fatal(err)
			}
			ev := readOne(t, db)
			if ev.Subject != "data_products/10000000-0000-4000-8000-000000000001" || !strings.Contains(string(ev.Data), "Orders") {
				t.Fatalf("event = %+v", ev)
			}
		})
	}
}

func TestDocumentedSQLAlchemySnippetWorks(t *testing.T) {
	shownInDocs(t, "outbox_insert.py")
	// Debian's python3 with python3-sqlalchemy, python3-psycopg2 and
	// python3-pymysql (.ci/run installs them).
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import sqlalchemy, psycopg2, pymysql").Run(); err != nil {
		if os.Getenv("HERALD_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%s cannot import sqlalchemy, psycopg2, pymysql: %v", python, err)
		}
		t.Skipf("%s cannot import sqlalchemy, psycopg2, pymysql: %v", python, err)
	}
	for _, d := range []string{"postgres", "mysql"} {
		t.Run(d, func(t *testing.T) {
			db := testdb.Migrated(t, d)
			if err := db.Gorm.Exec(`CREATE TABLE data_products (id VARCHAR(64) PRIMARY KEY, name VARCHAR(255))`).Error; err != nil {
				t.Fatal(err)
			}
			if err := db.Gorm.Exec(`INSERT INTO data_products VALUES ('10000000-0000-4000-8000-000000000001', 'Orders')`).Error; err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(python, filepath.Join("..", "..", "docs", "examples", "outbox_insert.py"), sqlalchemyURL(t, db)).CombinedOutput()
			if err != nil {
				t.Fatalf("snippet: %v\n%s", err, out)
			}
			ev := readOne(t, db)
			if ev.ID != strings.TrimSpace(string(out)) || ev.Type != "io.herald.portal.data_product.updated" {
				t.Fatalf("event = %+v, snippet printed %s", ev, out)
			}
			var name string
			db.Gorm.Raw(`SELECT name FROM data_products`).Scan(&name)
			if name != "Orders v2" {
				t.Fatalf("the business change did not commit with the event: name = %q", name)
			}
		})
	}
}

func sqlalchemyURL(t *testing.T, db testdb.DB) string {
	t.Helper()
	if db.Dialect == "mysql" {
		cfg, err := gomysql.ParseDSN(db.DSN)
		if err != nil {
			t.Fatal(err)
		}
		u := url.URL{Scheme: "mysql+pymysql", Host: cfg.Addr, Path: "/" + cfg.DBName}
		if cfg.Passwd != "" {
			u.User = url.UserPassword(cfg.User, cfg.Passwd)
		} else {
			u.User = url.User(cfg.User)
		}
		return u.String()
	}
	u, err := url.Parse(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	schema := q.Get("search_path")
	q.Del("search_path")
	q.Set("options", "-csearch_path="+schema)
	u.RawQuery = q.Encode()
	u.Scheme = "postgresql+psycopg2"
	return u.String()
}
