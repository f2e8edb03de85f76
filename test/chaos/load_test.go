//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// eventType is the type of every event the load generator writes.
const eventType = "io.herald.chaos.item.written"

// itemsTable is the load generator's business table: each transaction
// inserts its items and their events together, as the outbox pattern
// wants. It is also the ground truth of what committed: a commit whose
// answer was lost (the database restarting under it) may have committed
// or not, and only this table can tell.
const itemsTable = "chaos_items"

// load writes events into the outbox with real transactions, through
// outbox.Write. Each key belongs to one writer, which numbers the key's
// events 0, 1, 2, ... in the order it commits them, so a key's commit order
// is known without relying on the outbox's own sequence.
type load struct {
	db      *gorm.DB
	keys    []string
	writers int

	mu        sync.Mutex
	committed map[string]time.Time // event id → when its commit returned
	next      []int                // by key index: the next event's number
	lastErr   string

	failedTx   atomic.Int64
	unanswered atomic.Int64 // events of failed transactions: committed or not, the table will tell
}

func newLoad(ctx context.Context, dsn string, keys, writers int) (*load, error) {
	db, err := outbox.OpenPostgres(dsn)
	if err != nil {
		return nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(writers + 4)
	sqlDB.SetMaxIdleConns(writers + 4)
	err = db.WithContext(ctx).Exec(`CREATE TABLE IF NOT EXISTS ` + itemsTable + ` (
		event_id   TEXT PRIMARY KEY,
		key        TEXT NOT NULL,
		n          INTEGER NOT NULL,
		written_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())`).Error
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", itemsTable, err)
	}
	l := &load{db: db, writers: writers, committed: map[string]time.Time{}, next: make([]int, keys)}
	for i := range keys {
		l.keys = append(l.keys, fmt.Sprintf("key-%04d", i))
	}
	return l, nil
}

func (l *load) Close() { closeDB(l.db) }

// loadStats is what one run of the writers did.
type loadStats struct {
	Events     int // committed and answered
	FailedTx   int
	Unanswered int
	Took       time.Duration
	LastError  string
}

// Rate is the committed events per second.
func (s loadStats) Rate() float64 { return float64(s.Events) / s.Took.Seconds() }

// preload writes total events as fast as the writers go, perTx per
// transaction: the backlog a scenario's relays then drain.
func (l *load) preload(ctx context.Context, total, perTx int) loadStats {
	// A transaction holds distinct keys of one writer.
	perTx = max(1, min(perTx, len(l.keys)/l.writers))
	var claimed atomic.Int64
	return l.writeAll(ctx, func(int, int) (time.Time, int) {
		for {
			c := claimed.Load()
			n := min(int64(perTx), int64(total)-c)
			if n <= 0 || claimed.CompareAndSwap(c, c+n) {
				return time.Time{}, int(max(n, 0))
			}
		}
	})
}

// run writes rate events per second for d, one event per transaction,
// each writer keeping its own pace; a writer that falls behind (a slow or
// restarting database) catches up without sleeping, so the offered load
// stays what was asked.
func (l *load) run(ctx context.Context, rate float64, d time.Duration) loadStats {
	start := time.Now()
	end := start.Add(d)
	interval := time.Duration(float64(l.writers) / rate * float64(time.Second))
	return l.writeAll(ctx, func(w, j int) (time.Time, int) {
		due := start.Add(time.Duration(j)*interval + time.Duration(w)*interval/time.Duration(l.writers))
		if !due.Before(end) {
			return due, 0
		}
		return due, 1
	})
}

