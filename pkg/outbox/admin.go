package outbox

// The operator's tools: see what the outbox holds per event type, list rows,
// replay dead letters and purge what is finished. They run against the live
// table while relays work, so every change is made in batches, each one
// short statement of its own: a purge of millions of rows never holds locks
// long enough to stall a relay's read and delete or a producer's INSERT.
//
// Batches select their seqs first and then UPDATE or DELETE by seq, rather
// than in one statement with a LIMIT subquery, because MySQL forbids LIMIT
// inside an IN subquery. The UPDATE or DELETE repeats the whole condition, so
// a row that changed between the two statements (a relay delivered it, an
// operator retried it) is left alone.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrInvalidFilter is returned for a filter an operation refuses, such as a
// purge of pending rows; the message names the field.
var ErrInvalidFilter = errors.New("invalid filter")

// DefaultBatchSize is how many rows Retry and Purge change per statement
// unless the filter says otherwise.
const DefaultBatchSize = 500

// MaxFilterIDs bounds Filter.IDs, keeping every statement well below each
// driver's limit on bound parameters.
const MaxFilterIDs = 1000

// TypeStats counts one event type's rows for one destination by state.
type TypeStats struct {
	Destination string
	Type        string
	// Pending counts every pending row: waiting, in backoff or in flight.
	Pending int
	// InFlight counts pending rows a running relay has taken on: their
	// bucket is leased.
	InFlight  int
	Dead      int
	Delivered int // only with WithKeepDelivered
	// OldestPending is the creation time of the type's oldest pending row,
	// zero when it has none: how far behind delivery of this type is.
	OldestPending time.Time
}

// Add counts o's rows in t, keeping the older of the oldest pending: the
// totals of several types or destinations.
func (t *TypeStats) Add(o TypeStats) {
	t.Pending += o.Pending
	t.InFlight += o.InFlight
	t.Dead += o.Dead
	t.Delivered += o.Delivered
	if !o.OldestPending.IsZero() && (t.OldestPending.IsZero() || o.OldestPending.Before(t.OldestPending)) {
		t.OldestPending = o.OldestPending
	}
}

