package enricher

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"
)

// Defaults of the sources.
const (
	DefaultPollInterval = 250 * time.Millisecond
	DefaultOverlap      = 10 * time.Second
	DefaultSweepEvery   = 10 * time.Second
	DefaultLookback     = 24 * time.Hour
	DefaultBatchSize    = 500
	DefaultCursorName   = "events"
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxRecords   = 500
	// DefaultProcessedRetention is how long the processed ids are kept after
	// the record was handled, so that `herald enrich verify` can account for
	// every audit row of that period.
	DefaultProcessedRetention = 7 * 24 * time.Hour
)

// WithPollInterval sets how long the tail waits between polls (default 250ms).
func WithPollInterval(d time.Duration) SourceOption {
	return func(c *sourceConfig) {
		if d > 0 {
			c.pollInterval = d
		}
	}
}

// WithOverlap sets how far before the latest processed created_on each poll
// reads again (default 10s), so that a row committed a little late is
// enriched at the next poll rather than at the next sweep. Zero is allowed.
func WithOverlap(d time.Duration) SourceOption {
	return func(c *sourceConfig) {
		if d >= 0 {
			c.overlap = d
		}
	}
}

// WithSweepEvery sets how often the tail sweeps the audit table for rows its
// read window cannot see (default 10s; see [Tail]). Zero sweeps at every poll.
func WithSweepEvery(d time.Duration) SourceOption {
	return func(c *sourceConfig) {
		if d >= 0 {
			c.sweepEvery = d
		}
	}
}

// WithLookback sets how far back from the database's now() the sweep reads on
// MySQL/MariaDB and SQLite (default 24h, more than any time zone's offset):
// a row dated earlier than that when it commits is found only by
// `herald enrich verify`. On PostgreSQL the sweep follows transaction ids
// and needs no lookback.
func WithLookback(d time.Duration) SourceOption {
	return func(c *sourceConfig) {
		if d > 0 {
			c.lookback = d
		}
	}
}

// WithProcessedRetention sets how long a processed id is kept after its
// record was handled (default 7 days): the period `herald enrich verify` can
// check. It is raised to the lookback when shorter.
func WithProcessedRetention(d time.Duration) SourceOption {
	return func(c *sourceConfig) {
		if d > 0 {
			c.retention = d
		}
	}
}

// WithBatchSize sets how many audit rows the tail reads per query and
// handles per transaction (default 500).
func WithBatchSize(n int) SourceOption {
	return func(c *sourceConfig) {
		if n > 0 {
			c.batchSize = n
		}
	}
}

// WithCursorName names the tail's cursor row (default "events"), so that two
// tails of different portals can share one outbox database.
func WithCursorName(name string) SourceOption {
	return func(c *sourceConfig) {
		if name != "" {
			c.cursorName = name
		}
	}
}

// WithObserver calls fn after each record a source handled and committed,
// from the goroutine that handled it (for metrics and tests).
func WithObserver(fn func(Result)) SourceOption { return func(c *sourceConfig) { c.observer = fn } }

// Tail follows the portal's audit table (`events`) and feeds every new row
// through the Enricher into the outbox. No committed audit row is passed
// over, whatever its created_on says.
//
// The audit table has no column that grows in commit order: ids are random
// UUIDs, and created_on is written by the portal's session: the start of its
// transaction (so a long transaction's row becomes visible after rows with
// later values have been read), shifted by hours when the session's time
// zone is not UTC, skewed between portal replicas, or NULL. The tail
// therefore reads in two ways, and keeps what it handled in the outbox
// database (herald_enricher_processed), so that a row read twice is
// enriched once:
//
//   - Every poll reads the window: rows with created_on >= read_from, where
//     read_from trails the latest created_on processed (high_water) by the
//     overlap ([WithOverlap]). high_water never passes the database's own
//     now(), so a row dated in the future cannot carry the window past the
//     rows after it. This is what keeps the latency low.
//   - Every sweep ([WithSweepEvery]) finds the rows the window cannot see.
//     On PostgreSQL it follows commit order: it reads the rows written by
//     transactions with an id at or after read_xid (the row's xmin), and
//     then moves read_xid to the oldest transaction still open when it
//     began (pg_snapshot_xmin), since every row of an earlier transaction
//     was visible to it. Rows dated in the past, in the future or NULL, and
//     rows of transactions open for any length of time, are all found.
//     On MySQL/MariaDB and SQLite, which offer no such order, it reads the
//     rows dated after now() minus the lookback ([WithLookback], 24h) and
//     those with no date.
//
// A row the tail cannot place in the audit trail's order (created_on NULL
// or unreadable) is quarantined with that reason, never passed over. Each
// batch of rows is enriched, its events written, its ids marked processed
// and high_water advanced in ONE transaction, so a crash at any point loses
// nothing and doubles nothing; a record that cannot be enriched is
// quarantined in a transaction of its own, so it never blocks the rest.
//
// Processed ids are kept for the retention period ([WithProcessedRetention])
// and, beyond it, while the window or a sweep could still read their row.
// Audit rows are taken to be insert-only: a row updated in place gets a new
// xmin on PostgreSQL and is read again; if its id was pruned by then, it is
// enriched again.
//
// A Tail's Poll and Run must not be called concurrently.
type Tail struct {
	p        *pipeline
	cfg      sourceConfig
	source   string
	auditDia string // the portal's dialect

	lastSweep time.Time // when the last sweep began; zero: none yet
}

