package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
)

// Table is the outbox table's name.
const Table = "herald_outbox"

// State is a row's place in its life.
type State string

const (
	StatePending   State = "pending"   // waiting to be published, or leased by a relay
	StateDelivered State = "delivered" // accepted by the broker (kept only with WithKeepDelivered)
	StateDead      State = "dead"      // given up on; kept with its last error for replay
)

// Row is one stored event on its way to one destination.
type Row struct {
	Seq int64
	// Destination is where the row is delivered: MainDestination or a
	// route's destination. An event routed to several destinations has a
	// row for each.
	Destination    string
	EventID        string
	EventType      string
	PartitionKey   string
	Payload        []byte // the CloudEvents JSON exactly as written
	State          State
	Attempts       int
	AvailableAt    time.Time
	LeaseOwner     string
	LeaseExpiresAt time.Time
	LastError      string
	CreatedAt      time.Time
	DeliveredAt    time.Time
}

// writeChunk bounds the rows per INSERT well below every driver's limit on
// bound parameters.
const writeChunk = 200

// Write validates and stores events for the main destination inside tx, the
// producer's own transaction: they become visible to relays when, and only
// when, tx commits. An invalid event fails the whole call with an error
// naming the event and the attribute, and nothing is written.
func Write(ctx context.Context, tx *gorm.DB, events ...event.Event) error {
	return WriteRouted(ctx, tx, nil, events...)
}

// WriteRouted is Write for an outbox with several destinations: each event
// is stored once for the main destination and once more for every
// destination r routes its type to, so that each destination keeps its own
// progress. A nil r routes nothing.
func WriteRouted(ctx context.Context, tx *gorm.DB, r Router, events ...event.Event) error {
	if len(events) == 0 {
		return nil
	}
	d, err := dialectOf(tx)
	if err != nil {
		return fmt.Errorf("outbox write: %w", err)
	}
	now := d.encodeTime(time.Now())
	const cols = 7
	args := make([]any, 0, len(events)*cols)
	for i, ev := range events {
		if err := ev.Validate(); err != nil {
			return fmt.Errorf("outbox write: event %d (id %q): %w", i, ev.ID, err)
		}
		payload, err := ev.MarshalJSON()
		if err != nil {
			return fmt.Errorf("outbox write: marshal event %s: %w", ev.ID, err)
		}
		args = append(args, MainDestination, ev.ID, ev.Type, ev.PartitionKey, payload, now, now)
		if r == nil {
			continue
		}
		dests := r.Destinations(ev.Type)
		for i, dest := range dests {
			if dest == MainDestination || slices.Contains(dests[:i], dest) {
				continue // every event goes to main already; one row per destination
			}
			args = append(args, dest, ev.ID, ev.Type, ev.PartitionKey, payload, now, now)
		}
	}
	tx = tx.WithContext(ctx)
	rows := len(args) / cols
	for start := 0; start < rows; start += writeChunk {
		n := min(writeChunk, rows-start)
		q := "INSERT INTO " + Table + " (destination, event_id, event_type, partition_key, payload, available_at, created_at) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?), ", n), ", ")
		if err := tx.Exec(q, args[start*cols:(start+n)*cols]...).Error; err != nil {
			return fmt.Errorf("outbox write: insert %d rows: %w", n, err)
		}
	}
	return nil
}

// ErrNotFound is returned by Store.Get for an unknown event id.
var ErrNotFound = errors.New("outbox: event not found")
