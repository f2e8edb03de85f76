package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsadapter "github.com/heraldhq/herald/adapters/nats"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

type result struct {
	code           int
	stdout, stderr string
}

func herald(ctx context.Context, t *testing.T, environ []string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut, environ)
	return result{code, out.String(), errOut.String()}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sqliteConfig is a config file for an SQLite outbox and embedded JetStream in dir.
func sqliteConfig(t *testing.T, dir string) string {
	return writeFile(t, "herald.yaml", `
database:
  driver: sqlite
  dsn: `+filepath.Join(dir, "outbox.db")+`
nats:
  url: embedded
  embedded_store_dir: `+filepath.Join(dir, "js")+`
relay:
  poll_interval: 20ms
log:
  level: warn
`)
}

func TestBadInputFailsWithAClearErrorAndNonZeroExit(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		environ []string
		args    func(t *testing.T) []string
		want    string
	}{
		{"unknown config key", nil, func(t *testing.T) []string {
			return []string{"migrate", "--config", writeFile(t, "c.yaml", "relay:\n  batchsize: 10\n")}
		}, `unknown key "relay.batchsize"`},
		{"missing required config", nil, func(t *testing.T) []string {
			return []string{"migrate", "--config", writeFile(t, "c.yaml", "database:\n  dsn: \"\"\n")}
		}, "database.dsn: required"},
		{"invalid config value", nil, func(t *testing.T) []string {
			return []string{"serve", "--config", writeFile(t, "c.yaml", "relay:\n  batch_size: 0\n")}
		}, "relay.batch_size: must be between 1 and 10000"},
		{"unknown HERALD_ variable", []string{"HERALD_RELAY_BATCHSIZE=5"}, func(*testing.T) []string {
			return []string{"serve"}
		}, "HERALD_RELAY_BATCHSIZE: unknown setting"},
		{"config file missing", nil, func(t *testing.T) []string {
			return []string{"serve", "--config", filepath.Join(t.TempDir(), "nope.yaml")}
		}, "nope.yaml"},
		{"unknown flag", nil, func(*testing.T) []string { return []string{"migrate", "--bogus"} }, "unknown flag: --bogus"},
		{"unknown command", nil, func(*testing.T) []string { return []string{"frobnicate"} }, `unknown command "frobnicate"`},
		{"unsupported dialect", nil, func(*testing.T) []string {
			return []string{"migrate", "--print", "--dialect", "oracle"}
		}, `--dialect: unsupported database dialect: "oracle"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := herald(ctx, t, tc.environ, tc.args(t)...)
			if res.code != exitUsage {
				t.Errorf("exit code = %d, want %d", res.code, exitUsage)
			}
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", res.stderr, tc.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	res := herald(context.Background(), t, nil, "version")
	if res.code != exitOK || !strings.HasPrefix(res.stdout, "herald ") {
		t.Fatalf("version: %+v", res)
	}
}

func TestMigratePrintIsTheSchemaMigrateApplies(t *testing.T) {
	res := herald(context.Background(), t, nil, "migrate", "--print")
	if res.code != exitOK {
		t.Fatalf("migrate --print: %+v", res)
	}
	for _, want := range []string{"CREATE TABLE herald_outbox", "CREATE INDEX herald_outbox_pending", "INSERT INTO herald_schema_migrations"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("printed schema lacks %q", want)
		}
	}
}

func TestServeRefusesAnOutdatedSchemaThenRelaysAfterMigrate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := sqliteConfig(t, dir)

	res := herald(ctx, t, nil, "serve", "--config", cfg)
	if res.code != exitError || !strings.Contains(res.stderr, "run `herald migrate`") {
		t.Fatalf("serve on an empty database: %+v", res)
	}
	if res := herald(ctx, t, nil, "migrate", "--config", cfg); res.code != exitOK || !strings.Contains(res.stdout, "applied migrations [1 2 3 4 5 6 7 9 11]") {
		t.Fatalf("migrate: %+v", res)
	}
	if res := herald(ctx, t, nil, "migrate", "--config", cfg); res.code != exitOK || !strings.Contains(res.stdout, "up to date") {
		t.Fatalf("second migrate: %+v", res)
	}

	// A producer commits an event; serve relays it; SIGTERM (ctx) stops it cleanly.
	db, err := outbox.OpenSQLite(filepath.Join(dir, "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	ev, _ := event.New("io.herald.test.thing.created", "/test", map[string]string{"a": "b"})
	if err := outbox.Write(ctx, db, ev); err != nil {
		t.Fatal(err)
	}
	store, _ := outbox.NewStore(db)

	serveCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var served result
	wg.Go(func() { served = herald(serveCtx, t, nil, "serve", "--config", cfg) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := store.Stats(ctx)
		if err == nil && st.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			stop()
			wg.Wait()
			t.Fatalf("serve did not relay the event: %+v, %v; serve output %+v", st, err, served)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	wg.Wait()
	if served.code != exitOK {
		t.Fatalf("serve after shutdown: %+v", served)
	}
}

func TestDemoDeliversEverythingOnce(t *testing.T) {
	res := herald(context.Background(), t, nil, "demo")
	if res.code != exitOK {
		t.Fatalf("demo: %+v", res)
	}
	for _, want := range []string{
		"audit records read   13",
		"events written       13",
		"published            13",
		"consumed             13",
		"duplicates           0",
		"lost                 0",
		"io.herald.portal.data_product.deleted",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, res.stdout)
		}
	}
}

func TestStatusShowsBacklogDeadLettersAndBroker(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := natsadapter.StartEmbedded(natsadapter.EmbeddedOptions{StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	cfg := writeFile(t, "herald.yaml", "database:\n  dsn: "+filepath.Join(dir, "outbox.db")+"\nnats:\n  url: "+srv.ClientURL()+"\n")
	if res := herald(ctx, t, nil, "migrate", "--config", cfg); res.code != exitOK {
		t.Fatalf("migrate: %+v", res)
	}
	db, _ := outbox.OpenSQLite(filepath.Join(dir, "outbox.db"))
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	for range 3 {
		ev, _ := event.New("io.herald.test.thing.created", "/test", nil)
		_ = outbox.Write(ctx, db, ev)
	}
	store, _ := outbox.NewStore(db)
	rows, err := store.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 1})
	if err != nil || len(rows) != 1 {
		t.Fatalf("read: %d rows, %v", len(rows), err)
	}
	if err := store.Record(ctx, []outbox.Outcome{{Seq: rows[0].Seq, Err: errors.New("too large for the broker"), Dead: true}}); err != nil {
		t.Fatal(err)
	}

	// The stream does not exist yet (nothing provisioned it): status says so.
	res := herald(ctx, t, nil, "status", "--config", cfg)
	if res.code != exitError || !strings.Contains(res.stdout, "NOT REACHABLE") || !strings.Contains(res.stderr, "not reachable") {
		t.Fatalf("status without stream: %+v", res)
	}
	pub, err := natsadapter.Connect(ctx, srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.Close()
	res = herald(ctx, t, nil, "status", "--config", cfg)
	for _, want := range []string{"reachable (stream HERALD present", "2 pending (0 in flight)", "Dead letters 1", "too large for the broker"} {
		if res.code != exitOK || !strings.Contains(res.stdout, want) {
			t.Errorf("status lacks %q: %+v", want, res)
		}
	}
	res = herald(ctx, t, nil, "status", "--config", cfg, "--output", "json")
	var got statusJSON
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || !got.Destination.Healthy || got.Total.Dead != 1 || len(got.RecentErrors) != 1 {
		t.Fatalf("status json = %+v, %v\n%s", got, err, res.stdout)
	}
}
