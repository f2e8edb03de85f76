package bench

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/outbox"
)

// writersPhase measures what the outbox's wake-up costs the writers: the
// commit rate of Options.Producers writers, each transaction inserting one
// row, into the outbox with its triggers (and, on PostgreSQL, the LISTEN
// connections `herald serve` would hold) and into a copy of the table with
// the same columns and indexes and no triggers, in turns. No relay runs:
// the relays' own load on the database is not what is measured here.
func (b *bench) writersPhase(ctx context.Context, rep *Report) (err error) {
	d := b.opts.WriteDuration
	b.progress("4/5 writers: %d writers, one row per transaction, %s on %s and %s on a copy without triggers, in turns",
		b.opts.Producers, d, outbox.Table, d)
	db := b.lanes[0].app.DB.WithContext(ctx)
	shape, err := tableShape(db, b.cfg.Database.Driver, outbox.Table)
	if err != nil {
		return fmt.Errorf("bench: writers: %w", err)
	}
	cleanup := context.WithoutCancel(ctx)
	if err := copyTable(db, b.cfg.Database.Driver, outbox.Table, CopyTable); err != nil {
		return fmt.Errorf("bench: writers: %w", err)
	}
	defer func() {
		if derr := b.lanes[0].app.DB.WithContext(cleanup).Exec("DROP TABLE IF EXISTS " + CopyTable).Error; derr != nil {
			err = errors.Join(err, fmt.Errorf("bench: writers: drop %s: %w", CopyTable, derr))
		}
	}()
	copyShape, err := tableShape(db, b.cfg.Database.Driver, CopyTable)
	if err != nil {
		return fmt.Errorf("bench: writers: %w", err)
	}
	if copyShape.columns != shape.columns || copyShape.indexes != shape.indexes || len(copyShape.triggers) > 0 {
		return fmt.Errorf("bench: writers: %s is no trigger-free copy of %s: %d columns, %d indexes, triggers %q against %d, %d, %q",
			CopyTable, outbox.Table, copyShape.columns, copyShape.indexes, copyShape.triggers, shape.columns, shape.indexes, shape.triggers)
	}

	w := &Writers{Writers: b.opts.Producers, Seconds: d.Seconds(), Triggers: shape.triggers}
	b.settle(ctx)
	var wakeups atomic.Int64
	stopListening := b.listenDuring(ctx, &wakeups)
	// Turns in the order A B B A, so that a drift over the phase (a WAL
	// growing, a cache warming) weighs on both tables alike. Before them,
	// one unrecorded turn on each table: a first turn runs slower whichever
	// table it is on (1,640-1,840 tps against 2,300-2,600 for the turns
	// after it, on the outbox and on the copy alike, PostgreSQL, 5 s turns,
	// the table order swapped to tell), and neither may be charged for it.
	rates := map[string]*WriteRate{outbox.Table: &w.Outbox, CopyTable: &w.Copy}
	turns := []struct {
		table  string
		warmUp bool
	}{{CopyTable, true}, {outbox.Table, true}, {outbox.Table, false}, {CopyTable, false}, {CopyTable, false}, {outbox.Table, false}}
	for _, turn := range turns {
		length := d / 2
		if turn.warmUp {
			length = d / 4
		}
		var r WriteRate
		if r, err = b.commitRate(ctx, turn.table, length); err != nil {
			break
		}
		if turn.warmUp {
			continue
		}
		sum := rates[turn.table]
		sum.Table = turn.table
		sum.Commits += r.Commits
		sum.Seconds += r.Seconds
		sum.Turns = append(sum.Turns, r.PerSecond)
	}
	stopListening()
	if err == nil && b.listen {
		// Listen also wakes once as each connection comes up, since it
		// may have missed notifications: that is not one heard.
		w.Listeners, w.Notifications = len(b.lanes), max(wakeups.Load()-int64(len(b.lanes)), 0)
	}
	// Whatever failed: the next phase's relays would relay these rows.
	if derr := b.lanes[0].app.DB.WithContext(cleanup).Exec("DELETE FROM "+outbox.Table+" WHERE event_type = ?", EventType).Error; derr != nil {
		err = errors.Join(err, fmt.Errorf("delete the rows written to %s: %w", outbox.Table, derr))
	}
	if err != nil {
		return fmt.Errorf("bench: writers: %w", err)
	}
	for _, r := range rates {
		r.PerSecond = float64(r.Commits) / r.Seconds
	}
	w.Ratio = w.Outbox.PerSecond / w.Copy.PerSecond
	rep.Writers = w
	return nil
}

