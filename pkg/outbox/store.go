package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Store is the relay's and the operator's side of the outbox: claiming,
// recording outcomes and inspecting rows. Producers only need [Write].
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

// WithOrdering makes claims keep each partition key's events in order:
// only the oldest pending event of a key is ever claimable, so one key never
// has two events in flight, across all relays, and a key whose head is
// waiting to be retried waits with it while other keys flow. Every relay of
// one outbox must use the same setting. Events with an empty partition key
// are never held back.
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

// ForDestination returns a Store whose Claim takes only rows bound for the
// named destination; a relay per destination uses one each. Everything else
// is shared with s: recording outcomes works by seq, and the operator's
// tools select destinations with Filter.Destination.
func (s *Store) ForDestination(name string) *Store {
	c := *s
	c.destination = name
	return &c
}

// Destination is the destination Claim takes rows for.
func (s *Store) Destination() string { return s.destination }

// Claim leases up to limit claimable rows of the store's destination to
// owner until now+lease and returns them in insertion order. A row is
// claimable when it is pending and its available_at (backoff, or a previous
// lease) has passed; with WithOrdering, also only while no earlier row of its
// partition key is pending for the same destination. Each claim counts as an attempt, so a row whose relay keeps dying
// still reaches its attempt limit.
func (s *Store) Claim(ctx context.Context, owner string, limit int, lease time.Duration) ([]Row, error) {
	if owner == "" {
		return nil, errors.New("outbox claim: owner required")
	}
	now := s.now()
	rows, err := s.d.claim(ctx, s.db, claimArgs{owner: owner, destination: s.destination, now: now, until: now.Add(lease), limit: limit, ordered: s.ordered})
	if err != nil {
		return nil, fmt.Errorf("outbox claim: %w", err)
	}
	slices.SortFunc(rows, func(a, b Row) int { return cmp.Compare(a.Seq, b.Seq) })
	return rows, nil
}

// Outcome is what became of one claimed row.
type Outcome struct {
	Seq int64
	// Err is nil when the broker accepted the event.
	Err error
	// Dead gives up on the row: it is kept as dead with Err as its reason.
	Dead bool
	// RetryAt is when a failed, not dead, row may be claimed again.
	RetryAt time.Time
}

// Complete records the outcomes of rows owner claimed, in one transaction.
// A row whose lease owner changed meanwhile (its lease expired and another
// relay took it) is left alone; Complete reports how many were.
func (s *Store) Complete(ctx context.Context, owner string, outcomes []Outcome) (leaseLost int, err error) {
	if len(outcomes) == 0 {
		return 0, nil
	}
	now := s.d.encodeTime(s.now())
	var delivered []any
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		leaseLost = 0
		for _, o := range outcomes {
			if o.Err == nil {
				delivered = append(delivered, o.Seq)
				continue
			}
			var res *gorm.DB
			if o.Dead {
				res = tx.Exec(`UPDATE herald_outbox SET state = 'dead', last_error = ?, lease_owner = NULL, lease_expires_at = NULL
WHERE seq = ? AND lease_owner = ?`, o.Err.Error(), o.Seq, owner)
			} else {
				res = tx.Exec(`UPDATE herald_outbox SET last_error = ?, available_at = ?, lease_owner = NULL, lease_expires_at = NULL
WHERE seq = ? AND lease_owner = ?`, o.Err.Error(), s.d.encodeTime(o.RetryAt), o.Seq, owner)
			}
			if res.Error != nil {
				return fmt.Errorf("record failure of row %d: %w", o.Seq, res.Error)
			}
			leaseLost += 1 - int(res.RowsAffected)
		}
		if len(delivered) == 0 {
			return nil
		}
		in := placeholders(len(delivered))
		var res *gorm.DB
		if s.keepDelivered {
			res = tx.Exec(`UPDATE herald_outbox SET state = 'delivered', delivered_at = ?, last_error = NULL, lease_owner = NULL, lease_expires_at = NULL
WHERE lease_owner = ? AND seq IN (`+in+`)`, append([]any{now, owner}, delivered...)...)
		} else {
			res = tx.Exec(`DELETE FROM herald_outbox WHERE lease_owner = ? AND seq IN (`+in+`)`, append([]any{owner}, delivered...)...)
		}
		if res.Error != nil {
			return fmt.Errorf("record %d delivered: %w", len(delivered), res.Error)
		}
		leaseLost += len(delivered) - int(res.RowsAffected)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("outbox complete: %w", err)
	}
	return leaseLost, nil
}

// Release hands rows owner claimed but never published back at once, and
// takes back the attempt their claim counted. A relay calls it when it shuts
// down between claiming and publishing.
func (s *Store) Release(ctx context.Context, owner string, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	args := []any{s.d.encodeTime(s.now()), owner}
	for _, seq := range seqs {
		args = append(args, seq)
	}
	err := s.db.WithContext(ctx).Exec(`UPDATE herald_outbox
SET available_at = ?, attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL
WHERE lease_owner = ? AND seq IN (`+placeholders(len(seqs))+`)`, args...).Error
	if err != nil {
		return fmt.Errorf("outbox release: %w", err)
	}
	return nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

const rowColumns = `seq, destination, event_id, event_type, partition_key, payload, state, attempts, available_at,
lease_owner, lease_expires_at, last_error, created_at, delivered_at`

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
			r                                 Row
			state                             string
			owner, lastErr                    sql.NullString
			avail, lease, created, deliveredT any
		)
		if err := rows.Scan(&r.Seq, &r.Destination, &r.EventID, &r.EventType, &r.PartitionKey, &r.Payload, &state, &r.Attempts,
			&avail, &owner, &lease, &lastErr, &created, &deliveredT); err != nil {
			return nil, fmt.Errorf("outbox list: scan: %w", err)
		}
		r.State, r.LeaseOwner, r.LastError = State(state), owner.String, lastErr.String
		for _, tc := range []struct {
			dst *time.Time
			src any
		}{{&r.AvailableAt, avail}, {&r.LeaseExpiresAt, lease}, {&r.CreatedAt, created}, {&r.DeliveredAt, deliveredT}} {
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
	InFlight  int // pending rows currently leased by a relay
	Dead      int
	Delivered int // only with WithKeepDelivered
	// OldestPending is the creation time of the oldest pending row, zero when none.
	OldestPending time.Time
}

// Stats counts the rows of every destination by state.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	rows, err := s.db.WithContext(ctx).Raw(`SELECT state, COUNT(*), MIN(created_at),
  COUNT(CASE WHEN lease_owner IS NOT NULL AND available_at > ? THEN 1 END)
FROM herald_outbox GROUP BY state`, s.d.encodeTime(s.now())).Rows()
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
