package outbox

// The delivery log (docs/outbox.md, "Delivery log"): a row per attempt a
// relay made to deliver an event to a destination, inserted by Record in the
// transaction that stores the attempts' outcomes, read back newest first and
// pruned by age.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
)

// AttemptsTable is the delivery log's table.
const AttemptsTable = "herald_delivery_attempts"

// MaxAnswerBytes bounds Attempt.Answer: enough for a broker's error or the
// start of a receiver's response, little enough that a week of attempts
// stays small and a receiver cannot make Herald store what it likes.
const MaxAnswerBytes = 512

// AttemptOutcome is what one delivery attempt came to.
type AttemptOutcome string

const (
	// AttemptDelivered: the destination accepted the event.
	AttemptDelivered AttemptOutcome = "delivered"
	// AttemptFailed: the event failed and will be tried again.
	AttemptFailed AttemptOutcome = "failed"
	// AttemptDead: the event was given up on and is a dead letter now.
	AttemptDead AttemptOutcome = "dead"
	// AttemptUnavailable: the destination was down as a whole. The relay
	// paused it, and the attempt did not count against the event.
	AttemptUnavailable AttemptOutcome = "unavailable"
)

// Attempt is one row of the delivery log.
type Attempt struct {
	// ID orders the log: a later attempt has a greater ID. Record assigns
	// it; what is passed to Record is ignored.
	ID          int64
	At          time.Time
	Destination string
	EventID     string
	EventType   string
	// Number is the event's attempt number: its recorded attempts + 1 at
	// the time. An unavailable attempt does not count, so the attempt after
	// it carries the same number.
	Number  int
	Outcome AttemptOutcome
	// Status is the HTTP status a webhook receiver answered, 0 for a
	// broker or when no response came.
	Status int
	// Answer is the broker's error or the receiver's answer, "" when the
	// event was delivered without one. The caller redacts it; Record keeps
	// at most MaxAnswerBytes of it, cut on a UTF-8 boundary.
	Answer string
	// Latency is how long the publish that carried the attempt took, from
	// the call to its result: per batch, since adapters report per batch.
	Latency time.Duration
}

// AttemptFilter selects what Attempts returns.
type AttemptFilter struct {
	EventID     string
	Destination string
	// FailedOnly leaves out delivered attempts.
	FailedOnly bool
	// Since leaves out attempts made before it; zero: no bound.
	Since time.Time
	// Before returns only attempts with a smaller ID: the last ID of the
	// previous page, for paging back in time. 0: from the newest.
	Before int64
	// Limit bounds the rows returned; 0 means DefaultAttemptsLimit.
	Limit int
}

// DefaultAttemptsLimit is Attempts' page size when the filter gives none;
// MaxAttemptsLimit is the largest it accepts.
const (
	DefaultAttemptsLimit = 100
	MaxAttemptsLimit     = 10000
)

// attemptChunk bounds the rows per INSERT: 10 parameters each keeps a
// statement far below every driver's limit on bound parameters.
const attemptChunk = 500