// TypeStats counts rows per destination, event type and state, ordered by
// destination and type.
func (s *Store) TypeStats(ctx context.Context) ([]TypeStats, error) {
	rows, err := s.db.WithContext(ctx).Raw(`SELECT o.destination, o.event_type, o.state, COUNT(*), MIN(o.created_at), COUNT(b.owner)
FROM herald_outbox o LEFT JOIN herald_outbox_buckets b
  ON b.destination = o.destination AND b.bucket = o.bucket AND b.owner IS NOT NULL AND b.expires_at > ?
GROUP BY o.destination, o.event_type, o.state`, s.d.encodeTime(s.now())).Rows()
	if err != nil {
		return nil, fmt.Errorf("outbox type stats: %w", err)
	}
	defer rows.Close()
	type key struct{ dest, typ string }
	byType := map[key]*TypeStats{}
	for rows.Next() {
		var (
			dest, typ, state string
			n, leased        int
			oldest           any
		)
		if err := rows.Scan(&dest, &typ, &state, &n, &oldest, &leased); err != nil {
			return nil, fmt.Errorf("outbox type stats: scan: %w", err)
		}
		ts := byType[key{dest, typ}]
		if ts == nil {
			ts = &TypeStats{Destination: dest, Type: typ}
			byType[key{dest, typ}] = ts
		}
		switch State(state) {
		case StatePending:
			ts.Pending, ts.InFlight = n, leased
			if ts.OldestPending, err = decodeTime(oldest); err != nil {
				return nil, fmt.Errorf("outbox type stats: %s: %w", typ, err)
			}
		case StateDead:
			ts.Dead = n
		case StateDelivered:
			ts.Delivered = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox type stats: %w", err)
	}
	out := make([]TypeStats, 0, len(byType))
	for _, ts := range byType {
		out = append(out, *ts)
	}
	// Sorted here, not in SQL, so the order is the same under every
	// database's collation.
	slices.SortFunc(out, func(a, b TypeStats) int {
		return cmp.Or(strings.Compare(a.Destination, b.Destination), strings.Compare(a.Type, b.Type))
	})
	return out, nil
}

// Filter selects rows for ListRows, Count and Retry. Its zero value selects
// every row.
type Filter struct {
	State       State    // "" for every state
	Destination string   // "" for every destination
	Type        string   // an exact event type; "" for every type
	IDs         []string // event ids; empty for any id. At most MaxFilterIDs.
	// ErrorContains keeps only rows whose last error contains this text,
	// compared case-insensitively; "" for any error or none.
	ErrorContains string
	// AfterSeq keeps only rows after this seq. To page, pass the last Seq of
	// one page to get the next.
	AfterSeq int64
	// Limit caps the rows returned or changed; 0 means no cap.
	Limit int
	// BatchSize is Retry's rows per statement; 0 means DefaultBatchSize.
	BatchSize int
}

// conds is a WHERE clause under construction: conditions joined by AND,
// with their arguments in order.
type conds struct {
	sql  []string
	args []any
}

// and returns c with one more condition; c itself is unchanged, so a base
// clause can be extended differently by each statement of a batch.
func (c conds) and(cond string, args ...any) conds {
	return conds{sql: append(slices.Clip(c.sql), cond), args: append(slices.Clip(c.args), args...)}
}

func (c conds) where() string {
	if len(c.sql) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(c.sql, " AND ")
}

// conds turns the filter into conditions, all but AfterSeq, which batches
// advance themselves.
func (f Filter) conds() (conds, error) {
	var c conds
	switch f.State {
	case "":
	case StatePending, StateDelivered, StateDead:
		c = c.and("state = ?", string(f.State))
	default:
		return c, fmt.Errorf("%w: state %q is none of %s, %s, %s", ErrInvalidFilter, f.State, StatePending, StateDelivered, StateDead)
	}
	if f.Destination != "" {
		c = c.and("destination = ?", f.Destination)
	}
	if f.Type != "" {
		c = c.and("event_type = ?", f.Type)
	}
	if f.ErrorContains != "" {
		// '!' escapes LIKE's wildcards: backslash would need quoting that
		// differs between PostgreSQL's and MySQL's string literals.
		pattern := strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(strings.ToLower(f.ErrorContains))
		c = c.and("LOWER(last_error) LIKE ? ESCAPE '!'", "%"+pattern+"%")
	}
	if len(f.IDs) > MaxFilterIDs {
		return c, fmt.Errorf("%w: %d ids, at most %d per call", ErrInvalidFilter, len(f.IDs), MaxFilterIDs)
	}
	if len(f.IDs) > 0 {
		ids := make([]any, len(f.IDs))
		for i, id := range f.IDs {
			ids[i] = id
		}
		c = c.and("event_id IN ("+placeholders(len(ids))+")", ids...)
	}
	if f.Limit < 0 || f.BatchSize < 0 || f.AfterSeq < 0 {
		return c, fmt.Errorf("%w: limit, batch size and after-seq must not be negative", ErrInvalidFilter)
	}
	return c, nil
}

// ListRows returns the rows matching f, oldest first.
func (s *Store) ListRows(ctx context.Context, f Filter) ([]Row, error) {
	c, err := f.conds()
	if err != nil {
		return nil, fmt.Errorf("outbox list: %w", err)
	}
	c = c.and("seq > ?", f.AfterSeq)
	q := c.where() + " ORDER BY seq"
	if f.Limit > 0 {
		q += " LIMIT ?"
		c.args = append(c.args, f.Limit)
	}
	return s.list(ctx, q, c.args...)
}

// Count returns how many rows ListRows would return for f: what a progress
// bar or a dry run needs before Retry.
func (s *Store) Count(ctx context.Context, f Filter) (int, error) {
	c, err := f.conds()
	if err != nil {
		return 0, fmt.Errorf("outbox count: %w", err)
	}
	n, err := s.count(ctx, c.and("seq > ?", f.AfterSeq))
	if err != nil {
		return 0, fmt.Errorf("outbox count: %w", err)
	}
	if f.Limit > 0 {
		n = min(n, f.Limit)
	}
	return n, nil
}

// Retry gives dead rows matching f another life: they become pending with
// attempts 0, available at once, so the relay holding their bucket takes
// them on its next pass. last_error is kept: it is the row's history, and the next outcome
// overwrites it anyway. f.State must be empty or dead; pending and delivered
// rows are never touched, so retrying everything while relays run is safe.
//
// A retried row keeps its seq, so with WithOrdering it becomes the head of
// its partition key again and newer events of that key wait until it is
// delivered or dead once more.
//
// Rows change in batches of f.BatchSize, each its own statement; progress,
// if not nil, is called after each batch with the number retried so far. On
// error Retry returns how many it retried before it.
func (s *Store) Retry(ctx context.Context, f Filter, progress func(done int)) (int, error) {
	if f.State != "" && f.State != StateDead {
		return 0, fmt.Errorf("outbox retry: %w: state %q: only dead rows can be retried", ErrInvalidFilter, f.State)
	}
	f.State = StateDead
	c, err := f.conds()
	if err != nil {
		return 0, fmt.Errorf("outbox retry: %w", err)
	}
	n, err := s.inBatches(ctx, c, f.AfterSeq, f.Limit, f.BatchSize, progress, func(match conds) (int64, error) {
		res := s.db.WithContext(ctx).Exec(`UPDATE herald_outbox
SET state = 'pending', attempts = 0, available_at = ?`+match.where(),
			append([]any{s.d.encodeTime(s.now())}, match.args...)...)
		return res.RowsAffected, res.Error
	})
	if err != nil {
		return n, fmt.Errorf("outbox retry: %w", err)
	}
	return n, nil
}

// PurgeFilter selects finished rows for Purge.
type PurgeFilter struct {
	// State is StateDead or StateDelivered. Pending rows are never purged:
	// they are events the business committed and no broker has seen.
	State       State
	Destination string // "" for every destination
	Type        string // an exact event type; "" for every type
	// OlderThan, when set, keeps rows that finished at or after it: delivered
	// rows by delivered_at; dead rows by when they died (available_at,
	// which the relay sets to that moment), so a dead letter is not purged before anyone had a chance
	// to look at it however old its event is.
	OlderThan time.Time
	// BatchSize is the rows deleted per statement; 0 means DefaultBatchSize.
	BatchSize int
}

func (f PurgeFilter) conds() (conds, error) {
	var c conds
	switch f.State {
	case StateDelivered:
		c = c.and("state = 'delivered'")
		if !f.OlderThan.IsZero() {
			c = c.and("delivered_at < ?", f.OlderThan)
		}
	case StateDead:
		c = c.and("state = 'dead'")
		if !f.OlderThan.IsZero() {
			c = c.and("available_at < ?", f.OlderThan)
		}
	case StatePending:
		return c, fmt.Errorf("%w: state %q: pending rows are undelivered events and cannot be purged", ErrInvalidFilter, f.State)
	default:
		return c, fmt.Errorf("%w: state %q: purge needs %s or %s", ErrInvalidFilter, f.State, StateDead, StateDelivered)
	}
	if f.Destination != "" {
		c = c.and("destination = ?", f.Destination)
	}
	if f.Type != "" {
		c = c.and("event_type = ?", f.Type)
	}
	if f.BatchSize < 0 {
		return c, fmt.Errorf("%w: batch size must not be negative", ErrInvalidFilter)
	}
	return c, nil
}

// encodeTimes puts the filter's time arguments in the dialect's column form.
func (s *Store) encodeTimes(c conds) conds {
	args := slices.Clone(c.args)
	for i, a := range args {
		if t, ok := a.(time.Time); ok {
			args[i] = s.d.encodeTime(t)
		}
	}
	return conds{sql: c.sql, args: args}
}

// PurgeCount returns how many rows Purge would delete now, for dry runs and
// progress bars.
func (s *Store) PurgeCount(ctx context.Context, f PurgeFilter) (int, error) {
	c, err := f.conds()
	if err != nil {
		return 0, fmt.Errorf("outbox purge: %w", err)
	}
	n, err := s.count(ctx, s.encodeTimes(c))
	if err != nil {
		return 0, fmt.Errorf("outbox purge: count: %w", err)
	}
	return n, nil
}

// Purge deletes dead or delivered rows matching f, in batches of f.BatchSize,
// each its own statement; progress, if not nil, is called after each batch
// with the number deleted so far. On error Purge returns how many it deleted
// before it.
func (s *Store) Purge(ctx context.Context, f PurgeFilter, progress func(done int)) (int, error) {
	c, err := f.conds()
	if err != nil {
		return 0, fmt.Errorf("outbox purge: %w", err)
	}
	n, err := s.inBatches(ctx, s.encodeTimes(c), 0, 0, f.BatchSize, progress, func(match conds) (int64, error) {
		res := s.db.WithContext(ctx).Exec(`DELETE FROM herald_outbox`+match.where(), match.args...)
		return res.RowsAffected, res.Error
	})
	if err != nil {
		return n, fmt.Errorf("outbox purge: %w", err)
	}
	return n, nil
}

func (s *Store) count(ctx context.Context, c conds) (int, error) {
	var n int64
	if err := s.db.WithContext(ctx).Raw(`SELECT COUNT(*) FROM herald_outbox`+c.where(), c.args...).Scan(&n).Error; err != nil {
		return 0, err
	}
	return int(n), nil
}

// inBatches walks the rows matching c in seq order, after seq `after`, at
// most limit of them (0: all), batch seqs at a time, and calls change with
// c narrowed to each batch's seqs. The walk moves past every seq it has
// seen, so a row change skips (one that no longer matches) is not selected
// again and the walk always ends.
func (s *Store) inBatches(ctx context.Context, c conds, after int64, limit, batch int, progress func(int),
	change func(match conds) (int64, error)) (int, error) {
	batch = cmp.Or(batch, DefaultBatchSize)
	done := 0
	for limit <= 0 || done < limit {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		n := batch
		if limit > 0 {
			n = min(n, limit-done)
		}
		seqs, err := s.nextSeqs(ctx, c.and("seq > ?", after), n)
		if err != nil {
			return done, fmt.Errorf("select batch after seq %d: %w", after, err)
		}
		if len(seqs) == 0 {
			break
		}
		changed, err := change(c.and("seq IN ("+placeholders(len(seqs))+")", seqs...))
		if err != nil {
			return done, fmt.Errorf("batch of %d rows after seq %d: %w", len(seqs), after, err)
		}
		after = seqs[len(seqs)-1].(int64)
		done += int(changed)
		if progress != nil {
			progress(done)
		}
	}
	return done, nil
}

// nextSeqs returns up to n seqs of rows matching c, lowest first, as
// arguments ready for an IN list.
func (s *Store) nextSeqs(ctx context.Context, c conds, n int) ([]any, error) {
	rows, err := s.db.WithContext(ctx).Raw(`SELECT seq FROM herald_outbox`+c.where()+` ORDER BY seq LIMIT ?`,
		append(slices.Clip(c.args), n)...).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var seqs []any
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return nil, err
		}
		seqs = append(seqs, seq)
	}
	return seqs, rows.Err()
}

// RecentErrors returns up to limit undelivered rows that carry an error
// (waiting for a retry, or dead), newest first: what an operator looks at
// first when something is wrong.
func (s *Store) RecentErrors(ctx context.Context, limit int) ([]Row, error) {
	rows, err := s.list(ctx, `WHERE last_error IS NOT NULL AND state <> 'delivered' ORDER BY seq DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("outbox recent errors: %w", err)
	}
	return rows, nil
}