// NewTail returns a tail of the audit table in the portal's database that
// writes to the outbox database db (the same database unless [WithPortal]).
// The outbox migrations must have been applied to db.
func NewTail(db *gorm.DB, e *Enricher, opts ...SourceOption) (*Tail, error) {
	cfg := newSourceConfig(opts)
	cfg.retention = max(cfg.retention, cfg.lookback)
	p, err := newPipeline(db, e, cfg)
	if err != nil {
		return nil, err
	}
	auditDB := db
	if cfg.portal != nil {
		auditDB = cfg.portal
	}
	t := &Tail{p: p, cfg: cfg, source: "tail:" + cfg.cursorName, auditDia: auditDB.Name()}
	return t, nil
}

func (t *Tail) portalDB() *gorm.DB {
	if t.cfg.portal != nil {
		return t.cfg.portal
	}
	return t.p.db
}

// Run polls until ctx ends and then returns nil once the batch in hand is
// committed or rolled back. A failing poll (the database is down) is logged
// and tried again after the poll interval.
func (t *Tail) Run(ctx context.Context) error {
	log := t.p.log.With(slog.String("cursor", t.cfg.cursorName))
	log.InfoContext(ctx, "enricher tail started",
		slog.Duration("poll_interval", t.cfg.pollInterval), slog.Duration("overlap", t.cfg.overlap),
		slog.Duration("sweep_every", t.cfg.sweepEvery))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			log.InfoContext(context.WithoutCancel(ctx), "enricher tail stopped")
			return nil
		case <-timer.C:
		}
		st, err := t.Poll(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			log.ErrorContext(ctx, "enricher tail poll failed; retrying", slog.Any("error", err),
				slog.Duration("retry_in", t.cfg.pollInterval))
		case st.Enriched+st.Quarantined > 0:
			log.InfoContext(ctx, "enricher tail poll", slog.Int("enriched", st.Enriched),
				slog.Int("quarantined", st.Quarantined), slog.Int("skipped", st.Duplicates),
				slog.Int("found_by_sweep", st.Swept))
		}
		timer.Reset(t.cfg.pollInterval)
	}
}

// PollStats counts what one poll did.
type PollStats struct {
	Read        int // rows read
	Enriched    int
	Quarantined int
	Duplicates  int // rows read again and skipped: processed before
	Swept       int // rows handled that only the sweep found
}

func (s *PollStats) count(res Result) {
	switch res.Status {
	case StatusEnriched:
		s.Enriched++
	case StatusQuarantined:
		s.Quarantined++
	case StatusDuplicate:
		s.Duplicates++
	}
}

// cursor is the tail's row in herald_enricher_cursor.
type cursor struct {
	readFrom, highWater nullTime
	readXID             sql.NullInt64 // PostgreSQL portal: where the sweep starts
}

// clock is what the portal database says at the start of a poll.
type clock struct {
	now time.Time
	// The PostgreSQL snapshot: every transaction with an id below xmin had
	// ended; none at or above xmax had started. Zero elsewhere.
	xmin, xmax int64
}

