package enricher

import (
	"context"
	"errors"
	"fmt"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
)

// ErrPortalUnavailable marks a failure to read the portal that is no fault
// of the record being enriched: the portal's database cannot be reached, or
// it is reached but its tables are missing or may not be read (the portal
// database setting points at the wrong database, or the enricher's role
// lacks a grant). Such a record is neither quarantined nor marked
// processed: the tail retries its poll, HTTP ingest answers 503, and a
// quarantine retry leaves the row as it was.
var ErrPortalUnavailable = errors.New("the portal's database cannot be read")

func (p *pipeline) lookupDB(tx *gorm.DB) *gorm.DB {
	if p.portal != nil {
		return p.portal
	}
	return tx
}

// portalDown tells a portal that cannot be read, which is no fault of the
// record and must not quarantine it, from a lookup that failed for the
// record's own sake. Record-level errors skip the check. It returns nil, or
// an error wrapping ErrPortalUnavailable and err.
func (p *pipeline) portalDown(ctx context.Context, err error) error {
	if errors.Is(err, ErrInvalidRecord) || errors.Is(err, ErrUnmapped) || errors.Is(err, ErrEntityNotFound) || errors.Is(err, ErrEventTooLarge) ||
		errors.Is(err, event.ErrInvalid) {
		return nil
	}
	if reason := misconfigured(err); reason != "" {
		// Every record would fail the same way until the setting is fixed;
		// quarantining them would bury the one cause under each record.
		return fmt.Errorf("%w: %s (check the portal database setting, enricher.portal_dsn or --portal-dsn, and the grants of its role): %w",
			ErrPortalUnavailable, reason, err)
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
		return fmt.Errorf("%w: unreachable (%w) while enriching: %w", ErrPortalUnavailable, dbErr, err)
	}
	return nil
}

// PostgreSQL's SQLSTATEs and MySQL's error numbers of a schema the enricher
// cannot read: the portal's tables or columns are not there, or its role may
// not read them.
var (
	pgMisconfigured = map[string]string{
		"42P01": "a portal table does not exist",
		"42703": "a portal column does not exist",
		"42501": "permission denied on a portal table",
		"3F000": "the portal's schema does not exist",
	}
	mysqlMisconfigured = map[uint16]string{
		1146: "a portal table does not exist",
		1054: "a portal column does not exist",
		1142: "permission denied on a portal table",
		1143: "permission denied on a portal column",
		1044: "permission denied on the portal's database",
		1049: "the portal's database does not exist",
	}
)

// misconfigured returns what is wrong when err says the portal's schema is
// missing or unreadable, and "" for any other error. SQLite reports these
// in its message only.
func misconfigured(err error) string {
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		return pgMisconfigured[pg.SQLState()]
	}
	var my *gomysql.MySQLError
	if errors.As(err, &my) {
		return mysqlMisconfigured[my.Number]
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no such table"):
		return "a portal table does not exist"
	case strings.Contains(msg, "no such column"):
		return "a portal column does not exist"
	}
	return ""
}
