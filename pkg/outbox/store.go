package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Store is the relay's and the operator's side of the outbox: leasing
// buckets, reading and recording rows, inspecting them. Writers only need
// [Write].
type Store struct {
	db            *gorm.DB
	d             dialect
	destination   string
	keepDelivered bool
	ordered       bool
	now           func() time.Time
}

// StoreOption configures a Store.
type StoreOption func(*Store)

// WithKeepDelivered keeps delivered rows (state delivered, delivered_at set)
// instead of deleting them, for audit or replay. Something must then prune
// them.
func WithKeepDelivered(keep bool) StoreOption { return func(s *Store) { s.keepDelivered = keep } }

// WithOrdering makes relays keep each partition key's events in order: a
// key whose event failed is held back until that event has gone out or
// become a dead letter, while other keys flow. (One relay reads a key's
// bucket at a time either way.) Every relay of one outbox must use the same
// setting. Events with an empty partition key are never held back.
func WithOrdering(on bool) StoreOption { return func(s *Store) { s.ordered = on } }

// WithClock replaces time.Now; tests use it to step over leases and backoff.
func WithClock(now func() time.Time) StoreOption { return func(s *Store) { s.now = now } }

// NewStore returns a Store over db, whose dialect must be supported.
func NewStore(db *gorm.DB, opts ...StoreOption) (*Store, error) {
	d, err := dialectOf(db)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, d: d, destination: MainDestination, now: time.Now}
	for _, opt := range opts {
		opt(s)
	}
	return s, nil
}

// ForDestination returns a Store whose relay side (Lease, Read, Record)
// works on the rows bound for the named destination; a relay per
// destination uses one each. Everything else
// is shared with s: recording outcomes works by seq, and the operator's
// tools select destinations with Filter.Destination.
func (s *Store) ForDestination(name string) *Store {
	c := *s
	c.destination = name
	return &c
}

// Destination is the destination the store's relay side works on.
func (s *Store) Destination() string { return s.destination }

// Outcome is what became of one row a relay read (see Store.Record).
type Outcome struct {
	Seq int64
	// Err is nil when the broker accepted the event.
	Err error
	// Dead gives up on the row: it is kept as dead with Err as its reason.
	Dead bool
	// RetryAt is when a failed, not dead, row may be tried again.
	RetryAt time.Time
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

const rowColumns = `seq, destination, event_id, event_type, partition_key, payload, state, attempts, available_at,
last_error, created_at, delivered_at`

// Get returns the row of one event for the store's destination, or
// ErrNotFound.
func (s *Store) Get(ctx context.Context, eventID string) (Row, error) {
	rows, err := s.list(ctx, `WHERE event_id = ? AND destination = ?`, eventID, s.destination)
	if err != nil {
		return Row{}, err
	}
	if len(rows) == 0 {
		return Row{}, fmt.Errorf("%w: %s", ErrNotFound, eventID)
	}
	return rows[0], nil
}

// List returns up to limit rows of every destination in the given state,
// oldest first.
func (s *Store) List(ctx context.Context, state State, limit int) ([]Row, error) {
	return s.list(ctx, `WHERE state = ? ORDER BY seq LIMIT ?`, string(state), limit)
}

func (s *Store) list(ctx context.Context, where string, args ...any) ([]Row, error) {
	rows, err := s.db.WithContext(ctx).Raw(`SELECT `+rowColumns+` FROM herald_outbox `+where, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("outbox list: %w", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var (
			r                          Row
			state                      string
			lastErr                    sql.NullString
			avail, created, deliveredT any
		)
		if err := rows.Scan(&r.Seq, &r.Destination, &r.EventID, &r.EventType, &r.PartitionKey, &r.Payload, &state, &r.Attempts,
			&avail, &lastErr, &created, &deliveredT); err != nil {
			return nil, fmt.Errorf("outbox list: scan: %w", err)
		}
		r.State, r.LastError = State(state), lastErr.String
		for _, tc := range []struct {
			dst *time.Time
			src any
		}{{&r.AvailableAt, avail}, {&r.CreatedAt, created}, {&r.DeliveredAt, deliveredT}} {
			if *tc.dst, err = decodeTime(tc.src); err != nil {
				return nil, fmt.Errorf("outbox list: row %d: %w", r.Seq, err)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox list: %w", err)
	}
	return out, nil
}

// Stats is a snapshot of the outbox.
type Stats struct {
	Pending   int // waiting, including in backoff
	InFlight  int // pending rows a running relay has taken on: their bucket is leased
	Dead      int
	Delivered int // only with WithKeepDelivered
	// OldestPending is the creation time of the oldest pending row, zero when none.
	OldestPending time.Time
}

// Stats counts the rows of every destination by state.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	rows, err := s.db.WithContext(ctx).Raw(`SELECT o.state, COUNT(*), MIN(o.created_at), COUNT(b.owner)
FROM herald_outbox o LEFT JOIN herald_outbox_buckets b
  ON b.destination = o.destination AND b.bucket = o.bucket AND b.owner IS NOT NULL AND b.expires_at > ?
GROUP BY o.state`, s.d.encodeTime(s.now())).Rows()
	if err != nil {
		return st, fmt.Errorf("outbox stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			state        string
			n, leased    int
			oldestCreate any
		)
		if err := rows.Scan(&state, &n, &oldestCreate, &leased); err != nil {
			return st, fmt.Errorf("outbox stats: scan: %w", err)
		}
		switch State(state) {
		case StatePending:
			st.Pending, st.InFlight = n, leased
			if st.OldestPending, err = decodeTime(oldestCreate); err != nil {
				return st, fmt.Errorf("outbox stats: %w", err)
			}
		case StateDead:
			st.Dead = n
		case StateDelivered:
			st.Delivered = n
		}
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("outbox stats: %w", err)
	}
	return st, nil
}
