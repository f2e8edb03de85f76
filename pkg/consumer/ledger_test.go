package consumer_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/glebarez/go-sqlite" // registers "sqlite"
	gomysql "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/consumer"
)

// backend is one database the ledger is tested on, opened through
// database/sql as a customer would.
type backend struct {
	name    string
	dialect consumer.Dialect
	open    func(t *testing.T, td testdb.DB) *sql.DB
}

func backends() []backend {
	return []backend{
		{"sqlite", consumer.SQLite, func(t *testing.T, td testdb.DB) *sql.DB {
			// No _txlock=immediate: the ledger's first statement writes,
			// so a deferred transaction is enough.
			return openSQL(t, "sqlite", "file:"+td.DSN+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
		}},
		{"postgres", consumer.Postgres, func(t *testing.T, td testdb.DB) *sql.DB {
			return openSQL(t, "pgx", td.DSN)
		}},
		{"mysql", consumer.MySQL, func(t *testing.T, td testdb.DB) *sql.DB {
			return openSQL(t, "mysql", td.DSN) // no parseTime: times come back as text
		}},
		{"mysql-parsetime-tokyo", consumer.MySQL, func(t *testing.T, td testdb.DB) *sql.DB {
			return openSQL(t, "mysql", tokyoDSN(t, td.DSN))
		}},
	}
}

// tokyoDSN is dsn with parseTime and a driver time zone far from UTC, which
// must not shift the times the ledger compares.
func tokyoDSN(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ParseTime = true
	if cfg.Loc, err = time.LoadLocation("Asia/Tokyo"); err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	return cfg.FormatDSN()
}

func openSQL(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("ping %s: %v", driver, err)
	}
	return db
}

// fixture is one backend's database with the ledger's tables and an
// effects table, where fn records what it applied.
type fixture struct {
	db      *sql.DB
	dialect consumer.Dialect
}

