package enricher

import (
	"context"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/pkg/event"
	"gorm.io/gorm"
)

func (p *pipeline) lookupDB(tx *gorm.DB) *gorm.DB {
	if p.portal != nil {
		return p.portal
	}
	return tx
}

// portalDown tells a portal that cannot be reached, which is no fault of the
// record and must not quarantine it, from a lookup that failed for the
// record's own sake. Record-level errors skip the check.
func (p *pipeline) portalDown(ctx context.Context, err error) error {
	if errors.Is(err, ErrInvalidRecord) || errors.Is(err, ErrUnmapped) || errors.Is(err, ErrEntityNotFound) || errors.Is(err, ErrEventTooLarge) ||
		errors.Is(err, event.ErrInvalid) {
		return nil
	}
	db := p.portal
	if db == nil {
		db = p.db
	}
	sqlDB, dbErr := db.DB()
	if dbErr == nil {
		dbErr = sqlDB.PingContext(ctx)
	}
	if dbErr != nil {
		return fmt.Errorf("portal unreachable (%w) while enriching: %w", dbErr, err)
	}
	return nil
}
