package outbox

import (
	"context"
	"time"

	"gorm.io/gorm"
)

// ApplyUpTo applies the dialect's migrations up to version, as an older
// Herald would have, so tests can check an upgrade over existing rows.
func ApplyUpTo(ctx context.Context, db *gorm.DB, version int) error {
	d, err := dialectOf(db)
	if err != nil {
		return err
	}
	ms, err := Migrations(d.name)
	if err != nil {
		return err
	}
	if err := db.WithContext(ctx).Exec(d.migrationsTable).Error; err != nil {
		return err
	}
	for _, m := range ms {
		if m.Version > version {
			break
		}
		for _, stmt := range splitStatements(m.SQL) {
			if err := db.WithContext(ctx).Exec(stmt).Error; err != nil {
				return err
			}
		}
		if err := db.WithContext(ctx).Exec(`INSERT INTO herald_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, d.encodeTime(time.Now())).Error; err != nil {
			return err
		}
	}
	return nil
}
