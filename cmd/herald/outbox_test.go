package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// migrateAndOpen runs `herald migrate` with config, whose SQLite outbox is
// dir/outbox.db, and opens that outbox, closed at cleanup.
func migrateAndOpen(t *testing.T, config, dir string) (*gorm.DB, *outbox.Store) {
	t.Helper()
	if res := herald(context.Background(), t, nil, "migrate", "--config", config); res.code != exitOK {
		t.Fatalf("migrate: %+v", res)
	}
	db, err := outbox.OpenSQLite(filepath.Join(dir, "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	store, err := outbox.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	return db, store
}

// deadLetterOutbox is a migrated SQLite outbox behind a config file, holding
// one pending event and the given number of dead ones.
type deadLetterOutbox struct {
	config  string
	store   *outbox.Store
	pending string   // the pending event's id
	dead    []string // the dead events' ids
	db      *gorm.DB
}

func newDeadLetterOutbox(t *testing.T, deadCount int) deadLetterOutbox {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	o := deadLetterOutbox{config: sqliteConfig(t, dir)}
	o.db, o.store = migrateAndOpen(t, o.config, dir)
	db := o.db
	for i := range deadCount + 1 {
		ev, err := event.New("io.herald.test.thing.created", "/test", map[string]int{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		if err := outbox.Write(ctx, db, ev); err != nil {
			t.Fatal(err)
		}
		if i < deadCount {
			o.dead = append(o.dead, ev.ID)
		} else {
			o.pending = ev.ID
		}
	}
	read, err := o.store.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: deadCount})
	if err != nil || len(read) != deadCount {
		t.Fatalf("read: %d rows, %v", len(read), err)
	}
	var outcomes []outbox.Outcome
	for _, r := range read {
		outcomes = append(outcomes, outbox.Outcome{Seq: r.Seq, Err: errors.New("broker said no"), Dead: true})
	}
	if err := o.store.Record(ctx, outcomes); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o deadLetterOutbox) state(t *testing.T, id string) outbox.Row {
	t.Helper()
	r, err := o.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestOutboxRetryAllMakesDeadLettersPendingAgain(t *testing.T) {
	ctx := context.Background()
	o := newDeadLetterOutbox(t, 2)

	res := herald(ctx, t, nil, "outbox", "retry", "--all", "--config", o.config)
	if res.code != exitOK || !strings.Contains(res.stdout, "retried 2 dead events") {
		t.Fatalf("retry --all: %+v", res)
	}
	// Not a terminal: no progress bar, nothing on stderr to garble a log.
	if res.stderr != "" {
		t.Errorf("retry wrote to stderr: %q", res.stderr)
	}
	for _, id := range o.dead {
		r := o.state(t, id)
		if r.State != outbox.StatePending || r.Attempts != 0 || r.LastError != "broker said no" {
			t.Errorf("retried row %s = state %s, attempts %d, last error %q; want pending, 0, the old error", id, r.State, r.Attempts, r.LastError)
		}
	}
	read, err := o.store.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 10})
	if err != nil || len(read) != 3 {
		t.Errorf("read after retry: %d rows, %v; want the 2 retried and the pending one", len(read), err)
	}
	for _, r := range read {
		if r.AvailableAt.After(time.Now()) {
			t.Errorf("row %s read after retry waits until %v, want it available now", r.EventID, r.AvailableAt)
		}
	}

	res = herald(ctx, t, nil, "outbox", "retry", "--all", "--config", o.config)
	if res.code != exitOK || !strings.Contains(res.stdout, "retried 0 dead events") {
		t.Errorf("second retry --all: %+v", res)
	}
}

// --destination narrows retry and list to one destination's rows: a
// partner's dead letters are replayed without touching main's.
func TestOutboxRetryOneDestination(t *testing.T) {
	ctx := context.Background()
	o := newDeadLetterOutbox(t, 2)
	ev, _ := event.New("io.herald.test.port.approved", "/test", map[string]int{"n": 9})
	if err := outbox.Write(ctx, o.db, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := o.store.Route(ctx, outbox.AllBuckets(), outbox.Routes{{Destination: "partner", Types: []string{ev.Type}}}, 10); err != nil {
		t.Fatal(err)
	}
	partner := o.store.ForDestination("partner")
	read, err := partner.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 10})
	if err != nil || len(read) != 1 {
		t.Fatalf("partner read: %d rows, %v", len(read), err)
	}
	if err := partner.Record(ctx, []outbox.Outcome{{Seq: read[0].Seq, Err: errors.New("410 Gone"), Dead: true}}); err != nil {
		t.Fatal(err)
	}

	res := herald(ctx, t, nil, "outbox", "list", "--dead", "--destination", "partner", "--config", o.config)
	if res.code != exitOK || !strings.Contains(res.stdout, "partner      "+ev.ID) || strings.Contains(res.stdout, o.dead[0]) {
		t.Fatalf("list --dead --destination partner: %+v", res)
	}
	res = herald(ctx, t, nil, "outbox", "retry", "--all", "--destination", "partner", "--config", o.config)
	if res.code != exitOK || !strings.Contains(res.stdout, "retried 1 dead events") {
		t.Fatalf("retry --all --destination partner: %+v", res)
	}
	if r, err := partner.Get(ctx, ev.ID); err != nil || r.State != outbox.StatePending {
		t.Errorf("partner row = %+v, %v; want pending", r, err)
	}
	for _, id := range o.dead {
		if got := o.state(t, id).State; got != outbox.StateDead {
			t.Errorf("main row %s is %s, want still dead", id, got)
		}
	}
}

