package outbox

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
)

// MainDestination names the destination every event goes to: the adapter a
// relay publishes through unless it is given another destination. Rows
// written without a destination, e.g. by plain SQL, belong to it.
const MainDestination = "main"

// Router decides where, besides the main destination, an event goes. The
// relay of the main destination asks it for every event it fans out
// ([Store.Route]), so it must answer from memory.
type Router interface {
	// Destinations returns the extra destinations of an event type; an
	// answer of MainDestination, or a repeated one, is ignored.
	Destinations(eventType string) []string
	// Empty reports that no event goes anywhere but main right now: the
	// relay then skips fanning out, and an event costs one write.
	Empty() bool
}

// Route sends the events whose type matches one of Types to Destination.
type Route struct {
	Destination string
	// Types are globs over the CloudEvents type in path.Match syntax,
	// where * also matches dots: "io.herald.portal.input_port.*". Empty
	// matches every type.
	Types []string
}

// Routes is a static route table. An event goes to every destination whose
// route matches its type, once even if several routes of one destination
// match.
type Routes []Route

// Validate reports the first invalid route: a bad destination name, the
// main destination, or a malformed glob.
func (rs Routes) Validate() error {
	for i, r := range rs {
		if err := ValidateDestination(r.Destination); err != nil {
			return fmt.Errorf("route %d: %w", i, err)
		}
		if r.Destination == MainDestination {
			return fmt.Errorf("route %d: destination %q receives every event already", i, MainDestination)
		}
		if err := event.ValidateTypeGlobs(r.Types); err != nil {
			return fmt.Errorf("route %d (%s): %w", i, r.Destination, err)
		}
	}
	return nil
}

// Empty implements Router.
func (rs Routes) Empty() bool { return len(rs) == 0 }

// Destinations implements Router.
func (rs Routes) Destinations(eventType string) []string {
	var out []string
	for _, r := range rs {
		if event.MatchType(r.Types, eventType) && !slices.Contains(out, r.Destination) {
			out = append(out, r.Destination)
		}
	}
	return out
}

// A destination name goes into metric labels, log lines and the CLI, and
// fits the column on every dialect.
var destinationName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]{0,127}$`)

// ValidateDestination reports whether name can name a destination: 1 to 128
// lower-case letters, digits, '_', '.', ':' or '-', starting with a letter
// or digit.
func ValidateDestination(name string) error {
	if !destinationName.MatchString(name) {
		return fmt.Errorf("destination %q: want 1 to 128 of a-z 0-9 _ . : - starting with a letter or digit", name)
	}
	return nil
}

// Route fans out up to limit rows of the main destination that writers
// wrote and no relay has routed yet, in the given buckets, in seq order: for
// each, one copy per destination r names for its type (the copy keeps its
// own attempts, backoff and dead letter), and the row is marked routed, all
// in one transaction. It depends on no destination's broker, so no
// destination's outage holds back another's. A copy that exists already
// (the event id is unique per destination) is left alone, so routing a row
// twice is harmless. It returns how many rows it routed.
func (s *Store) Route(ctx context.Context, buckets []int, r Router, limit int) (int, error) {
	if s.destination != MainDestination || len(buckets) == 0 {
		return 0, nil
	}
	q := `SELECT seq, event_id, event_type, partition_key, payload, created_at FROM herald_outbox
WHERE destination = ? AND state = 'pending' AND ` + s.d.unrouted
	args := []any{s.destination}
	if len(buckets) < Buckets {
		q += ` AND bucket IN (` + placeholders(len(buckets)) + `)`
		for _, b := range buckets {
			args = append(args, b)
		}
	}
	q += ` ORDER BY seq LIMIT ?`
	type unrouted struct {
		seq          int64
		id, typ, key string
		payload      []byte
		created      time.Time
	}
	db := s.db.WithContext(ctx)
	res, err := db.Raw(q, append(args, limit)...).Rows()
	if err != nil {
		return 0, fmt.Errorf("outbox route: read: %w", err)
	}
	var rows []unrouted
	for res.Next() {
		var u unrouted
		var created any
		if err := res.Scan(&u.seq, &u.id, &u.typ, &u.key, &u.payload, &created); err != nil {
			_ = res.Close()
			return 0, fmt.Errorf("outbox route: scan: %w", err)
		}
		if u.created, err = decodeTime(created); err != nil {
			_ = res.Close()
			return 0, fmt.Errorf("outbox route: created_at of %s: %w", u.id, err)
		}
		rows = append(rows, u)
	}
	if err := errors.Join(res.Err(), res.Close()); err != nil {
		return 0, fmt.Errorf("outbox route: read: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	now := s.d.encodeTime(s.now())
	const cols = 8
	var copies []any
	seqs := make([]any, len(rows))
	for i, row := range rows {
		seqs[i] = row.seq
		dests := r.Destinations(row.typ)
		for j, dest := range dests {
			if dest == MainDestination || slices.Contains(dests[:j], dest) {
				continue
			}
			copies = append(copies, dest, row.id, row.typ, row.key, row.payload, now, s.d.encodeTime(row.created), true)
		}
	}
	err = db.Transaction(func(tx *gorm.DB) error {
		for start := 0; start < len(copies); start += writeChunk * cols {
			part := copies[start:min(start+writeChunk*cols, len(copies))]
			ins := s.d.insertIgnore[0] + ` INTO herald_outbox (destination, event_id, event_type, partition_key, payload, available_at, created_at, routed) VALUES ` +
				strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?), ", len(part)/cols), ", ") + s.d.insertIgnore[1]
			if err := tx.Exec(ins, part...).Error; err != nil {
				return fmt.Errorf("insert copies: %w", err)
			}
		}
		return tx.Exec(`UPDATE herald_outbox SET routed = ? WHERE seq IN (`+placeholders(len(seqs))+`)`, append([]any{true}, seqs...)...).Error
	})
	if err != nil {
		return 0, fmt.Errorf("outbox route: %w", err)
	}
	return len(rows), nil
}
