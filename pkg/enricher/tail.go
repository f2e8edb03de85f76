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
	DefaultPollInterval = time.Second
	DefaultOverlap      = 5 * time.Minute
	DefaultBatchSize    = 500
	DefaultCursorName   = "events"
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxRecords   = 500
	// DefaultProcessedRetention is how long the processed ids are kept after
	// the record was handled, so that `herald enrich verify` can account for
	// every audit row of that period.
	DefaultProcessedRetention = 7 * 24 * time.Hour
)

// WithPollInterval sets how long the tail waits between polls (default 1s).
func WithPollInterval(d time.Duration) SourceOption {
	return func(c *sourceConfig) {
		if d > 0 {
			c.pollInterval = d
		}
	}
}

// WithOverlap sets how far before the latest processed created_on each poll
// reads again (default 5m): the longest a portal transaction may stay open
// and still have its audit row tailed where the database cannot tell the
// tail about open transactions (see [Tail]). Zero is allowed.
func WithOverlap(d time.Duration) SourceOption {
	return func(c *sourceConfig) {
		if d >= 0 {
			c.overlap = d
		}
	}
}

// WithBatchSize sets how many audit rows the tail reads per query (default 500).
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
// through the Enricher into the outbox.
//
// The audit table has no column that grows in commit order: ids are random
// UUIDs, and created_on is the start of the portal transaction, so a row of a
// long transaction becomes visible after rows with later created_on values
// have been read. A cursor "created_on > last seen" would skip it. The tail
// therefore keeps two things in the outbox database:
//
//   - a cursor row: high_water, the latest created_on it has processed, and
//     read_from, where the next poll starts reading;
//   - the processed ids (herald_enricher_processed), so that a row read again
//     is recognised and skipped.
//
// Each poll reads every row with created_on >= read_from (in pages, by
// created_on and id) and handles those whose id is not processed yet. Each
// row is enriched, its events written, its id marked processed and the
// high_water advanced in ONE transaction, so a crash at any point loses
// nothing and doubles nothing: a committed row is skipped on the next read,
// an uncommitted one is read again. A record that cannot be enriched is
// quarantined in that same kind of transaction, so it never blocks the rows
// after it.
//
// After the poll, read_from moves to high_water minus the overlap
// ([WithOverlap]) and processed ids older than read_from are pruned. The
// assumption is that no portal transaction stays open longer than the
// overlap: a row whose created_on is already before read_from when it
// commits is never read. On PostgreSQL the tail does better: at the start of
// each poll it reads the start time of the oldest open transaction in the
// portal's database (pg_stat_activity.xact_start, which is exactly what the
// portal's created_on holds) and never moves read_from past it, so a
// transaction of any length is caught. That needs the tail's role to see
// other sessions' xact_start (the portal's own role, a superuser, or
// pg_read_all_stats); where it cannot, or on SQLite and MySQL, the overlap
// alone protects. If an open transaction older than read_from is seen
// anyway, the tail logs a warning naming it: its audit row would be missed.
//
// read_from never moves backwards, since the ids before it are pruned and
// rows there would be enriched twice.
type Tail struct {
	p        *pipeline
	cfg      sourceConfig
	source   string
	auditDia string // the portal's dialect
}

// NewTail returns a tail of the audit table in the portal's database that
// writes to the outbox database db (the same database unless [WithPortal]).
// The outbox migrations must have been applied to db.
func NewTail(db *gorm.DB, e *Enricher, opts ...SourceOption) (*Tail, error) {
	cfg := newSourceConfig(opts)
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

// Run polls until ctx ends and then returns nil once the record in hand is
// committed or rolled back. A failing poll (the database is down) is logged
// and tried again after the poll interval.
func (t *Tail) Run(ctx context.Context) error {
	log := t.p.log.With(slog.String("cursor", t.cfg.cursorName))
	log.InfoContext(ctx, "enricher tail started",
		slog.Duration("poll_interval", t.cfg.pollInterval), slog.Duration("overlap", t.cfg.overlap))
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
				slog.Int("quarantined", st.Quarantined), slog.Int("skipped", st.Duplicates))
		}
		timer.Reset(t.cfg.pollInterval)
	}
}

// PollStats counts what one poll did.
type PollStats struct {
	Read        int // rows read in the window
	Enriched    int
	Quarantined int
	Duplicates  int // rows read again and skipped: processed before
}

// cursor is the tail's row in herald_enricher_cursor.
type cursor struct {
	readFrom, highWater nullTime
}