func TestOutboxRetryByIDLeavesOtherRows(t *testing.T) {
	ctx := context.Background()
	o := newDeadLetterOutbox(t, 2)
	res := herald(ctx, t, nil, "outbox", "retry", "--config", o.config, "--id", o.dead[1], "--id", o.pending)
	if res.code != exitOK || !strings.Contains(res.stdout, "retried 1 dead events") ||
		!strings.Contains(res.stdout, "1 of the 2 ids given are not dead") {
		t.Fatalf("retry --id: %+v", res)
	}
	for id, want := range map[string]outbox.State{o.dead[0]: outbox.StateDead, o.dead[1]: outbox.StatePending, o.pending: outbox.StatePending} {
		if got := o.state(t, id).State; got != want {
			t.Errorf("row %s is %s, want %s", id, got, want)
		}
	}
}

func TestOutboxJSONOutputParses(t *testing.T) {
	ctx := context.Background()
	o := newDeadLetterOutbox(t, 2)

	var stats struct {
		Types []struct {
			Type                    string `json:"type"`
			Pending, Dead           int
			InFlight                int        `json:"in_flight"`
			OldestPendingAgeSeconds *int64     `json:"oldest_pending_age_seconds"`
			OldestPendingAt         *time.Time `json:"oldest_pending_at"`
		} `json:"types"`
		Total struct{ Pending, Dead, Delivered int } `json:"total"`
	}
	decode(t, herald(ctx, t, nil, "outbox", "stats", "--config", o.config, "--output", "json"), &stats)
	if len(stats.Types) != 1 || stats.Types[0].Type != "io.herald.test.thing.created" ||
		stats.Types[0].Pending != 1 || stats.Types[0].Dead != 2 || stats.Types[0].OldestPendingAgeSeconds == nil ||
		stats.Total.Dead != 2 || stats.Total.Pending != 1 {
		t.Errorf("stats json = %+v", stats)
	}

	var list struct {
		Rows []struct {
			Seq       int64   `json:"seq"`
			EventID   string  `json:"event_id"`
			State     string  `json:"state"`
			LastError *string `json:"last_error"`
			Event     struct {
				ID string `json:"id"`
			} `json:"event"`
		} `json:"rows"`
		NextAfterSeq *int64 `json:"next_after_seq"`
	}
	decode(t, herald(ctx, t, nil, "outbox", "list", "--dead", "--limit", "1", "--config", o.config, "-o", "json"), &list)
	if len(list.Rows) != 1 || list.Rows[0].EventID != o.dead[0] || list.Rows[0].Event.ID != o.dead[0] ||
		list.Rows[0].State != "dead" || list.Rows[0].LastError == nil || *list.Rows[0].LastError != "broker said no" {
		t.Fatalf("list json = %+v", list)
	}
	if list.NextAfterSeq == nil || *list.NextAfterSeq != list.Rows[0].Seq {
		t.Fatalf("a full page has next_after_seq %v, want %d", list.NextAfterSeq, list.Rows[0].Seq)
	}
	next := herald(ctx, t, nil, "outbox", "list", "--dead", "--limit", "1", "--config", o.config, "-o", "json",
		"--after-seq", jsonNumber(*list.NextAfterSeq))
	decode(t, next, &list)
	if len(list.Rows) != 1 || list.Rows[0].EventID != o.dead[1] {
		t.Errorf("second page = %+v, want %s", list, o.dead[1])
	}

	var retried struct {
		Retried *int `json:"retried"`
	}
	decode(t, herald(ctx, t, nil, "outbox", "retry", "--error", "BROKER SAID YES", "--config", o.config, "-o", "json"), &retried)
	if retried.Retried == nil || *retried.Retried != 0 {
		t.Errorf("retry --error matching no dead row = %+v, want 0 retried", retried)
	}
	decode(t, herald(ctx, t, nil, "outbox", "retry", "--type", "io.herald.test.thing.created", "--error", "Broker Said", "--config", o.config, "-o", "json"), &retried)
	if retried.Retried == nil || *retried.Retried != 2 {
		t.Errorf("retry json = %+v", retried)
	}

	var purged struct {
		State  string `json:"state"`
		Purged *int   `json:"purged"`
		DryRun bool   `json:"dry_run"`
	}
	decode(t, herald(ctx, t, nil, "outbox", "purge", "--dead", "--config", o.config, "-o", "json"), &purged)
	if purged.State != "dead" || purged.Purged == nil || *purged.Purged != 0 {
		t.Errorf("purge json after retry = %+v, want nothing dead left", purged)
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

// decode checks res succeeded and printed exactly one JSON document into v.
func decode(t *testing.T, res result, v any) {
	t.Helper()
	if res.code != exitOK {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	dec := json.NewDecoder(strings.NewReader(res.stdout))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, res.stdout)
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		t.Fatalf("stdout holds more than one JSON document (%v):\n%s", err, res.stdout)
	}
}

func TestOutboxTextOutput(t *testing.T) {
	ctx := context.Background()
	o := newDeadLetterOutbox(t, 1)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"stats"}, []string{
			"TYPE                          PENDING  IN FLIGHT  DEAD  DELIVERED  OLDEST PENDING",
			"io.herald.test.thing.created  1        0          1     0          ",
			"total                         1        0          1     0          ",
		}},
		{[]string{"list", "--dead"}, []string{"SEQ  DESTINATION  EVENT ID", "1    main         " + o.dead[0] + "  io.herald.test.thing.created  dead   1         ", "broker said no"}},
		{[]string{"list", "--type", "io.herald.test.nothing"}, []string{"no matching events"}},
		{[]string{"purge", "--dead", "--dry-run"}, []string{"would purge 1 dead events (dry run: nothing deleted)"}},
		{[]string{"purge", "--dead", "--older-than", "1h"}, []string{"purged 0 dead events"}},
		{[]string{"purge", "--delivered"}, []string{"purged 0 delivered events"}},
		{[]string{"purge", "--dead"}, []string{"purged 1 dead events"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			res := herald(ctx, t, nil, append([]string{"outbox"}, append(tc.args, "--config", o.config)...)...)
			if res.code != exitOK {
				t.Fatalf("%+v", res)
			}
			for _, want := range tc.want {
				if !strings.Contains(res.stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, res.stdout)
				}
			}
		})
	}
	if r := o.state(t, o.pending); r.State != outbox.StatePending {
		t.Errorf("pending row after purges: %+v", r)
	}
}

