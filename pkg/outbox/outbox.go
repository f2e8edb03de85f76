package outbox

import (
	"context"
	"errors"
	"fmt"
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
	StatePending   State = "pending"   // waiting to be published, or being published
	StateDelivered State = "delivered" // accepted by the broker (kept only with WithKeepDelivered)
	StateDead      State = "dead"      // given up on; kept with its last error for replay
)

// Row is one stored event on its way to one destination.
type Row struct {
	Seq int64
	// Destination is where the row is delivered: MainDestination or a
	// route's destination. An event routed to several destinations has a
	// row for each.
	Destination  string
	EventID      string
	EventType    string
	PartitionKey string
	Payload      []byte // the CloudEvents JSON exactly as written
	State        State
	Attempts     int
	AvailableAt  time.Time
	LastError    string
	CreatedAt    time.Time
	DeliveredAt  time.Time
}

// writeChunk bounds the rows per INSERT well below every driver's limit on
// bound parameters.
const writeChunk = 200

// Write validates and stores events inside tx, the writer's own
// transaction: they become visible to relays when, and only when, tx
// commits. Each event is written once, for the main destination; the main
// relay fans it out to the other destinations (Store.Route). An invalid
// event fails the whole call with an error naming the event and the
// attribute, and nothing is written.
func Write(ctx context.Context, tx *gorm.DB, events ...event.Event) error {
	if len(events) == 0 {
		return nil
	}
	d, err := dialectOf(tx)
	if err != nil {
		return fmt.Errorf("outbox write: %w", err)
	}
	now := d.encodeTime(time.Now())
	const cols = 6
	args := make([]any, 0, len(events)*cols)
	for i, ev := range events {
		if err := ev.Validate(); err != nil {
			return fmt.Errorf("outbox write: event %d (id %q): %w", i, ev.ID, err)
		}
		payload, err := ev.MarshalJSON()
		if err != nil {
			return fmt.Errorf("outbox write: marshal event %s: %w", ev.ID, err)
		}
		args = append(args, ev.ID, ev.Type, ev.PartitionKey, payload, now, now)
	}
	tx = tx.WithContext(ctx)
	for start := 0; start < len(events); start += writeChunk {
		n := min(writeChunk, len(events)-start)
		q := "INSERT INTO " + Table + " (event_id, event_type, partition_key, payload, available_at, created_at) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", n), ", ")
		if err := tx.Exec(q, args[start*cols:(start+n)*cols]...).Error; err != nil {
			return fmt.Errorf("outbox write: insert %d rows: %w", n, err)
		}
	}
	return nil
}

// ErrNotFound is returned by Store.Get for an unknown event id.
var ErrNotFound = errors.New("outbox: event not found")