// listenDuring holds one LISTEN connection per lane on PostgreSQL, as
// `herald serve` does for each relay, counting what they hear; the
// notifications a trigger sends cost the committing writers more when
// someone listens. The returned function stops them and waits.
func (b *bench) listenDuring(ctx context.Context, wakeups *atomic.Int64) (stop func()) {
	if !b.listen {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range b.lanes {
		wg.Go(func() { _ = outbox.Listen(ctx, b.cfg.Database.DSN, func() { wakeups.Add(1) }, b.log) })
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// commitRate has every writer commit one row per transaction into table,
// with the producers' connection pool, until d has passed.
func (b *bench) commitRate(ctx context.Context, table string, d time.Duration) (WriteRate, error) {
	// The columns outbox.Write fills, in one plain INSERT, so that both
	// tables get the same statement.
	insert := "INSERT INTO " + table + " (destination, event_id, event_type, partition_key, payload, available_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
	// A commit under way finishes even when the run is cancelled: one cut
	// off could still commit after the bench's cleanup ran.
	db := b.producerDB.WithContext(context.WithoutCancel(ctx))
	var commits atomic.Int64
	errs := make([]error, b.opts.Producers)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := range b.opts.Producers {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				ev, err := b.newEvent()
				if err != nil {
					errs[i] = err
					return
				}
				payload, err := ev.MarshalJSON()
				if err != nil {
					errs[i] = fmt.Errorf("marshal event: %w", err)
					return
				}
				now := b.columnTime(time.Now())
				err = db.Transaction(func(tx *gorm.DB) error {
					return tx.Exec(insert, outbox.MainDestination, ev.ID, ev.Type, ev.PartitionKey, payload, now, now).Error
				})
				if err != nil {
					errs[i] = fmt.Errorf("commit a row to %s: %w", table, err)
					return
				}
				commits.Add(1)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return WriteRate{}, err
	}
	if err := ctx.Err(); err != nil {
		return WriteRate{}, context.Cause(ctx)
	}
	n := int(commits.Load())
	return WriteRate{Table: table, Commits: n, Seconds: took.Seconds(), PerSecond: float64(n) / took.Seconds()}, nil
}

// sqliteTimeLayout is the outbox's time column form on SQLite (see its
// migrations): fixed width, so that comparing strings compares instants.
const sqliteTimeLayout = "2006-01-02T15:04:05.000Z"

// columnTime is t as outbox.Write binds it to a time column.
func (b *bench) columnTime(t time.Time) any {
	if b.cfg.Database.Driver == "sqlite" {
		return t.UTC().Format(sqliteTimeLayout)
	}
	return t.UTC()
}

// shape is what a table's trigger-free copy must keep.
type shape struct {
	columns, indexes int
	triggers         []string
}

// tableShape reads a table's column and index counts and trigger names
// from the catalog, whatever the migrations installed.
func tableShape(db *gorm.DB, driver, table string) (shape, error) {
	var s shape
	var columns, indexes, triggers string
	switch driver {
	case "postgres":
		columns = `SELECT COUNT(*) FROM pg_attribute WHERE attrelid = to_regclass(?) AND attnum > 0 AND NOT attisdropped`
		indexes = `SELECT COUNT(*) FROM pg_index WHERE indrelid = to_regclass(?)`
		triggers = `SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(?) AND NOT tgisinternal ORDER BY tgname`
	case "mysql":
		columns = `SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`
		indexes = `SELECT COUNT(DISTINCT INDEX_NAME) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`
		triggers = `SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = ? ORDER BY TRIGGER_NAME`
	default:
		columns = `SELECT COUNT(*) FROM pragma_table_info(?)`
		// Constraints' automatic indexes are listed too, without SQL.
		indexes = `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ?`
		triggers = `SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? ORDER BY name`
	}
	if err := db.Raw(columns, table).Scan(&s.columns).Error; err != nil {
		return s, fmt.Errorf("columns of %s: %w", table, err)
	}
	if s.columns == 0 {
		return s, fmt.Errorf("table %s not found", table)
	}
	if err := db.Raw(indexes, table).Scan(&s.indexes).Error; err != nil {
		return s, fmt.Errorf("indexes of %s: %w", table, err)
	}
	if err := db.Raw(triggers, table).Scan(&s.triggers).Error; err != nil {
		return s, fmt.Errorf("triggers of %s: %w", table, err)
	}
	return s, nil
}

// copyTable creates to with from's columns, defaults, identity and
// indexes, and without its triggers, replacing a copy a killed run left.
func copyTable(db *gorm.DB, driver, from, to string) error {
	if err := db.Exec("DROP TABLE IF EXISTS " + to).Error; err != nil {
		return fmt.Errorf("drop the copy a run left: %w", err)
	}
	var stmts []string
	switch driver {
	case "postgres":
		// INCLUDING ALL brings defaults, the identity (with a sequence of
		// its own), constraints and indexes; triggers are never copied.
		stmts = []string{"CREATE TABLE " + to + " (LIKE " + from + " INCLUDING ALL)"}
	case "mysql":
		stmts = []string{"CREATE TABLE " + to + " LIKE " + from}
	default:
		var objs []sqliteObject
		err := db.Raw(`SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('table', 'index') AND sql IS NOT NULL`, from).
			Scan(&objs).Error
		if err != nil {
			return fmt.Errorf("read the schema of %s: %w", from, err)
		}
		if stmts, err = sqliteCopy(objs, from, to); err != nil {
			return err
		}
	}
	for _, s := range stmts {
		if err := db.Exec(s).Error; err != nil {
			return fmt.Errorf("copy %s to %s: %w", from, to, err)
		}
	}
	return nil
}

// sqliteObject is a row of sqlite_master.
type sqliteObject struct {
	Type, Name, SQL string
}

// SQLite keeps each object's CREATE statement as written, with the table
// name quoted once the table has been renamed (as a migration that rebuilds
// it does).
var (
	sqliteCreateTable = regexp.MustCompile(`(?is)^\s*CREATE\s+TABLE\s+["` + "`" + `\[]?(\w+)["` + "`" + `\]]?\s*\(`)
	sqliteCreateIndex = regexp.MustCompile(`(?is)^\s*CREATE\s+(UNIQUE\s+)?INDEX\s+["` + "`" + `\[]?(\w+)["` + "`" + `\]]?\s+ON\s+["` + "`" + `\[]?(\w+)["` + "`" + `\]]?\s*\(`)
)

// sqliteCopy turns from's CREATE TABLE and CREATE INDEX statements into
// to's, the table first. An index keeps its name's suffix after from:
// herald_outbox_pending becomes <to>_pending.
func sqliteCopy(objs []sqliteObject, from, to string) ([]string, error) {
	var table string
	var indexes []string
	for _, o := range objs {
		switch o.Type {
		case "table":
			m := sqliteCreateTable.FindStringSubmatchIndex(o.SQL)
			if m == nil || o.SQL[m[2]:m[3]] != from {
				return nil, fmt.Errorf("copy %s: cannot read its CREATE TABLE statement: %q", from, o.SQL)
			}
			table = "CREATE TABLE " + to + " (" + o.SQL[m[1]:]
		case "index":
			m := sqliteCreateIndex.FindStringSubmatchIndex(o.SQL)
			if m == nil || o.SQL[m[6]:m[7]] != from {
				return nil, fmt.Errorf("copy %s: cannot read the CREATE INDEX statement of %s: %q", from, o.Name, o.SQL)
			}
			unique := ""
			if m[2] >= 0 {
				unique = "UNIQUE "
			}
			name := o.SQL[m[4]:m[5]]
			suffix, _ := strings.CutPrefix(name, from+"_")
			indexes = append(indexes, "CREATE "+unique+"INDEX "+to+"_"+suffix+" ON "+to+" ("+o.SQL[m[1]:])
		}
	}
	if table == "" {
		return nil, fmt.Errorf("copy %s: no CREATE TABLE statement found", from)
	}
	return append([]string{table}, indexes...), nil
}