// A pending row waiting out a backoff is listed as "backoff", so an
// operator tells a failing event from one merely queued.
func TestOutboxListShowsRowsInBackoff(t *testing.T) {
	ctx := context.Background()
	o := newDeadLetterOutbox(t, 0)
	ev, _ := event.New("io.herald.test.thing.created", "/test", map[string]int{"n": 1})
	if err := outbox.Write(ctx, o.db, ev); err != nil {
		t.Fatal(err)
	}
	failing := o.state(t, ev.ID)
	if err := o.store.Record(ctx, []outbox.Outcome{{Seq: failing.Seq, Err: errors.New("503 from broker"), RetryAt: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	queued := o.state(t, o.pending)
	res := herald(ctx, t, nil, "outbox", "list", "--pending", "--config", o.config)
	if res.code != exitOK {
		t.Fatalf("list --pending: %+v", res)
	}
	for _, want := range []string{
		jsonNumber(queued.Seq) + "    main         " + o.pending + "  io.herald.test.thing.created  pending  0  ",
		jsonNumber(failing.Seq) + "    main         " + ev.ID + "  io.herald.test.thing.created  backoff  1  ",
		"503 from broker",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("list --pending lacks %q:\n%s", want, res.stdout)
		}
	}
}

func TestOutboxBadInvocationsAreUsageErrors(t *testing.T) {
	ctx := context.Background()
	o := newDeadLetterOutbox(t, 0)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"retry without a selector", []string{"retry"}, []string{"--id", "--type", "--all"}},
		{"retry with two selectors", []string{"retry", "--all", "--type", "io.herald.test.thing.created"}, []string{"exactly one of --id ID..., --type TYPE and/or --error TEXT, or --all"}},
		{"retry by error and --all", []string{"retry", "--all", "--error", "refused"}, []string{"exactly one of"}},
		{"purge without a state", []string{"purge"}, []string{"purge needs --dead or --delivered"}},
		{"purge with both states", []string{"purge", "--dead", "--delivered"}, []string{"choose one of --dead, --delivered"}},
		{"purge of pending", []string{"purge", "--pending"}, []string{"unknown flag: --pending"}},
		{"negative age", []string{"purge", "--dead", "--older-than", "-1h"}, []string{"--older-than: must not be negative"}},
		{"list with two states", []string{"list", "--pending", "--dead"}, []string{"choose one of --dead, --pending"}},
		{"list limit 0", []string{"list", "--limit", "0"}, []string{"--limit: must be at least 1"}},
		{"unknown subcommand", []string{"frob"}, []string{`unknown command "frob" for "herald outbox"`}},
		{"unknown output", []string{"stats", "--output", "yaml"}, []string{`--output: "yaml" is neither text nor json`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := herald(ctx, t, nil, append([]string{"outbox"}, append(tc.args, "--config", o.config)...)...)
			if res.code != exitUsage {
				t.Errorf("exit code = %d, want %d (%+v)", res.code, exitUsage, res)
			}
			for _, want := range tc.want {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr %q does not name %q", res.stderr, want)
				}
			}
			if res.stdout != "" {
				t.Errorf("stdout = %q, want nothing", res.stdout)
			}
		})
	}
}

func TestOutboxNeedsAMigratedDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := sqliteConfig(t, dir)

	res := herald(ctx, t, nil, "outbox", "stats", "--config", cfg)
	if res.code != exitError || !strings.Contains(res.stderr, "no outbox database at "+filepath.Join(dir, "outbox.db")) {
		t.Errorf("stats without a database file: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "outbox.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stats created the database file: %v", err)
	}

	db, err := outbox.OpenSQLite(filepath.Join(dir, "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("CREATE TABLE unrelated (id INTEGER)").Error; err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	_ = sqlDB.Close()
	res = herald(ctx, t, nil, "outbox", "list", "--config", cfg)
	if res.code != exitError || !strings.Contains(res.stderr, "run `herald migrate`") {
		t.Errorf("list on an unmigrated database: %+v", res)
	}
}

func TestHumanAge(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-3 * time.Second, "0s"},
		{0, "0s"},
		{42*time.Second + 900*time.Millisecond, "42s"},
		{3*time.Minute + 12*time.Second, "3m12s"},
		{time.Hour - time.Second, "59m59s"},
		{5*time.Hour + 7*time.Minute + 30*time.Second, "5h07m"},
		{3*24*time.Hour + 4*time.Hour + 59*time.Minute, "3d04h"},
	} {
		if got := humanAge(tc.d); got != tc.want {
			t.Errorf("humanAge(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestProgressBarOnlyOnATerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	counted := false
	for _, e := range []env{{stderr: f}, {stderr: &strings.Builder{}}} {
		p := e.progressBar("testing", func() (int, error) { counted = true; return 10, nil })
		p.update(5)
		p.finish()
		if p.bar != nil || counted {
			t.Errorf("stderr %T that is not a terminal got a progress bar", e.stderr)
		}
	}
	if b, _ := os.ReadFile(f.Name()); len(b) > 0 {
		t.Errorf("progress wrote %q to a file", b)
	}
}