func newFixture(t *testing.T, b backend) fixture {
	t.Helper()
	td := testdb.New(t, string(b.dialect))
	f := fixture{db: b.open(t, td), dialect: b.dialect}
	if _, err := f.db.Exec(`CREATE TABLE effects (consumer VARCHAR(100) NOT NULL, event_id VARCHAR(100) NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f fixture) ledger(t *testing.T, name string) *consumer.Ledger {
	t.Helper()
	l, err := consumer.NewLedger(f.db, f.dialect, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return l
}

// q rewrites ? placeholders for PostgreSQL.
func (f fixture) q(query string) string {
	if f.dialect != consumer.Postgres {
		return query
	}
	for n := 1; strings.Contains(query, "?"); n++ {
		query = strings.Replace(query, "?", fmt.Sprintf("$%d", n), 1)
	}
	return query
}

// apply is an fn that records the event in effects, as a consumer's own
// write in the ledger's transaction.
func (f fixture) apply(name string, ev consumer.Event, calls *atomic.Int32) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		calls.Add(1)
		_, err := tx.ExecContext(ctx, f.q(`INSERT INTO effects (consumer, event_id) VALUES (?, ?)`), name, ev.ID)
		return err
	}
}

func (f fixture) effects(t *testing.T, name string) int {
	t.Helper()
	var n int
	if err := f.db.QueryRow(f.q(`SELECT COUNT(*) FROM effects WHERE consumer = ?`), name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func newEvent(t *testing.T, subject string, at time.Time) consumer.Event {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return consumer.Event{ID: id.String(), Source: "/portal", Type: "io.herald.portal.data_product.updated", Subject: subject, Time: at}
}

// Every backend passes the same suite.
func TestLedger(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, b)
			for _, c := range []struct {
				name string
				run  func(*testing.T, fixture)
			}{
				{"AppliedOnceThenDuplicate", testAppliedOnce},
				{"ErrorRollsBack", testErrorRollsBack},
				{"StaleRule", testStaleRule},
				{"ConcurrentSameID", testConcurrentSameID},
				{"ConcurrentSameSubject", testConcurrentSameSubject},
				{"ConsumersAreIndependent", testConsumersIndependent},
				{"Prune", testPrune},
				{"InvalidEvents", testInvalidEvents},
				{"HandleParsesThenProcesses", testHandle},
			} {
				t.Run(c.name, func(t *testing.T) { c.run(t, f) })
			}
		})
	}
}

func testAppliedOnce(t *testing.T, f fixture) {
	ctx := context.Background()
	l := f.ledger(t, t.Name())
	ev := newEvent(t, "data_products/1", time.Now())
	var calls atomic.Int32
	for i, want := range []consumer.Outcome{consumer.Applied, consumer.Duplicate, consumer.Duplicate} {
		got, err := l.Process(ctx, ev, f.apply(t.Name(), ev, &calls))
		if err != nil || got != want {
			t.Fatalf("delivery %d: Process = %v, %v; want %v", i+1, got, err, want)
		}
	}
	if calls.Load() != 1 || f.effects(t, t.Name()) != 1 {
		t.Errorf("fn ran %d times, %d effects; want 1, 1", calls.Load(), f.effects(t, t.Name()))
	}
	// Migrate is idempotent.
	if err := l.Migrate(ctx); err != nil {
		t.Errorf("second Migrate: %v", err)
	}
}

func testErrorRollsBack(t *testing.T, f fixture) {
	ctx := context.Background()
	l := f.ledger(t, t.Name())
	base := time.Now()
	failing := newEvent(t, "data_products/1", base)
	boom := errors.New("boom")
	var calls atomic.Int32
	got, err := l.Process(ctx, failing, func(ctx context.Context, tx *sql.Tx) error {
		if err := f.apply(t.Name(), failing, &calls)(ctx, tx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || got != 0 {
		t.Fatalf("Process = %v, %v; want 0 and an error wrapping boom", got, err)
	}
	if n := f.effects(t, t.Name()); n != 0 {
		t.Errorf("%d effects after the rollback; want 0", n)
	}
	// The failed event's time was not recorded for its subject: an older
	// event is not stale.
	older := newEvent(t, "data_products/1", base.Add(-time.Second))
	if got, err := l.Process(ctx, older, f.apply(t.Name(), older, &calls)); got != consumer.Applied || err != nil {
		t.Errorf("older event after the failure: Process = %v, %v; want applied", got, err)
	}
	// Redelivery retries it, and it applies.
	if got, err := l.Process(ctx, failing, f.apply(t.Name(), failing, &calls)); got != consumer.Applied || err != nil {
		t.Errorf("redelivery: Process = %v, %v; want applied", got, err)
	}
	if calls.Load() != 3 || f.effects(t, t.Name()) != 2 {
		t.Errorf("fn ran %d times, %d effects; want 3, 2", calls.Load(), f.effects(t, t.Name()))
	}
}

func testStaleRule(t *testing.T, f fixture) {
	ctx := context.Background()
	l := f.ledger(t, t.Name())
	// Half way through a microsecond: times are compared at microsecond
	// precision, whatever their nanoseconds.
	base := time.Date(2026, 1, 2, 3, 4, 5, 123456500, time.UTC)
	const s = "data_products/1"
	at := func(d time.Duration) time.Time { return base.Add(d) }
	var (
		first    = newEvent(t, s, base)
		older    = newEvent(t, s, at(-time.Microsecond))
		noTime   = newEvent(t, s, time.Time{})
		noSubj   = newEvent(t, "", at(-time.Hour))
		otherSub = newEvent(t, "data_products/2", at(-time.Hour))
	)
	steps := []struct {
		name string
		ev   consumer.Event
		want consumer.Outcome
	}{
		{"first of its subject", first, consumer.Applied},
		{"older", older, consumer.Stale},
		{"stale again is a duplicate", older, consumer.Duplicate},
		{"equal time, another id", newEvent(t, s, base), consumer.Applied},
		{"a microsecond newer", newEvent(t, s, at(time.Microsecond)), consumer.Applied},
		{"the first, delivered again", first, consumer.Duplicate},
		{"the first's time, now older", newEvent(t, s, base), consumer.Stale},
		{"later in the same microsecond is equal", newEvent(t, s, at(time.Microsecond+300*time.Nanosecond)), consumer.Applied},
		{"earlier in the same microsecond is equal", newEvent(t, s, at(time.Microsecond-400*time.Nanosecond)), consumer.Applied},
		{"the previous microsecond's last nanosecond", newEvent(t, s, at(time.Microsecond-501*time.Nanosecond)), consumer.Stale},
		{"the same instant in another zone", newEvent(t, s, at(time.Microsecond).In(time.FixedZone("X", -7*3600))), consumer.Applied},
		{"no time skips the rule", noTime, consumer.Applied},
		{"no subject skips the rule", noSubj, consumer.Applied},
		{"another subject has its own time", otherSub, consumer.Applied},
		{"much newer", newEvent(t, s, at(time.Hour)), consumer.Applied},
		{"the earlier newest is now stale", newEvent(t, s, at(time.Microsecond)), consumer.Stale},
	}
	var calls atomic.Int32
	applied := int32(0)
	for _, st := range steps {
		got, err := l.Process(ctx, st.ev, f.apply(t.Name(), st.ev, &calls))
		if err != nil || got != st.want {
			t.Errorf("%s: Process = %v, %v; want %v", st.name, got, err, st.want)
		}
		if st.want == consumer.Applied {
			applied++
		}
	}
	if calls.Load() != applied {
		t.Errorf("fn ran %d times; want %d (applied only)", calls.Load(), applied)
	}
	var outcome string
	if err := f.db.QueryRow(f.q(`SELECT outcome FROM `+consumer.EventsTable+` WHERE consumer = ? AND event_id = ?`),
		t.Name(), older.ID).Scan(&outcome); err != nil || outcome != "stale" {
		t.Errorf("recorded outcome of the stale event = %q, %v; want stale", outcome, err)
	}
}

// N deliveries of one event at once: fn runs once.
func testConcurrentSameID(t *testing.T, f fixture) {
	ctx := context.Background()
	l := f.ledger(t, t.Name())
	ev := newEvent(t, "data_products/1", time.Now())
	const n = 8
	var (
		calls    atomic.Int32
		wg       sync.WaitGroup
		start    = make(chan struct{})
		outcomes = make([]consumer.Outcome, n)
		errs     = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			outcomes[i], errs[i] = l.Process(ctx, ev, func(ctx context.Context, tx *sql.Tx) error {
				time.Sleep(20 * time.Millisecond) // keep the others waiting on the id
				return f.apply(t.Name(), ev, &calls)(ctx, tx)
			})
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Process: %v", err)
	}
	slices.Sort(outcomes)
	want := append([]consumer.Outcome{consumer.Applied}, slices.Repeat([]consumer.Outcome{consumer.Duplicate}, n-1)...)
	if !slices.Equal(outcomes, want) {
		t.Errorf("outcomes = %v; want one applied, %d duplicates", outcomes, n-1)
	}
	if calls.Load() != 1 || f.effects(t, t.Name()) != 1 {
		t.Errorf("fn ran %d times, %d effects; want 1, 1", calls.Load(), f.effects(t, t.Name()))
	}
}

// N events of one subject at once, in random order: they are applied one
// after the other, each only if no newer one was applied before it.
func testConcurrentSameSubject(t *testing.T, f fixture) {
	ctx := context.Background()
	l := f.ledger(t, t.Name())
	const n = 10
	base := time.Now().Truncate(time.Second)
	evs := make([]consumer.Event, n)
	for i, k := range rand.Perm(n) {
		evs[i] = newEvent(t, "data_products/1", base.Add(time.Duration(k)*time.Millisecond))
	}
	var (
		mu      sync.Mutex
		applied []time.Time // in the order fn ran
		wg      sync.WaitGroup
		start   = make(chan struct{})
		errs    = make([]error, n)
	)
	for i, ev := range evs {
		wg.Go(func() {
			<-start
			_, errs[i] = l.Process(ctx, ev, func(context.Context, *sql.Tx) error {
				mu.Lock()
				applied = append(applied, ev.Time)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				return nil
			})
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Process: %v", err)
	}
	if !slices.IsSortedFunc(applied, time.Time.Compare) {
		t.Errorf("applied out of order, an older event after a newer one: %v", applied)
	}
	if len(applied) == 0 || !applied[len(applied)-1].Equal(base.Add((n-1)*time.Millisecond)) {
		t.Errorf("applied %v; want the newest last", applied)
	}
}

func testConsumersIndependent(t *testing.T, f fixture) {
	ctx := context.Background()
	a, b := f.ledger(t, t.Name()+"/a"), f.ledger(t, t.Name()+"/b")
	base := time.Now()
	ev := newEvent(t, "data_products/1", base)
	var calls atomic.Int32
	for _, step := range []struct {
		l    *consumer.Ledger
		name string
		ev   consumer.Event
		want consumer.Outcome
	}{
		{a, "a", ev, consumer.Applied},
		{b, "b", ev, consumer.Applied},
		{a, "a", ev, consumer.Duplicate},
		{a, "a", newEvent(t, "data_products/1", base.Add(time.Hour)), consumer.Applied},
		// a has applied a newer event of the subject; b has not.
		{b, "b", newEvent(t, "data_products/1", base.Add(time.Minute)), consumer.Applied},
		{a, "a", newEvent(t, "data_products/1", base.Add(time.Minute)), consumer.Stale},
	} {
		got, err := step.l.Process(ctx, step.ev, f.apply(t.Name()+"/"+step.name, step.ev, &calls))
		if err != nil || got != step.want {
			t.Errorf("consumer %s, event at %v: Process = %v, %v; want %v", step.name, step.ev.Time, got, err, step.want)
		}
	}
}

func testPrune(t *testing.T, f fixture) {
	ctx := context.Background()
	l, other := f.ledger(t, t.Name()), f.ledger(t, t.Name()+"/other")
	var calls atomic.Int32
	evs := []consumer.Event{newEvent(t, "", time.Now()), newEvent(t, "", time.Now())}
	for _, ev := range evs {
		for _, led := range []*consumer.Ledger{l, other} {
			if _, err := led.Process(ctx, ev, f.apply(t.Name(), ev, &calls)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := l.Prune(ctx, time.Now().Add(-time.Hour)); n != 0 || err != nil {
		t.Errorf("Prune(an hour ago) = %d, %v; want 0", n, err)
	}
	if n, err := l.Prune(ctx, time.Now().Add(time.Hour)); n != 2 || err != nil {
		t.Errorf("Prune(in an hour) = %d, %v; want 2", n, err)
	}
	// A pruned id is new again; the other consumer's are kept.
	if got, err := l.Process(ctx, evs[0], f.apply(t.Name(), evs[0], &calls)); got != consumer.Applied || err != nil {
		t.Errorf("pruned id: Process = %v, %v; want applied", got, err)
	}
	if got, err := other.Process(ctx, evs[0], f.apply(t.Name(), evs[0], &calls)); got != consumer.Duplicate || err != nil {
		t.Errorf("other consumer: Process = %v, %v; want duplicate", got, err)
	}
}

func testInvalidEvents(t *testing.T, f fixture) {
	ctx := context.Background()
	l := f.ledger(t, t.Name())
	ok := newEvent(t, "data_products/1", time.Now())
	long := func(n int) string { return strings.Repeat("x", n) }
	for name, ev := range map[string]consumer.Event{
		"empty id":     {Subject: "s", Time: time.Now()},
		"long id":      {ID: long(256)},
		"long subject": {ID: ok.ID, Subject: long(1025), Time: time.Now()},
	} {
		ran := false
		_, err := l.Process(ctx, ev, func(context.Context, *sql.Tx) error { ran = true; return nil })
		if !errors.Is(err, consumer.ErrInvalid) || ran {
			t.Errorf("%s: Process = %v, fn ran %v; want ErrInvalid and no run", name, err, ran)
		}
	}
	if _, err := l.Process(ctx, ok, nil); err == nil {
		t.Error("nil fn: Process returned no error")
	}
	// The limits are the columns' own: the longest values fit.
	edge := consumer.Event{ID: long(255), Subject: long(1024), Time: time.Now()}
	if got, err := l.Process(ctx, edge, func(context.Context, *sql.Tx) error { return nil }); got != consumer.Applied || err != nil {
		t.Errorf("longest id and subject: Process = %v, %v; want applied", got, err)
	}
	// Ids are compared byte for byte, whatever the collation: neither case
	// nor trailing spaces are ignored.
	for _, id := range []string{strings.ToUpper(long(255)), long(254), long(254) + " "} {
		ev := consumer.Event{ID: id}
		if got, err := l.Process(ctx, ev, func(context.Context, *sql.Tx) error { return nil }); got != consumer.Applied || err != nil {
			t.Errorf("id %q: Process = %v, %v; want applied (a new id)", id, got, err)
		}
	}
}

// MySQL times mean the same whatever the DSN's parseTime and loc, so
// processes with different DSNs can share a ledger.
func TestLedgerMySQLTimesIgnoreTheDSN(t *testing.T) {
	td := testdb.New(t, "mysql")
	plain := openSQL(t, "mysql", td.DSN)
	tokyo := openSQL(t, "mysql", tokyoDSN(t, td.DSN))
	ctx := context.Background()
	base := time.Now()
	for i, pair := range [][2]*sql.DB{{plain, tokyo}, {tokyo, plain}} {
		name := fmt.Sprintf("c%d", i)
		var ledgers [2]*consumer.Ledger
		for j, db := range pair {
			l, err := consumer.NewLedger(db, consumer.MySQL, name)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			ledgers[j] = l
		}
		nop := func(context.Context, *sql.Tx) error { return nil }
		if got, err := ledgers[0].Process(ctx, newEvent(t, "s", base), nop); got != consumer.Applied || err != nil {
			t.Fatalf("Process = %v, %v", got, err)
		}
		for _, c := range []struct {
			d    time.Duration
			want consumer.Outcome
		}{{-time.Microsecond, consumer.Stale}, {time.Microsecond, consumer.Applied}} {
			if got, err := ledgers[1].Process(ctx, newEvent(t, "s", base.Add(c.d)), nop); got != c.want || err != nil {
				t.Errorf("pair %d, %v: Process = %v, %v; want %v", i, c.d, got, err, c.want)
			}
		}
	}
}

// Replicas that all migrate at boot do not trip over each other.
func TestMigrateConcurrently(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			db := b.open(t, testdb.New(t, string(b.dialect)))
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Go(func() {
					l, err := consumer.NewLedger(db, b.dialect, fmt.Sprintf("replica-%d", i))
					if err == nil {
						err = l.Migrate(context.Background())
					}
					errs[i] = err
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNewLedgerValidates(t *testing.T) {
	db := openSQL(t, "sqlite", "file:"+t.TempDir()+"/x.db")
	for name, c := range map[string]struct {
		db       *sql.DB
		dialect  consumer.Dialect
		consumer string
		mention  string
	}{
		"nil db":        {nil, consumer.SQLite, "c", "db"},
		"bad dialect":   {db, "oracle", "c", "oracle"},
		"no consumer":   {db, consumer.SQLite, "", "consumer name"},
		"long consumer": {db, consumer.SQLite, strings.Repeat("c", 256), "consumer name"},
	} {
		if _, err := consumer.NewLedger(c.db, c.dialect, c.consumer); err == nil || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%s: NewLedger error = %v; want one naming %q", name, err, c.mention)
		}
	}
	if _, err := consumer.NewLedger(db, consumer.SQLite, strings.Repeat("c", 255)); err != nil {
		t.Errorf("255-byte consumer name: %v", err)
	}
}

func TestMigrationSQL(t *testing.T) {
	for _, d := range []consumer.Dialect{consumer.Postgres, consumer.MySQL, consumer.SQLite} {
		s := consumer.MigrationSQL(d)
		for _, want := range []string{"CREATE TABLE IF NOT EXISTS " + consumer.EventsTable, "CREATE TABLE IF NOT EXISTS " + consumer.SubjectsTable} {
			if !strings.Contains(s, want) {
				t.Errorf("MigrationSQL(%s) lacks %q:\n%s", d, want, s)
			}
		}
	}
	if s := consumer.MigrationSQL("oracle"); s != "" {
		t.Errorf("MigrationSQL(oracle) = %q; want empty", s)
	}
}

func testHandle(t *testing.T, f fixture) {
	ctx := context.Background()
	l := f.ledger(t, t.Name())
	var calls atomic.Int32
	fn := func(ctx context.Context, tx *sql.Tx, ev consumer.Event) error {
		return f.apply(t.Name(), ev, &calls)(ctx, tx)
	}
	if _, _, err := l.Handle(ctx, []byte(`{"specversion":"1.0"}`), fn); !errors.Is(err, consumer.ErrInvalid) || calls.Load() != 0 {
		t.Fatalf("Handle(not an event) = %v after %d calls; want ErrInvalid, no call", err, calls.Load())
	}
	id := newEvent(t, "", time.Time{}).ID
	body := []byte(`{"specversion":"1.0","id":"` + id + `","source":"/portal","type":"io.herald.portal.data_product.updated","subject":"data_products/1"}`)
	for i, want := range []consumer.Outcome{consumer.Applied, consumer.Duplicate} {
		ev, got, err := l.Handle(ctx, body, fn)
		if err != nil || got != want || ev.ID != id || ev.Subject != "data_products/1" {
			t.Fatalf("delivery %d: Handle = %+v, %v, %v; want event %s, %v", i+1, ev, got, err, id, want)
		}
	}
	if calls.Load() != 1 || f.effects(t, t.Name()) != 1 {
		t.Errorf("fn ran %d times, %d effects; want 1, 1", calls.Load(), f.effects(t, t.Name()))
	}
}
