package outbox_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// The examples in docs/outbox.md are files under docs/examples; these tests
// run them against the real databases, validate the events they write
// against the published schemas, and check the document still shows them
// verbatim, so the documentation cannot drift from what works.

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
// will, and one that the published schemas accept.
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
	validateAgainstSchemas(t, ev, rows[0].Payload)
	return ev
}

// validateAgainstSchemas checks the whole event against its type's
// CloudEvent schema and its data against the schema its dataschema names,
// with the checked-in schemas (`herald schema export` writes them) loaded by
// their $id, as a consumer's validator would load them.
func validateAgainstSchemas(t *testing.T, ev event.Event, payload []byte) {
	t.Helper()
	if ev.DataSchema == "" {
		t.Fatalf("event %s has no dataschema", ev.Type)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.UseLoader(jsonschema.SchemeURLLoader{}) // nothing is fetched: every schema is in the folder
	root := filepath.Join("..", "..", "schemas")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return err
		}
		id, _ := doc.(map[string]any)["$id"].(string)
		if id == "" {
			return fmt.Errorf("%s has no $id", p)
		}
		return c.AddResource(id, doc)
	})
	if err != nil {
		t.Fatalf("load the schemas under %s: %v", root, err)
	}
	for _, check := range []struct {
		url  string
		body []byte
	}{
		{strings.TrimSuffix(ev.DataSchema, ".json") + ".cloudevent.json", payload},
		{ev.DataSchema, ev.Data},
	} {
		sch, err := c.Compile(check.url)
		if err != nil {
			t.Fatalf("schema %s: %v", check.url, err)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(check.body))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("the documented event does not validate against %s: %v\n%s", check.url, err, check.body)
		}
	}
}

// idVersion is the version of an event id, which the relay accepted as a
// canonical UUID already.
func idVersion(t *testing.T, id string) uuid.Version {
	t.Helper()
	u, err := uuid.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	return u.Version()
}

func TestDocumentedSQLInsertWorks(t *testing.T) {
	for _, tc := range []struct {
		dialect string
		version uuid.Version // of the ids the example makes
	}{
		{"postgres", 7}, // herald_uuidv7()
		{"mysql", 1},    // UUID()
	} {
		d := tc.dialect
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
			if v := idVersion(t, ev.ID); v != tc.version {
				t.Errorf("id %s is a version %d UUID, want %d", ev.ID, v, tc.version)
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
			if v := idVersion(t, ev.ID); v != 7 {
				t.Errorf("id %s is a version %d UUID, want 7", ev.ID, v)
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

// herald_uuidv7() (migration 0008, PostgreSQL only) makes the UUIDv7s the
// documented SQL writer uses: version 7, the RFC 9562 variant, the time they
// were made in the first 48 bits, and ordered by it.
func TestHeraldUUIDv7(t *testing.T) {
	db := testdb.Migrated(t, "postgres")
	ctx := context.Background()
	var before, after time.Time
	batch := func() []string {
		t.Helper()
		if err := db.Gorm.WithContext(ctx).Raw(`SELECT clock_timestamp()`).Scan(&before).Error; err != nil {
			t.Fatal(err)
		}
		var ids []string
		// In the order they are made: one call per row of the series.
		err := db.Gorm.WithContext(ctx).Raw(`SELECT herald_uuidv7()::text FROM generate_series(1, 500) AS g ORDER BY g`).Scan(&ids).Error
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Gorm.WithContext(ctx).Raw(`SELECT clock_timestamp()`).Scan(&after).Error; err != nil {
			t.Fatal(err)
		}
		return ids
	}

	first := batch()
	seen := map[string]bool{}
	for i, id := range first {
		u, err := uuid.Parse(id)
		switch {
		case err != nil || u.String() != id:
			t.Fatalf("%q is not a canonical UUID (%v)", id, err)
		case u.Version() != 7 || id[14] != '7':
			t.Errorf("%s: version %d, want 7", id, u.Version())
		case u.Variant() != uuid.RFC4122 || !strings.ContainsRune("89ab", rune(id[19])):
			t.Errorf("%s: variant %v, want RFC 4122 (binary 10)", id, u.Variant())
		case seen[id]:
			t.Errorf("%s made twice", id)
		}
		seen[id] = true
		ms := int64(u[0])<<40 | int64(u[1])<<32 | int64(u[2])<<24 | int64(u[3])<<16 | int64(u[4])<<8 | int64(u[5])
		if made := time.UnixMilli(ms); made.Before(before.Truncate(time.Millisecond)) || made.After(after) {
			t.Errorf("%s: made at %s, outside %s..%s", id, made.UTC(), before.UTC(), after.UTC())
		}
		// The time and its sub-millisecond fraction (the first 16 hex
		// digits and the version) never go backwards; only ids made in the
		// same microsecond may come out of order.
		if i > 0 && id[:18] < first[i-1][:18] {
			t.Errorf("%s made after %s sorts before it", id, first[i-1])
		}
	}
	// A millisecond later, every id sorts after every earlier one.
	if err := db.Gorm.WithContext(ctx).Exec(`SELECT pg_sleep(0.002)`).Error; err != nil {
		t.Fatal(err)
	}
	second := batch()
	if lastFirst, firstSecond := slices.Max(first), slices.Min(second); firstSecond <= lastFirst {
		t.Errorf("an id made 2 ms later, %s, sorts before one made earlier, %s", firstSecond, lastFirst)
	}
}