// insertAttempts adds attempts to the log inside tx, one multi-row INSERT
// per chunk.
func (s *Store) insertAttempts(tx *gorm.DB, attempts []Attempt) error {
	const cols = 9
	for start := 0; start < len(attempts); start += attemptChunk {
		chunk := attempts[start:min(start+attemptChunk, len(attempts))]
		args := make([]any, 0, len(chunk)*cols)
		for _, a := range chunk {
			var status any // NULL: no HTTP status
			if a.Status != 0 {
				status = a.Status
			}
			args = append(args, s.d.encodeTime(a.At), a.Destination, a.EventID, a.EventType, a.Number, string(a.Outcome),
				status, BoundAnswer(a.Answer), a.Latency.Microseconds())
		}
		q := `INSERT INTO ` + AttemptsTable + ` (attempted_at, destination, event_id, event_type, attempt, outcome, status, answer, latency_us) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?, ?), ", len(chunk)), ", ")
		if err := tx.Exec(q, args...).Error; err != nil {
			return fmt.Errorf("log %d attempts: %w", len(chunk), err)
		}
	}
	return nil
}

// BoundAnswer makes text fit the answer column: valid UTF-8 (PostgreSQL
// and MySQL refuse anything else, and a receiver may answer with any
// bytes) and at most MaxAnswerBytes, cut on a rune boundary.
func BoundAnswer(text string) string {
	text = strings.ToValidUTF8(text, "\uFFFD")
	if len(text) <= MaxAnswerBytes {
		return text
	}
	cut := MaxAnswerBytes
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut]
}

// Attempts returns the delivery log's rows matching f, newest first.
func (s *Store) Attempts(ctx context.Context, f AttemptFilter) ([]Attempt, error) {
	limit := f.Limit
	switch {
	case limit == 0:
		limit = DefaultAttemptsLimit
	case limit < 0 || limit > MaxAttemptsLimit:
		return nil, fmt.Errorf("%w: limit must be between 1 and %d (got %d)", ErrInvalidFilter, MaxAttemptsLimit, f.Limit)
	}
	var c conds
	if f.EventID != "" {
		c = c.and(`event_id = ?`, f.EventID)
	}
	if f.Destination != "" {
		c = c.and(`destination = ?`, f.Destination)
	}
	if f.FailedOnly {
		c = c.and(`outcome <> 'delivered'`)
	}
	if f.Before > 0 {
		c = c.and(`id < ?`, f.Before)
	}
	if !f.Since.IsZero() {
		// A time bound alone would make the database read every row of
		// the destination older than it, since attempted_at has no index:
		// the first id at or after Since bounds the scan instead.
		floor, err := s.attemptIDAt(ctx, f.Since)
		if err != nil {
			return nil, fmt.Errorf("outbox attempts: %w", err)
		}
		c = c.and(`id >= ?`, floor).and(`attempted_at >= ?`, s.d.encodeTime(f.Since))
	}
	q := `SELECT id, attempted_at, destination, event_id, event_type, attempt, outcome, status, answer, latency_us
FROM ` + AttemptsTable + c.where() + ` ORDER BY id DESC LIMIT ?`
	rows, err := s.db.WithContext(ctx).Raw(q, append(c.args, limit)...).Rows()
	if err != nil {
		return nil, fmt.Errorf("outbox attempts: %w", err)
	}
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		var (
			a       Attempt
			at      any
			outcome string
			status  sql.NullInt64
			micros  int64
		)
		if err := rows.Scan(&a.ID, &at, &a.Destination, &a.EventID, &a.EventType, &a.Number, &outcome, &status, &a.Answer, &micros); err != nil {
			return nil, fmt.Errorf("outbox attempts: scan: %w", err)
		}
		if a.At, err = decodeTime(at); err != nil {
			return nil, fmt.Errorf("outbox attempts: attempt %d: %w", a.ID, err)
		}
		a.Outcome, a.Status, a.Latency = AttemptOutcome(outcome), int(status.Int64), time.Duration(micros)*time.Microsecond
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox attempts: %w", err)
	}
	return out, nil
}

// attemptIDAt returns the first id whose attempt was made at or after t,
// by a binary search over the primary key: a few dozen index lookups
// however long the log, where finding it by attempted_at would read the
// table. Relays in several processes commit a little out of order, so the
// id is close, not exact; one past the last id when every attempt is older.
func (s *Store) attemptIDAt(ctx context.Context, t time.Time) (int64, error) {
	db := s.db.WithContext(ctx)
	var lo, hi sql.NullInt64
	if err := db.Raw(`SELECT MIN(id), MAX(id) FROM `+AttemptsTable).Row().Scan(&lo, &hi); err != nil {
		return 0, fmt.Errorf("read id range: %w", err)
	}
	if !lo.Valid {
		return 0, nil
	}
	low, high := lo.Int64, hi.Int64+1 // the answer is in [low, high]
	for low < high {
		mid := low + (high-low)/2
		// Ids have gaps (rolled back inserts, pruning): look at the first
		// row at or after mid.
		var (
			id int64
			at any
		)
		err := db.Raw(`SELECT id, attempted_at FROM `+AttemptsTable+` WHERE id >= ? ORDER BY id LIMIT 1`, mid).Row().Scan(&id, &at)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("find the first attempt since %s: %w", t.UTC().Format(time.RFC3339), err)
		}
		if err != nil {
			high = mid // pruned meanwhile
			continue
		}
		when, err := decodeTime(at)
		if err != nil {
			return 0, err
		}
		if when.Before(t) {
			low = id + 1
		} else {
			high = mid
		}
	}
	return low, nil
}

// PruneAttempts deletes the attempts made before olderThan, oldest first, at
// most batch (default DefaultBatchSize) per statement, and returns how many
// it deleted. Each batch reads the batch oldest rows by primary key and
// deletes the run of them that is old enough, so no batch reads more than
// batch rows, whatever the log holds; a row out of order (a relay's commit
// a little late) waits for the next prune. Several relays may prune at once:
// a batch deletes by id range, which is idempotent.
func (s *Store) PruneAttempts(ctx context.Context, olderThan time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultBatchSize
	}
	db := s.db.WithContext(ctx)
	var total int64
	for {
		rows, err := db.Raw(`SELECT id, attempted_at FROM `+AttemptsTable+` ORDER BY id LIMIT ?`, batch).Rows()
		if err != nil {
			return total, fmt.Errorf("outbox prune attempts: %w", err)
		}
		var last int64
		n, full := 0, true
		for rows.Next() {
			var (
				id int64
				at any
			)
			if err := rows.Scan(&id, &at); err != nil {
				_ = rows.Close()
				return total, fmt.Errorf("outbox prune attempts: scan: %w", err)
			}
			t, err := decodeTime(at)
			if err != nil {
				_ = rows.Close()
				return total, fmt.Errorf("outbox prune attempts: attempt %d: %w", id, err)
			}
			if !t.Before(olderThan) {
				full = false
				break
			}
			last, n = id, n+1
		}
		err = rows.Err()
		_ = rows.Close()
		if err != nil {
			return total, fmt.Errorf("outbox prune attempts: %w", err)
		}
		if n == 0 {
			return total, nil
		}
		// attempted_at again: a row whose id was taken before the read but
		// that committed after it is not old.
		res := db.Exec(`DELETE FROM `+AttemptsTable+` WHERE id <= ? AND attempted_at < ?`, last, s.d.encodeTime(olderThan))
		if res.Error != nil {
			return total, fmt.Errorf("outbox prune attempts: delete: %w", res.Error)
		}
		total += res.RowsAffected
		if !full || n < batch {
			return total, nil
		}
	}
}