// Poll reads the window once, handles every row not processed yet, then
// moves the window. It returns early with ctx's error when ctx ends.
func (t *Tail) Poll(ctx context.Context) (PollStats, error) {
	var st PollStats
	if err := t.ensureCursor(ctx); err != nil {
		return st, err
	}
	// Before reading: a transaction that is not open now either committed
	// (its rows are visible to the reads below) or starts later than now.
	oldestOpen, err := t.oldestOpenTransaction(ctx)
	if err != nil {
		return st, err
	}
	cur, err := t.readCursor(ctx)
	if err != nil {
		return st, err
	}
	if !oldestOpen.IsZero() && cur.readFrom.valid && oldestOpen.Before(cur.readFrom.t) {
		t.p.log.WarnContext(ctx, "a portal transaction has been open since before the tail's read window; an audit row it writes will be missed",
			slog.Time("transaction_start", oldestOpen), slog.Time("read_from", cur.readFrom.t))
	}

	var after *pageKey
	for {
		page, err := t.readPage(ctx, cur.readFrom, after)
		if err != nil {
			return st, err
		}
		st.Read += len(page)
		if len(page) == 0 {
			break
		}
		done, err := t.processedIDs(ctx, page)
		if err != nil {
			return st, err
		}
		for _, row := range page {
			if done[auditKey(row.rec.ID)] {
				st.Duplicates++
				continue
			}
			if err := ctx.Err(); err != nil {
				return st, err
			}
			res, err := t.p.handle(ctx, t.source, incoming{rec: row.rec, badErr: row.err}, t.advance(row.rec.CreatedOn))
			if err != nil {
				return st, err
			}
			switch res.Status {
			case StatusEnriched:
				st.Enriched++
			case StatusQuarantined:
				st.Quarantined++
			case StatusDuplicate:
				st.Duplicates++
			}
			if t.cfg.observer != nil {
				t.cfg.observer(res)
			}
		}
		if len(page) < t.cfg.batchSize {
			break
		}
		last := page[len(page)-1]
		after = &last.key
	}
	return st, t.moveWindow(ctx, cur, oldestOpen)
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
	row := t.p.db.WithContext(ctx).Raw("SELECT read_from, high_water FROM "+CursorTable+" WHERE name = ?", t.cfg.cursorName).Row()
	if err := row.Scan(&c.readFrom, &c.highWater); err != nil {
		return c, fmt.Errorf("enricher tail: read cursor: %w", err)
	}
	return c, nil
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

// moveWindow sets read_from to high_water minus the overlap, held back to
// the oldest open transaction seen before the poll and never moved
// backwards, then prunes the processed ids before it.
func (t *Tail) moveWindow(ctx context.Context, before cursor, oldestOpen time.Time) error {
	cur, err := t.readCursor(ctx)
	if err != nil {
		return err
	}
	if !cur.highWater.valid {
		return nil
	}
	from := cur.highWater.t.Add(-t.cfg.overlap)
	if !oldestOpen.IsZero() && oldestOpen.Before(from) {
		from = oldestOpen
	}
	if before.readFrom.valid && from.Before(before.readFrom.t) {
		from = before.readFrom.t
	}
	if before.readFrom.valid && from.Equal(before.readFrom.t) {
		return nil
	}
	return t.p.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		v := t.p.encodeTime(from)
		if err := tx.Exec("UPDATE "+CursorTable+" SET read_from = ?, updated_at = ? WHERE name = ?",
			v, t.p.encodeTime(time.Now()), t.cfg.cursorName).Error; err != nil {
			return fmt.Errorf("enricher tail: move window: %w", err)
		}
		if err := tx.Exec("DELETE FROM "+ProcessedTable+" WHERE source = ? AND created_on < ?", t.source, v).Error; err != nil {
			return fmt.Errorf("enricher tail: prune processed ids: %w", err)
		}
		return nil
	})
}

// oldestOpenTransaction is the start of the oldest transaction open in the
// portal's PostgreSQL database other than the tail's own, zero when there is
// none, it cannot be seen, or the portal is not PostgreSQL.
func (t *Tail) oldestOpenTransaction(ctx context.Context) (time.Time, error) {
	if t.auditDia != "postgres" {
		return time.Time{}, nil
	}
	var v nullTime
	err := t.portalDB().WithContext(ctx).Raw(`SELECT min(xact_start) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend' AND xact_start IS NOT NULL`).Row().Scan(&v)
	if err != nil {
		return time.Time{}, fmt.Errorf("enricher tail: read open transactions: %w", err)
	}
	return v.t, nil
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

func (t *Tail) readPage(ctx context.Context, from nullTime, after *pageKey) ([]auditRow, error) {
	k := t.createdOnExpr()
	q := `SELECT id, name, subject_id, subject_type, target_id, target_type, actor_id,
  deleted_subject_identifier, deleted_target_identifier, created_on, ` + k + ` AS k
FROM events WHERE 1 = 1`
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
	rows, err := t.portalDB().WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("enricher tail: read audit table: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err reports what matters
	var page []auditRow
	for rows.Next() {
		var id, name, subjectID, subjectType, targetID, targetType, actorID, delSubject, delTarget sql.NullString
		var createdOn, key any
		if err := rows.Scan(&id, &name, &subjectID, &subjectType, &targetID, &targetType, &actorID,
			&delSubject, &delTarget, &createdOn, &key); err != nil {
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
		if b, ok := key.([]byte); ok {
			r.key.at = string(b)
		}
		if r.rec.CreatedOn, err = decodeTime(createdOn); err != nil {
			r.err = &RecordError{RecordID: id.String, Field: "created_on", Reason: err.Error()}
		}
		page = append(page, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("enricher tail: read audit table: %w", err)
	}
	return page, nil
}

// processedIDs returns which of the page's ids are processed already.
func (t *Tail) processedIDs(ctx context.Context, page []auditRow) (map[string]bool, error) {
	ids := make([]string, 0, len(page))
	for _, r := range page {
		ids = append(ids, auditKey(r.rec.ID))
	}
	var found []string
	err := t.p.db.WithContext(ctx).Raw("SELECT audit_id FROM "+ProcessedTable+" WHERE audit_id IN ?", ids).Scan(&found).Error
	if err != nil {
		return nil, fmt.Errorf("enricher tail: read processed ids: %w", err)
	}
	done := make(map[string]bool, len(found))
	for _, id := range found {
		done[id] = true
	}
	return done, nil
}
