package enricher

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/outbox"
)

// StateTable keeps, per entity, the data of the last created or updated
// event the enricher emitted for it (migration 0009_entity_state). When the
// portal deletes an entity its row is gone, and this is the only place left
// that knows its namespace, configuration and owner: a deletion's event
// carries it as last_known, and events naming the deleted entity take its
// namespace and details from it.
//
// It lives in the outbox's database and is written in the transaction that
// writes the events, so the state and the events that carried it commit
// together. One row per entity Herald has described is kept, also after the
// deletion, so that a deletion enriched again (a retry) finds it.
const StateTable = "herald_enricher_entity_state"

// stateStore reads and writes StateTable through one database handle,
// normally the outbox transaction of the record being enriched.
type stateStore struct {
	db *gorm.DB // nil: there is no state to read, nor a place to remember one
	// readOnly is Enricher.Events: it writes nothing, and reads the table
	// only where it exists, since Events may be handed the portal's database
	// alone.
	readOnly bool
}

// stateTime is the fixed-width form as_of has on SQLite, so that comparing
// the strings compares the instants.
const stateTime = "2006-01-02T15:04:05.000000Z"

// available reports whether there is a table to read.
func (s stateStore) available() bool {
	if s.db == nil {
		return false
	}
	if s.readOnly {
		return s.db.Migrator().HasTable(StateTable)
	}
	return true
}

// get returns the last data remembered for the entity, nil when there is
// none.
func (s stateStore) get(ctx context.Context, kind, id string) ([]byte, error) {
	if !s.available() {
		return nil, nil
	}
	var data []byte
	row := s.db.WithContext(ctx).Raw("SELECT data FROM "+StateTable+" WHERE entity_kind = ? AND entity_id = ?", kind, id).Row()
	switch err := row.Scan(&data); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read last known state of %s %s: %w", kind, id, err)
	}
	return data, nil
}

// put remembers data as the entity's last known state, unless the table
// already holds a state with a later as_of: two enrichments of the same
// entity in concurrent transactions may commit in either order, and the one
// that read the older state must not win.
func (s stateStore) put(ctx context.Context, kind, id string, data []byte, asOf time.Time) error {
	switch {
	case s.readOnly:
		return nil
	case s.db == nil:
		return fmt.Errorf("remember %s %s: no outbox transaction", kind, id)
	}
	var q string
	at, now := any(asOf.UTC()), any(time.Now().UTC())
	switch d := s.db.Name(); d {
	case "postgres", "sqlite":
		q = "INSERT INTO " + StateTable + ` (entity_kind, entity_id, data, as_of, updated_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (entity_kind, entity_id) DO UPDATE SET data = excluded.data, as_of = excluded.as_of, updated_at = excluded.updated_at
WHERE ` + StateTable + `.as_of <= excluded.as_of`
		if d == "sqlite" {
			at, now = asOf.UTC().Format(stateTime), time.Now().UTC().Format(stateTime)
		}
	case "mysql":
		// Assignments apply left to right and later ones see earlier
		// results, so as_of is assigned last.
		q = "INSERT INTO " + StateTable + ` (entity_kind, entity_id, data, as_of, updated_at) VALUES (?, ?, ?, ?, ?)
ON DUPLICATE KEY UPDATE
  data = IF(as_of <= VALUES(as_of), VALUES(data), data),
  updated_at = IF(as_of <= VALUES(as_of), VALUES(updated_at), updated_at),
  as_of = GREATEST(as_of, VALUES(as_of))`
	default:
		return fmt.Errorf("remember %s %s: %w: %q", kind, id, outbox.ErrUnsupportedDialect, d)
	}
	if err := s.db.WithContext(ctx).Exec(q, kind, id, string(data), at, now).Error; err != nil {
		return fmt.Errorf("remember %s %s: %w", kind, id, err)
	}
	return nil
}
