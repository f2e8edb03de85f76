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
	StatePending   State = "pending"   // waiting to be published, or leased by a relay
	StateDelivered State = "delivered" // accepted by the broker (kept only with WithKeepDelivered)
	StateDead      State = "dead"      // given up on; kept with its last error for replay
)

// Row is one stored event.
type Row struct {
	Seq            int64
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

// Write validates and stores events inside tx, the producer's own
// transaction: they become visible to relays when, and only when, tx commits.
// An invalid event fails the whole call with an error naming the event and
// the attribute, and nothing is written.
func Write(ctx context.Context, tx *gorm.DB, events ...event.Event) error {
	if len(events) == 0 {
		return nil
	}
	d, err := dialectOf(tx)
	if err != nil {
		return fmt.Errorf("outbox write: %w", err)
	}
	now := d.encodeTime(time.Now())
	args := make([]any, 0, len(events)*6)
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
		if err := tx.Exec(q, args[start*6:(start+n)*6]...).Error; err != nil {
			return fmt.Errorf("outbox write: insert %d events: %w", n, err)
		}
	}
	return nil
}

// ErrNotFound is returned by Store.Get for an unknown event id.
var ErrNotFound = errors.New("outbox: event not found")