// writeAll runs the writers until ctx ends or next has no more for them:
// writer w's j-th transaction is due at the time next gives and writes
// its count of events, 0 ending the writer.
func (l *load) writeAll(ctx context.Context, next func(w, j int) (time.Time, int)) loadStats {
	failedBefore, unansweredBefore := l.failedTx.Load(), l.unanswered.Load()
	var events atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := range l.writers {
		wg.Go(func() {
			owned := l.ownedBy(w)
			for j := 0; ctx.Err() == nil; j++ {
				due, n := next(w, j)
				if n == 0 {
					return
				}
				if wait := time.Until(due); wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
				}
				keys := pick(owned, n)
				if err := l.commit(ctx, keys); err != nil {
					l.failedTx.Add(1)
					l.unanswered.Add(int64(len(keys)))
					l.mu.Lock()
					l.lastErr = err.Error()
					l.mu.Unlock()
					// The database is away: do not spin on it.
					time.Sleep(100 * time.Millisecond)
					continue
				}
				events.Add(int64(len(keys)))
			}
		})
	}
	wg.Wait()
	l.mu.Lock()
	lastErr := l.lastErr
	l.mu.Unlock()
	return loadStats{
		Events: int(events.Load()), Took: time.Since(start), LastError: lastErr,
		FailedTx: int(l.failedTx.Load() - failedBefore), Unanswered: int(l.unanswered.Load() - unansweredBefore),
	}
}

// ownedBy lists the key indexes writer w owns.
func (l *load) ownedBy(w int) []int {
	var own []int
	for k := w; k < len(l.keys); k += l.writers {
		own = append(own, k)
	}
	return own
}

// pick returns n distinct keys of owned, from a random place on.
func pick(owned []int, n int) []int {
	n = min(n, len(owned))
	at := rand.IntN(len(owned))
	out := make([]int, n)
	for i := range out {
		out[i] = owned[(at+i)%len(owned)]
	}
	return out
}

// commit writes one event per key, with its item, in one transaction.
func (l *load) commit(ctx context.Context, keys []int) error {
	events := make([]event.Event, len(keys))
	var values strings.Builder
	args := make([]any, 0, 3*len(keys))
	l.mu.Lock()
	numbers := make([]int, len(keys))
	for i, k := range keys {
		numbers[i] = l.next[k]
		l.next[k]++ // a failed commit leaves a gap, which is no violation
	}
	l.mu.Unlock()
	for i, k := range keys {
		key := l.keys[k]
		ev, err := event.New(eventType, "/chaos", map[string]any{"key": key, "n": numbers[i]},
			event.WithSubject("items/"+key), event.WithPartitionKey(key))
		if err != nil {
			return err
		}
		events[i] = ev
		if i > 0 {
			values.WriteString(", ")
		}
		values.WriteString("(?, ?, ?)")
		args = append(args, ev.ID, key, numbers[i])
	}
	err := l.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("INSERT INTO "+itemsTable+" (event_id, key, n) VALUES "+values.String(), args...).Error; err != nil {
			return err
		}
		return outbox.Write(ctx, tx, events...)
	})
	if err != nil {
		return err
	}
	at := time.Now()
	l.mu.Lock()
	for _, ev := range events {
		l.committed[ev.ID] = at
	}
	l.mu.Unlock()
	return nil
}

// committedEvent is one event the database says committed.
type committedEvent struct {
	ID, Key string
	N       int
	// At is when its commit returned to the writer, or, for an event whose
	// commit went unanswered, when the database inserted it.
	At       time.Time
	Answered bool
}

// truth reads every committed event from the items table, by key in
// commit order.
func (l *load) truth(ctx context.Context) ([]committedEvent, error) {
	var rows []struct {
		EventID   string
		Key       string
		N         int
		WrittenAt time.Time
	}
	err := l.db.WithContext(ctx).Raw("SELECT event_id, key, n, written_at FROM " + itemsTable + " ORDER BY key, n").Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", itemsTable, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]committedEvent, len(rows))
	for i, r := range rows {
		at, answered := l.committed[r.EventID]
		if !answered {
			at = r.WrittenAt
		}
		out[i] = committedEvent{ID: r.EventID, Key: r.Key, N: r.N, At: at, Answered: answered}
	}
	return out, nil
}

func closeDB(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
}
