package portalsample

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
)

// exampleRecords picks the audit record whose event documents a type, where
// the first one would show a later state that confuses more than it
// explains (a request whose input port was approved since, say).
func exampleRecords() map[string]string {
	return map[string]string{
		enricher.TypePrefix + "input_port.requested": "42128fa9-8eec-4865-a103-b1a960aeb1f1",
		enricher.TypePrefix + "input_port.approved":  "58a31362-0402-408d-a322-297cb13e340d",
	}
}

// Examples runs every audit record of the sample and its showcase through e,
// on a throw-away SQLite database, and returns one event of each type (the
// first, or the one exampleRecords picks): the catalogue's documented
// examples are real enricher output. Each
// example's id is replaced by a UUIDv7 made from its time and type, so the
// examples are the same on every run. Any record that fails to enrich is an
// error: the showcase is meant to map cleanly.
func Examples(ctx context.Context, e *enricher.Enricher) (map[string]event.Event, error) {
	evs, err := ShowcaseEvents(ctx, e)
	if err != nil {
		return nil, err
	}
	picks := exampleRecords()
	out := map[string]event.Event{}
	for _, ev := range evs {
		if _, ok := out[ev.Type]; ok {
			continue
		}
		if want, ok := picks[ev.Type]; ok {
			var prov enricher.Provenance
			if err := json.Unmarshal(ev.Data, &prov); err != nil || prov.AuditRecordID != want {
				continue
			}
		}
		ev.ID = stableID(ev)
		out[ev.Type] = ev
	}
	return out, nil
}

// ShowcaseEvents runs every audit record of the sample and its showcase
// through e, in order, on a throw-away SQLite database, and returns the events.
func ShowcaseEvents(ctx context.Context, e *enricher.Enricher) ([]event.Event, error) {
	dir, err := os.MkdirTemp("", "herald-portalsample-")
	if err != nil {
		return nil, fmt.Errorf("portal sample: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	db, err := gorm.Open(sqlite.Open("file:"+filepath.Join(dir, "portal.db")), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, fmt.Errorf("portal sample: open sqlite: %w", err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer func() { _ = sqlDB.Close() }()
	}
	if err := Load(ctx, db); err != nil {
		return nil, err
	}
	if err := LoadShowcase(ctx, db); err != nil {
		return nil, err
	}
	recs, err := AuditRecords(ctx, db)
	if err != nil {
		return nil, err
	}
	var out []event.Event
	for _, rec := range recs {
		evs, err := e.Events(ctx, db, rec)
		if err != nil {
			return nil, fmt.Errorf("portal sample: %w", err)
		}
		out = append(out, evs...)
	}
	return out, nil
}

// stableID is a UUIDv7 whose timestamp is the event's time and whose other
// bits come from its type and subject.
func stableID(ev event.Event) string {
	sum := sha256.Sum256([]byte(ev.Type + " " + ev.Subject))
	var u uuid.UUID
	copy(u[:], sum[:])
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(ev.Time.UnixMilli()))
	copy(u[:6], ms[2:])
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 4122 variant
	return u.String()
}

// Replay is the Enricher option that replays the sample as it happened: data
// read at enrichment is dated at each record's own time, as if every record
// were enriched the moment the portal wrote it, so the examples and golden
// files do not change with the day they are made.
func Replay() enricher.Option {
	return enricher.WithClock(func() time.Time { return time.Time{} })
}