// Poll reads the window once, and sweeps when a sweep is due, handles every
// row not processed yet, then moves the window. It returns early with ctx's
// error when ctx ends.
func (t *Tail) Poll(ctx context.Context) (PollStats, error) {
	var st PollStats
	if err := t.ensureCursor(ctx); err != nil {
		return st, err
	}
	// Read before the rows: a transaction the snapshot saw ended has its
	// rows visible to the reads below.
	clk, err := t.readClock(ctx)
	if err != nil {
		return st, err
	}
	cur, err := t.readCursor(ctx)
	if err != nil {
		return st, err
	}
	if err := t.readWindow(ctx, clk, cur.readFrom, &st); err != nil {
		return st, err
	}
	if t.cfg.sweepEvery == 0 || t.lastSweep.IsZero() || time.Since(t.lastSweep) >= t.cfg.sweepEvery {
		started := time.Now()
		if err := t.sweep(ctx, clk, cur, &st); err != nil {
			return st, err
		}
		t.lastSweep = started
	}
	return st, t.moveWindow(ctx, clk, cur)
}

func (t *Tail) ensureCursor(ctx context.Context) error {
	q := "INSERT INTO " + CursorTable + " (name, updated_at) VALUES (?, ?)"
	if t.p.dia == "mysql" {
		q = "INSERT IGNORE INTO " + CursorTable + " (name, updated_at) VALUES (?, ?)"
	} else {
		q += " ON CONFLICT (name) DO NOTHING"
	}
	if err := t.p.db.WithContext(ctx).Exec(q, t.cfg.cursorName, t.p.encodeTime(time.Now())).Error; err != nil {
		return fmt.Errorf("enricher tail: create cursor: %w", err)
	}
	return nil
}

func (t *Tail) readCursor(ctx context.Context) (cursor, error) {
	var c cursor
	row := t.p.db.WithContext(ctx).Raw("SELECT read_from, high_water, read_xid FROM "+CursorTable+" WHERE name = ?", t.cfg.cursorName).Row()
	if err := row.Scan(&c.readFrom, &c.highWater, &c.readXID); err != nil {
		return c, fmt.Errorf("enricher tail: read cursor: %w", err)
	}
	return c, nil
}

// readClock reads the portal database's now() and, on PostgreSQL, its
// current snapshot's bounds.
func (t *Tail) readClock(ctx context.Context) (clock, error) {
	var c clock
	var now any
	var err error
	db := t.portalDB().WithContext(ctx)
	switch t.auditDia {
	case "postgres":
		err = db.Raw(`SELECT clock_timestamp(), pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint
FROM (SELECT pg_current_snapshot() AS s) snap`).Row().Scan(&now, &c.xmin, &c.xmax)
	case "mysql":
		err = db.Raw("SELECT UTC_TIMESTAMP(6)").Row().Scan(&now)
	default:
		err = db.Raw("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')").Row().Scan(&now)
	}
	if err == nil {
		c.now, err = decodeTime(now)
	}
	if err != nil {
		return c, fmt.Errorf("enricher tail: read the portal database's clock: %w", err)
	}
	return c, nil
}

// readWindow handles the rows with created_on >= from (every row while the
// tail has processed none), in pages.
func (t *Tail) readWindow(ctx context.Context, clk clock, from nullTime, st *PollStats) error {
	var after *pageKey
	for {
		page, err := t.readPage(ctx, clk, from, after)
		if err != nil {
			return err
		}
		st.Read += len(page)
		if err := t.handleRows(ctx, clk, page, st, false); err != nil {
			return err
		}
		if len(page) < t.cfg.batchSize {
			return nil
		}
		last := page[len(page)-1]
		after = &last.key
	}
}

// sweep finds and handles the rows the window cannot see. On PostgreSQL the
// first sweep of a cursor only records where sweeping starts: a new cursor's
// window read every row, and a cursor from before sweeps existed has had its
// window alone.
func (t *Tail) sweep(ctx context.Context, clk clock, cur cursor, st *PollStats) error {
	if t.auditDia == "postgres" && !cur.readXID.Valid {
		return t.setReadXID(ctx, clk.xmin)
	}
	var after *pageKey
	for {
		found, err := t.sweepPage(ctx, clk, cur, after)
		if err != nil {
			return err
		}
		if len(found) == 0 {
			break
		}
		st.Read += len(found)
		ids := make([]string, len(found))
		for i, f := range found {
			ids[i] = f.id
		}
		done, err := t.processedIDs(ctx, ids)
		if err != nil {
			return err
		}
		var missing []string
		for _, id := range ids {
			if !done[auditKey(id)] {
				missing = append(missing, id)
			}
		}
		st.Duplicates += len(ids) - len(missing)
		if len(missing) > 0 {
			rows, err := t.readRows(ctx, clk, missing)
			if err != nil {
				return err
			}
			for _, r := range rows {
				t.p.log.WarnContext(ctx, "audit record found only by the sweep: its created_on lies outside the tail's window",
					slog.String("audit_record_id", r.rec.ID), slog.String("action", r.rec.Name),
					slog.Any("created_on", r.key.at), slog.Int64("xid", r.xid))
			}
			before := st.Enriched + st.Quarantined
			if err := t.handleRows(ctx, clk, rows, st, true); err != nil {
				return err
			}
			st.Swept += st.Enriched + st.Quarantined - before
		}
		if len(found) < t.cfg.batchSize {
			break
		}
		last := found[len(found)-1]
		after = &last
	}
	if t.auditDia == "postgres" && clk.xmin > cur.readXID.Int64 {
		if err := t.setReadXID(ctx, clk.xmin); err != nil {
			return err
		}
	}
	return t.prune(ctx, clk)
}

