package portalsample

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/heraldhq/herald/pkg/enricher"
)

func openSQLite(t *testing.T) *gorm.DB {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "portal.db") + "?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)"
	db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return db
}

func TestLoadAndAuditRecords(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	if err := Load(ctx, db); err != nil {
		t.Fatalf("Load: %v", err)
	}

	counts := map[string]int64{
		"users": 3, "domains": 1, "data_product_types": 1, "roles": 2, "data_products": 2,
		"data_product_settings": 1, "datasets": 1, "data_outputs": 1, "data_outputs_datasets": 1,
		"data_products_datasets": 1, "role_assignments_data_product": 2, "events": 13,
	}
	for table, want := range counts {
		var got int64
		if err := db.Table(table).Count(&got).Error; err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		if got != want {
			t.Errorf("%s: %d rows, want %d", table, got, want)
		}
	}

	recs, err := AuditRecords(ctx, db)
	if err != nil {
		t.Fatalf("AuditRecords: %v", err)
	}
	if len(recs) != 13 {
		t.Fatalf("AuditRecords: %d records, want 13", len(recs))
	}
	want := enricher.AuditRecord{
		ID:          "e0c1f6a2-5d0b-4c1e-9a53-0b7f2d3c4e01",
		Name:        "data_product_created",
		SubjectID:   "10000000-0000-4000-8000-000000000001",
		SubjectType: "data_product",
		ActorID:     "00000000-0000-4000-8000-000000000001",
		CreatedOn:   time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC),
	}
	if recs[0] != want {
		t.Errorf("first record:\n got %+v\nwant %+v", recs[0], want)
	}
	if recs[0].CreatedOn.Location() != time.UTC {
		t.Errorf("created_on location %v, want UTC", recs[0].CreatedOn.Location())
	}
	if !slices.IsSortedFunc(recs, func(a, b enricher.AuditRecord) int { return a.CreatedOn.Compare(b.CreatedOn) }) {
		t.Error("records not ordered by created_on")
	}
	last := recs[len(recs)-1]
	if last.Name != "data_product_role_assignment_removed" || last.DeletedTargetIdentifier != "chi@example.com" || last.DeletedSubjectIdentifier != "" {
		t.Errorf("last record: %+v", last)
	}
	removed := recs[11]
	if removed.Name != "data_product_removed" || removed.DeletedSubjectIdentifier != "Scratchpad" || removed.TargetID != "" || removed.TargetType != "" {
		t.Errorf("record 12: %+v", removed)
	}
}

func TestAuditRecordsOrderMixedTimeFormats(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	if err := Load(ctx, db); err != nil {
		t.Fatalf("Load: %v", err)
	}
	// A row left to the column default gets CURRENT_TIMESTAMP's text form,
	// which as text sorts before every seeded 'T' form of the same day.
	if err := db.Exec(`INSERT INTO events (id, name, subject_id, subject_type, actor_id) VALUES
 ('ffffffff-0000-4000-8000-000000000001','data_product_updated','10000000-0000-4000-8000-000000000001','data_product','00000000-0000-4000-8000-000000000001')`).Error; err != nil {
		t.Fatalf("insert: %v", err)
	}
	recs, err := AuditRecords(ctx, db)
	if err != nil {
		t.Fatalf("AuditRecords: %v", err)
	}
	last := recs[len(recs)-1]
	if last.ID != "ffffffff-0000-4000-8000-000000000001" {
		t.Errorf("newest record %s (%s) is not last", last.ID, last.CreatedOn)
	}
	if d := time.Since(last.CreatedOn); d < 0 || d > time.Minute {
		t.Errorf("default created_on %s is not now", last.CreatedOn)
	}
}

