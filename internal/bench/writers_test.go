package bench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/outbox"
)

func TestCopyTableHasTheOutboxColumnsAndIndexesButNoTriggers(t *testing.T) {
	// A trigger of the test's own on every dialect, so that reading them
	// from the catalog is tested where the migrations install none.
	trigger := map[string]string{
		"sqlite":   `CREATE TRIGGER herald_bench_test AFTER INSERT ON herald_outbox BEGIN SELECT 1; END`,
		"postgres": `CREATE TRIGGER herald_bench_test AFTER INSERT ON herald_outbox FOR EACH STATEMENT EXECUTE FUNCTION herald_outbox_notify()`,
		"mysql":    `CREATE TRIGGER herald_bench_test AFTER INSERT ON herald_outbox FOR EACH ROW SET @herald_bench_test = 1`,
	}
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			db := testdb.Migrated(t, dialect)
			if err := db.Gorm.Exec(trigger[dialect]).Error; err != nil {
				t.Fatal(err)
			}
			src, err := tableShape(db.Gorm, dialect, outbox.Table)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(src.triggers, "herald_bench_test") || src.columns < 10 || src.indexes < 3 {
				t.Fatalf("outbox shape %+v: want its columns, indexes and the test's trigger", src)
			}
			if dialect == "postgres" && !slices.Contains(src.triggers, "herald_outbox_notify") {
				t.Errorf("PostgreSQL triggers %q lack the wake-up's", src.triggers)
			}
			// Twice: the second replaces a copy a killed run left.
			for range 2 {
				if err := copyTable(db.Gorm, dialect, outbox.Table, CopyTable); err != nil {
					t.Fatal(err)
				}
			}
			cp, err := tableShape(db.Gorm, dialect, CopyTable)
			if err != nil {
				t.Fatal(err)
			}
			if cp.columns != src.columns || cp.indexes != src.indexes || len(cp.triggers) != 0 {
				t.Errorf("copy shape %+v, outbox %+v: want the same columns and indexes, no trigger", cp, src)
			}

			b := &bench{opts: Options{Producers: 4}, producerDB: db.Gorm, keys: []string{"k"}}
			b.cfg.Database = config.Database{Driver: dialect, DSN: db.DSN}
			rate, err := b.commitRate(ctx, CopyTable, 200*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			var rows struct {
				N, Seqs, Pending int
			}
			// The identity and defaults came along: every row got its own
			// seq and is pending with no attempt.
			err = db.Gorm.Raw(`SELECT COUNT(*) AS n, COUNT(DISTINCT seq) AS seqs,
  SUM(CASE WHEN state = 'pending' AND attempts = 0 THEN 1 ELSE 0 END) AS pending FROM ` + CopyTable).Scan(&rows).Error
			if err != nil {
				t.Fatal(err)
			}
			if rate.Commits < 1 || rows.N != rate.Commits || rows.Seqs != rows.N || rows.Pending != rows.N || rate.PerSecond <= 0 {
				t.Errorf("%+v committed, table holds %+v", rate, rows)
			}
			var inOutbox int64
			if err := db.Gorm.Table(outbox.Table).Count(&inOutbox).Error; err != nil {
				t.Fatal(err)
			}
			if inOutbox != 0 {
				t.Errorf("writing to the copy wrote %d rows to the outbox", inOutbox)
			}
		})
	}
}