// handleRows handles the rows of a page not processed yet, in one
// transaction.
func (t *Tail) handleRows(ctx context.Context, clk clock, page []auditRow, st *PollStats, checked bool) error {
	if len(page) == 0 {
		return nil
	}
	done := map[string]bool{}
	if !checked {
		ids := make([]string, len(page))
		for i, r := range page {
			ids[i] = r.rec.ID
		}
		var err error
		if done, err = t.processedIDs(ctx, ids); err != nil {
			return err
		}
	}
	var batch []incoming
	var latest time.Time
	for _, row := range page {
		if done[auditKey(row.rec.ID)] {
			st.Duplicates++
			continue
		}
		batch = append(batch, incoming{rec: row.rec, badErr: row.err, xid: row.xid})
		if row.rec.CreatedOn.After(latest) {
			latest = row.rec.CreatedOn
		}
	}
	if len(batch) == 0 {
		return nil
	}
	// A row dated in the future is enriched, but high_water stops at the
	// database's now(): the window must not move past rows still to come.
	latest = earliest(latest, clk.now)
	results, err := t.p.handleBatch(ctx, t.source, batch, t.advance(latest))
	for _, res := range results {
		st.count(res)
		if t.cfg.observer != nil {
			t.cfg.observer(res)
		}
	}
	return err
}

// advance returns the in-transaction step that moves high_water to
// createdOn unless it is already later.
func (t *Tail) advance(createdOn time.Time) func(tx *gorm.DB) error {
	return func(tx *gorm.DB) error {
		if createdOn.IsZero() {
			return nil
		}
		v := t.p.encodeTime(createdOn)
		err := tx.Exec("UPDATE "+CursorTable+" SET high_water = ?, updated_at = ? WHERE name = ? AND (high_water IS NULL OR high_water < ?)",
			v, t.p.encodeTime(time.Now()), t.cfg.cursorName, v).Error
		if err != nil {
			return fmt.Errorf("enricher tail: advance cursor: %w", err)
		}
		return nil
	}
}

func (t *Tail) setReadXID(ctx context.Context, xid int64) error {
	err := t.p.db.WithContext(ctx).Exec("UPDATE "+CursorTable+" SET read_xid = ?, updated_at = ? WHERE name = ?",
		xid, t.p.encodeTime(time.Now()), t.cfg.cursorName).Error
	if err != nil {
		return fmt.Errorf("enricher tail: move the sweep: %w", err)
	}
	return nil
}

// moveWindow sets read_from to high_water minus the overlap, never moved
// backwards, since the window's rows before it would be read for nothing.
func (t *Tail) moveWindow(ctx context.Context, clk clock, before cursor) error {
	cur, err := t.readCursor(ctx)
	if err != nil {
		return err
	}
	if !cur.highWater.valid {
		return nil
	}
	from := earliest(cur.highWater.t, clk.now).Add(-t.cfg.overlap)
	if before.readFrom.valid && !from.After(before.readFrom.t) {
		return nil
	}
	err = t.p.db.WithContext(ctx).Exec("UPDATE "+CursorTable+" SET read_from = ?, updated_at = ? WHERE name = ?",
		t.p.encodeTime(from), t.p.encodeTime(time.Now()), t.cfg.cursorName).Error
	if err != nil {
		return fmt.Errorf("enricher tail: move window: %w", err)
	}
	return nil
}

