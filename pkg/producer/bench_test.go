package producer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// BenchmarkRelay measures the relay draining an SQLite outbox into the
// embedded JetStream server: claim, publish with acks, delete. b.N events are
// written first (untimed); the timed part is the drain.
func BenchmarkRelay(b *testing.B) {
	for _, batch := range []int{10, 100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			r := newRig(b, "sqlite")
			b.StopTimer()
			writeBench(b, r.db, b.N)
			// Without ordering: every row shares one key, and with ordering
			// only the key's head is claimable, one event per cycle.
			store, err := outbox.NewStore(r.db)
			if err != nil {
				b.Fatal(err)
			}
			relay := producer.New(store, r.publisher(), producer.WithBatchSize(batch),
				producer.WithPollInterval(time.Millisecond), producer.WithLogger(quiet()))
			b.StartTimer()
			stop := runRelay(b, relay)
			for relay.Stats().Published < int64(b.N) {
				time.Sleep(200 * time.Microsecond)
			}
			b.StopTimer()
			stop()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkWrite measures a producer transaction that writes 10 events.
func BenchmarkWrite(b *testing.B) {
	r := newRig(b, "sqlite")
	ctx := context.Background()
	evs := make([]event.Event, 10)
	b.ResetTimer()
	for b.Loop() {
		for i := range evs {
			evs[i], _ = event.New("io.herald.bench.thing.created", "/bench", map[string]int{"i": i}, event.WithPartitionKey("k"))
		}
		if err := r.db.Transaction(func(tx *gorm.DB) error { return outbox.Write(ctx, tx, evs...) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(10*b.N)/b.Elapsed().Seconds(), "events/s")
}
func writeBench(b *testing.B, db *gorm.DB, n int) {
	b.Helper()
	ctx := context.Background()
	for start := 0; start < n; start += 500 {
		evs := make([]event.Event, 0, 500)
		for i := start; i < min(start+500, n); i++ {
			ev, err := event.New("io.herald.bench.thing.created", "/bench", map[string]int{"i": i}, event.WithPartitionKey("k"))
			if err != nil {
				b.Fatal(err)
			}
			evs = append(evs, ev)
		}
		if err := outbox.Write(ctx, db, evs...); err != nil {
			b.Fatal(err)
		}
	}
}