func TestLoadIsOneTransaction(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	// An events table of another shape makes the seed's last insert fail,
	// after every other table was created and filled.
	if err := db.Exec(`CREATE TABLE events (id text PRIMARY KEY)`).Error; err != nil {
		t.Fatal(err)
	}
	if err := Load(ctx, db); err == nil {
		t.Fatal("Load succeeded on a conflicting events table")
	}
	var n int64
	if err := db.Raw(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'users'`).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("a failed Load left the users table behind")
	}
}

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   []string
	}{
		{"plain", "SELECT 1; SELECT 2;", []string{"SELECT 1", "SELECT 2"}},
		{"no final semicolon", "SELECT 1;\nSELECT 2\n", []string{"SELECT 1", "SELECT 2"}},
		{"semicolon in literal", "INSERT INTO t VALUES ('a;b');", []string{"INSERT INTO t VALUES ('a;b')"}},
		{"escaped quote", "INSERT INTO t VALUES ('it''s; fine');", []string{"INSERT INTO t VALUES ('it''s; fine')"}},
		{"quoted identifier", `SELECT "a;b" FROM t;`, []string{`SELECT "a;b" FROM t`}},
		{"line comment", "-- a; b\nSELECT 1; -- trailing; note\n", []string{"-- a; b\nSELECT 1"}},
		{"dashes in literal", "SELECT '--;';", []string{"SELECT '--;'"}},
		{"block comment", "/* x; y */ SELECT 1;", []string{"/* x; y */ SELECT 1"}},
		{"only comments", "-- nothing here;\n/* nor; here */\n", nil},
		{"empty statements", ";;  ;", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := splitStatements(tt.script); !slices.Equal(got, tt.want) {
				t.Errorf("splitStatements(%q)\n got %q\nwant %q", tt.script, got, tt.want)
			}
		})
	}
}

func TestSplitStatementsFixture(t *testing.T) {
	if got := len(splitStatements(schemaSQL)); got != 13 {
		t.Errorf("schema.sql: %d statements, want 13 (12 tables, 1 index)", got)
	}
	if got := len(splitStatements(seedSQL)); got != 12 {
		t.Errorf("seed.sql: %d statements, want 12 inserts", got)
	}
}

func TestParseTime(t *testing.T) {
	want := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	berlin := time.FixedZone("CET", 3600)
	for _, v := range []any{
		"2026-11-01T10:00:00Z",
		"2026-11-01T11:00:00+01:00",
		"2026-11-01 10:00:00",
		"2026-11-01T10:00:00",
		"2026-11-01 10:00:00+00:00",
		"2026-11-01 10:00:00.000",
		[]byte("2026-11-01T10:00:00Z"),
		want.In(berlin),
		"2026-11-01 11:00:00 +0100 CET",
	} {
		got, err := parseTime(v)
		if err != nil {
			t.Errorf("parseTime(%v): %v", v, err)
			continue
		}
		if !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("parseTime(%v) = %v, want %v in UTC", v, got, want)
		}
	}
	for _, v := range []any{nil, "yesterday", 42} {
		if _, err := parseTime(v); err == nil {
			t.Errorf("parseTime(%v) succeeded", v)
		}
	}
}

func TestLoadShowcase(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	if err := Load(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := LoadShowcase(ctx, db); err != nil {
		t.Fatalf("LoadShowcase: %v", err)
	}
	recs, err := AuditRecords(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 44 {
		t.Errorf("%d audit records, want the fixture's 13 and the showcase's 31", len(recs))
	}
	// The showcase's own first record follows the fixture's last.
	if recs[13].ID != "f2f8278f-ed35-4a4a-bfdd-26d22a65f083" {
		t.Errorf("record 14 is %s (%s)", recs[13].ID, recs[13].Name)
	}
	// A second load fails as a whole and leaves the first intact.
	if err := LoadShowcase(ctx, db); err == nil {
		t.Error("loading the showcase twice succeeded")
	}
	var n int64
	if err := db.Table("events").Count(&n).Error; err != nil || n != 44 {
		t.Errorf("%d events after a failed second load (err %v), want 44", n, err)
	}
}