// prune deletes the processed ids past the retention period that neither
// the window nor a sweep can read again. An id whose record had no
// created_on is kept on MySQL/MariaDB and SQLite, where every sweep reads
// such rows.
func (t *Tail) prune(ctx context.Context, clk clock) error {
	cur, err := t.readCursor(ctx)
	if err != nil || !cur.readFrom.valid {
		return err
	}
	cutoff := t.p.encodeTime(time.Now().Add(-t.cfg.retention))
	q := "DELETE FROM " + ProcessedTable + " WHERE source = ? AND processed_at < ? AND "
	var args []any
	if t.auditDia == "postgres" {
		q += "(created_on IS NULL OR created_on < ?) AND (xid IS NULL OR xid < ?)"
		args = []any{t.source, cutoff, t.p.encodeTime(cur.readFrom.t), cur.readXID}
	} else {
		q += "created_on < ?"
		args = []any{t.source, cutoff, t.p.encodeTime(earliest(cur.readFrom.t, clk.now.Add(-t.cfg.lookback)))}
	}
	if err := t.p.db.WithContext(ctx).Exec(q, args...).Error; err != nil {
		return fmt.Errorf("enricher tail: prune processed ids: %w", err)
	}
	return nil
}

// pageKey is where a page ends: the raw ordering value and id of its last
// row, passed back to the database as it returned them.
type pageKey struct {
	at any
	id string
}

type auditRow struct {
	rec AuditRecord
	key pageKey
	xid int64 // the writing transaction's id on PostgreSQL; 0 elsewhere
	err error // the row could not be read into a record
}

// createdOnExpr is the ordering form of created_on. SQLite stores the
// portal's times as text in more than one layout ("…T10:00:00Z" and
// "… 10:00:00"), which do not sort as instants; strftime gives one form.
func (t *Tail) createdOnExpr() string {
	if t.auditDia == "sqlite" {
		return "strftime('%Y-%m-%dT%H:%M:%fZ', created_on)"
	}
	return "created_on"
}

