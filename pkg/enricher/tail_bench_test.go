package enricher_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/enricher"
)

// bulkRecords is the size of a portal bulk change in the benchmarks.
const bulkRecords = 10_000

// BenchmarkTailBulk measures how fast the tail drains a bulk change: 10,000
// data_product_updated audit rows committed at once, portal and outbox in
// one database, with every guarantee of the tail in force; "one" changes one
// data product 10,000 times, "distinct" 10,000 data products once each (no
// entity is read twice). Run with -benchtime=1x and read records/s:
//
//	go test -run '^$' -bench BenchmarkTailBulk -benchtime 1x -count 3 ./pkg/enricher/
func BenchmarkTailBulk(b *testing.B) {
	for _, dialect := range []string{"postgres", "mysql"} {
		for _, spread := range []string{"one", "distinct"} {
			b.Run(dialect+"/"+spread, func(b *testing.B) { benchTailBulk(b, dialect, spread == "distinct") })
		}
	}
}

func benchTailBulk(b *testing.B, dialect string, distinct bool) {
	{
		{
			ctx := context.Background()
			db := portalOutbox(b, dialect)
			e := enricher.New()
			tail, err := enricher.NewTail(db.Gorm, e)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tail.Poll(ctx); err != nil {
				b.Fatal(err)
			}
			tmpl := updateTemplate(b, db.Gorm)
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				if distinct {
					insertDistinct(b, db.Gorm, tmpl, bulkRecords)
				} else {
					insertBulk(b, db.Gorm, tmpl, bulkRecords)
				}
				b.StartTimer()
				start := time.Now()
				handled := 0
				for handled < bulkRecords {
					st, err := tail.Poll(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if st.Quarantined > 0 {
						b.Fatalf("%d records quarantined", st.Quarantined)
					}
					handled += st.Enriched
				}
				elapsed += time.Since(start)
			}
			b.ReportMetric(float64(bulkRecords*b.N)/elapsed.Seconds(), "records/s")
		}
	}
}

// insertDistinct adds n data products and commits one data_product_updated
// audit row for each, as one portal bulk change.
func insertDistinct(tb testing.TB, db *gorm.DB, tmpl enricher.AuditRecord, n int) {
	tb.Helper()
	recs := make([]enricher.AuditRecord, n)
	now := time.Now().UTC()
	err := db.Transaction(func(tx *gorm.DB) error {
		for start := 0; start < n; start += 500 {
			var args []any
			for i := start; i < min(start+500, n); i++ {
				id := uuid.NewString()
				args = append(args, id, "Product "+id[:8], "bench-"+id)
				recs[i] = tmpl
				recs[i].ID, recs[i].SubjectID, recs[i].CreatedOn = uuid.NewString(), id, now
			}
			q := "INSERT INTO data_products (id, name, namespace) VALUES " +
				strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", len(args)/3), ", ")
			if err := tx.Exec(q, args...).Error; err != nil {
				return fmt.Errorf("insert data products: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	insertRecords(tb, db, recs)
}

// BenchmarkTailLatency measures audit commit → outbox commit while the
// portal writes 100 audit records a second for 10 s and the tail runs with
// its default settings:
//
//	go test -run '^$' -bench BenchmarkTailLatency -benchtime 1x -count 3 ./pkg/enricher/
func BenchmarkTailLatency(b *testing.B) {
	const rate, seconds = 100, 10
	for _, dialect := range []string{"postgres", "mysql"} {
		b.Run(dialect, func(b *testing.B) {
			db := portalOutbox(b, dialect)
			tmpl := updateTemplate(b, db.Gorm)
			for b.Loop() {
				var mu sync.Mutex
				committed := map[string]time.Time{}
				var latencies []time.Duration
				observe := func(r enricher.Result) {
					at := time.Now()
					mu.Lock()
					defer mu.Unlock()
					if c, ok := committed[r.AuditID]; ok {
						latencies = append(latencies, at.Sub(c))
					}
				}
				tail, err := enricher.NewTail(db.Gorm, enricher.New(), enricher.WithObserver(observe))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tail.Poll(context.Background()); err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				wg.Go(func() { _ = tail.Run(ctx) })
				tick := time.NewTicker(time.Second / rate)
				for range rate * seconds {
					<-tick.C
					rec := tmpl
					rec.ID = uuid.NewString()
					rec.CreatedOn = time.Now().UTC()
					mu.Lock()
					insertRecords(b, db.Gorm, []enricher.AuditRecord{rec})
					committed[rec.ID] = time.Now()
					mu.Unlock()
				}
				tick.Stop()
				deadline := time.Now().Add(30 * time.Second)
				for {
					mu.Lock()
					n := len(latencies)
					mu.Unlock()
					if n >= rate*seconds || time.Now().After(deadline) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				cancel()
				wg.Wait()
				if len(latencies) < rate*seconds {
					b.Fatalf("%d of %d records reached the outbox", len(latencies), rate*seconds)
				}
				slices.Sort(latencies)
				b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}

// updateTemplate is a data_product_updated record of the fixture's first
// data product.
func updateTemplate(tb testing.TB, db *gorm.DB) enricher.AuditRecord {
	tb.Helper()
	var id, actor string
	if err := db.Raw("SELECT subject_id, actor_id FROM events WHERE name = 'data_product_created' ORDER BY created_on LIMIT 1").
		Row().Scan(&id, &actor); err != nil {
		tb.Fatal(err)
	}
	return enricher.AuditRecord{Name: "data_product_updated", SubjectID: id, SubjectType: "data_product", ActorID: actor}
}

// insertBulk commits n copies of tmpl with fresh ids, as one portal bulk
// change.
func insertBulk(tb testing.TB, db *gorm.DB, tmpl enricher.AuditRecord, n int) {
	tb.Helper()
	recs := make([]enricher.AuditRecord, n)
	now := time.Now().UTC()
	for i := range recs {
		recs[i] = tmpl
		recs[i].ID = uuid.NewString()
		recs[i].CreatedOn = now
	}
	insertRecords(tb, db, recs)
}

func insertRecords(tb testing.TB, db *gorm.DB, recs []enricher.AuditRecord) {
	tb.Helper()
	err := db.Transaction(func(tx *gorm.DB) error {
		for start := 0; start < len(recs); start += 500 {
			chunk := recs[start:min(start+500, len(recs))]
			var args []any
			for _, r := range chunk {
				args = append(args, r.ID, r.Name, r.SubjectID, r.SubjectType, r.ActorID, r.CreatedOn)
			}
			q := "INSERT INTO events (id, name, subject_id, subject_type, actor_id, created_on) VALUES " +
				strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", len(chunk)), ", ")
			if err := tx.Exec(q, args...).Error; err != nil {
				return fmt.Errorf("insert audit rows: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}