func (t *Tail) boundArg(v time.Time) any {
	if t.auditDia == "sqlite" {
		return v.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return v.UTC()
}

// auditColumns are the audit table's columns a record is read from, then
// the ordering form of created_on and the row's 32-bit xmin (0 where the
// portal is not PostgreSQL).
func (t *Tail) auditColumns() string {
	x := "0"
	if t.auditDia == "postgres" {
		x = "xmin::text::bigint"
	}
	return `id, name, subject_id, subject_type, target_id, target_type, actor_id,
  deleted_subject_identifier, deleted_target_identifier, created_on, ` + t.createdOnExpr() + ` AS k, ` + x + ` AS x`
}

func (t *Tail) readPage(ctx context.Context, clk clock, from nullTime, after *pageKey) ([]auditRow, error) {
	k := t.createdOnExpr()
	q := `SELECT ` + t.auditColumns() + ` FROM events WHERE 1 = 1`
	var args []any
	if from.valid {
		q += " AND " + k + " >= ?"
		args = append(args, t.boundArg(from.t))
	}
	if after != nil {
		q += " AND (" + k + " > ? OR (" + k + " = ? AND id > ?))"
		args = append(args, after.at, after.at, after.id)
	}
	q += " ORDER BY k, id LIMIT ?"
	args = append(args, t.cfg.batchSize)
	return t.queryRows(ctx, clk, q, args...)
}

// readRows reads the audit rows with the given ids.
func (t *Tail) readRows(ctx context.Context, clk clock, ids []string) ([]auditRow, error) {
	return t.queryRows(ctx, clk, `SELECT `+t.auditColumns()+` FROM events WHERE id IN ? ORDER BY k, id`, ids)
}

func (t *Tail) queryRows(ctx context.Context, clk clock, q string, args ...any) ([]auditRow, error) {
	rows, err := t.portalDB().WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("enricher tail: read audit table: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err reports what matters
	var page []auditRow
	for rows.Next() {
		var id, name, subjectID, subjectType, targetID, targetType, actorID, delSubject, delTarget sql.NullString
		var createdOn, key any
		var x32 int64
		if err := rows.Scan(&id, &name, &subjectID, &subjectType, &targetID, &targetType, &actorID,
			&delSubject, &delTarget, &createdOn, &key, &x32); err != nil {
			return nil, fmt.Errorf("enricher tail: scan audit row: %w", err)
		}
		r := auditRow{
			rec: AuditRecord{
				ID: id.String, Name: name.String,
				SubjectID: subjectID.String, SubjectType: subjectType.String,
				TargetID: targetID.String, TargetType: targetType.String,
				ActorID:                  actorID.String,
				DeletedSubjectIdentifier: delSubject.String, DeletedTargetIdentifier: delTarget.String,
			},
			key: pageKey{at: key, id: id.String},
		}
		if t.auditDia == "postgres" {
			r.xid = fullXID(x32, clk.xmax)
		}
		if b, ok := key.([]byte); ok {
			r.key.at = string(b)
		}
		switch r.rec.CreatedOn, err = decodeTime(createdOn); {
		case err != nil:
			r.err = &RecordError{RecordID: id.String, Field: "created_on", Reason: err.Error() + "; the tail cannot place the record in the audit trail's order"}
		case createdOn == nil:
			r.err = &RecordError{RecordID: id.String, Field: "created_on", Reason: "NULL; the tail cannot place the record in the audit trail's order"}
		}
		page = append(page, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("enricher tail: read audit table: %w", err)
	}
	return page, nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// fullXID widens a row's 32-bit xmin to the 64-bit transaction id nearest
// the snapshot's xmax, which any row a sweep reads lies within 2^31 of.
func fullXID(x32, xmax int64) int64 {
	return xmax + int64(int32(uint32(x32)-uint32(xmax)))
}

// sweepPage reads one page of the ids a sweep looks at. On PostgreSQL they
// are the rows written by transactions from read_xid on, in xid order (the
// key's at is the distance from read_xid, wrap-safe modulo 2^32); elsewhere the rows
// dated after now() minus the lookback, or not dated (on SQLite, also dated
// in a form it cannot read), in created_on order.
func (t *Tail) sweepPage(ctx context.Context, clk clock, cur cursor, after *pageKey) ([]pageKey, error) {
	var q string
	var args []any
	if t.auditDia == "postgres" {
		from := cur.readXID.Int64
		span := clk.xmax - from
		if span > 1<<31-1 {
			t.p.log.WarnContext(ctx, "the tail's sweep is more than 2^31 transactions behind; it reads only the last 2^31",
				slog.Int64("read_xid", from), slog.Int64("xmax", clk.xmax))
			span = 1<<31 - 1
		}
		q = `SELECT id, d FROM (SELECT id, ((xmin::text::bigint - ? + 4294967296) % 4294967296) AS d FROM events) e WHERE d < ?`
		args = []any{from % (1 << 32), span}
		if after != nil {
			q += " AND (d > ? OR (d = ? AND id > ?))"
			args = append(args, after.at, after.at, after.id)
		}
		q += " ORDER BY d, id LIMIT ?"
	} else {
		k := t.createdOnExpr()
		q = `SELECT id, ` + k + ` AS d FROM events WHERE (` + k + ` >= ? OR ` + k + ` IS NULL)`
		args = []any{t.boundArg(clk.now.Add(-t.cfg.lookback))}
		if after != nil {
			// NULL sorts first on both databases: the NULL rows come in the
			// first page(s), ordered by id.
			if after.at == nil {
				q += " AND (" + k + " IS NOT NULL OR id > ?)"
				args = append(args, after.id)
			} else {
				q += " AND (" + k + " > ? OR (" + k + " = ? AND id > ?))"
				args = append(args, after.at, after.at, after.id)
			}
		}
		q += " ORDER BY d, id LIMIT ?"
	}
	args = append(args, t.cfg.batchSize)
	rows, err := t.portalDB().WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("enricher tail: sweep audit table: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err reports what matters
	var out []pageKey
	for rows.Next() {
		var f pageKey
		if err := rows.Scan(&f.id, &f.at); err != nil {
			return nil, fmt.Errorf("enricher tail: scan swept row: %w", err)
		}
		if b, ok := f.at.([]byte); ok {
			f.at = string(b)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("enricher tail: sweep audit table: %w", err)
	}
	return out, nil
}

// processedIDs returns which of the ids are processed already.
func (t *Tail) processedIDs(ctx context.Context, ids []string) (map[string]bool, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = auditKey(id)
	}
	var got []string
	err := t.p.db.WithContext(ctx).Raw("SELECT audit_id FROM "+ProcessedTable+" WHERE audit_id IN ?", keys).Scan(&got).Error
	if err != nil {
		return nil, fmt.Errorf("enricher tail: read processed ids: %w", err)
	}
	done := make(map[string]bool, len(got))
	for _, id := range got {
		done[id] = true
	}
	return done, nil
}
