package enricher

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
)

// verifyPage is how many audit ids Verify reads, and looks up, at a time:
// few enough for any dialect's limit on query parameters.
const verifyPage = 500

// VerifyReport is what [Verify] found.
type VerifyReport struct {
	// Since is where the check began: audit records created from then on
	// were checked, and every record without a readable created_on.
	Since time.Time
	// Checked counts the audit records checked.
	Checked int
	// Missing are the checked records the enricher never handled: neither
	// marked processed nor quarantined. Oldest first, those without a time
	// before the others.
	Missing []MissingRecord
}

// MissingRecord is an audit record the enricher never handled.
type MissingRecord struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedOn time.Time `json:"created_on"` // zero when the row has none, or none that reads as a time
}

// Verify compares the portal's audit table (events) with what the
// enricher handled, for after an incident: every audit record created at
// or after since (every record, when since is zero), and every one without
// a readable created_on, must have its id in the processed ids table
// ([ProcessedTable], whatever the outcome: an action ignored on purpose
// counts as enriched) or in the quarantine ([QuarantineTable]), both in
// outboxDB. portalDB is where the audit table is; nil: outboxDB.
//
// It reads the audit table in pages of ids and looks each page up, so
// neither table is loaded whole. The tail prunes processed ids some time
// after it handled them (DefaultProcessedRetention): a since further back
// than that reports records that were handled. A record the tail has not
// reached yet is reported too.
func Verify(ctx context.Context, outboxDB, portalDB *gorm.DB, since time.Time) (VerifyReport, error) {
	if outboxDB == nil {
		return VerifyReport{}, errors.New("enricher verify: nil outbox database")
	}
	if portalDB == nil {
		portalDB = outboxDB
	}
	rep := VerifyReport{Since: since}
	after := ""
	for {
		page, err := readAuditIDs(ctx, portalDB, since, after)
		if err != nil {
			return rep, err
		}
		if len(page) == 0 {
			break
		}
		rep.Checked += len(page)
		keys := make([]string, len(page))
		for i, r := range page {
			keys[i] = auditKey(r.ID)
		}
		handled := map[string]bool{}
		for _, table := range []string{ProcessedTable, QuarantineTable} {
			var found []string
			if err := outboxDB.WithContext(ctx).Raw("SELECT audit_id FROM "+table+" WHERE audit_id IN ?", keys).
				Scan(&found).Error; err != nil {
				return rep, fmt.Errorf("enricher verify: read %s: %w", table, err)
			}
			for _, id := range found {
				handled[id] = true
			}
		}
		for i, r := range page {
			if !handled[keys[i]] {
				rep.Missing = append(rep.Missing, r)
			}
		}
		if len(page) < verifyPage {
			break
		}
		after = page[len(page)-1].ID
	}
	slices.SortFunc(rep.Missing, func(a, b MissingRecord) int {
		if c := a.CreatedOn.Compare(b.CreatedOn); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return rep, nil
}

// readAuditIDs reads the next page of audit records in id order, after the
// id after ("" for the first page).
func readAuditIDs(ctx context.Context, db *gorm.DB, since time.Time, after string) ([]MissingRecord, error) {
	// As the tail reads it: SQLite holds created_on as text in more than
	// one layout, which strftime brings to one (NULL when it is no time).
	k, bound := "created_on", any(since.UTC())
	if db.Name() == "sqlite" {
		k, bound = "strftime('%Y-%m-%dT%H:%M:%fZ', created_on)", since.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	q := "SELECT id, name, created_on FROM events WHERE 1 = 1"
	var args []any
	if !since.IsZero() {
		q += " AND (created_on IS NULL OR " + k + " IS NULL OR " + k + " >= ?)"
		args = append(args, bound)
	}
	if after != "" {
		q += " AND id > ?"
		args = append(args, after)
	}
	q += " ORDER BY id LIMIT ?"
	args = append(args, verifyPage)
	rows, err := db.WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("enricher verify: read audit table: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err reports what matters
	var page []MissingRecord
	for rows.Next() {
		var r MissingRecord
		var name sql.NullString
		var created any
		if err := rows.Scan(&r.ID, &name, &created); err != nil {
			return nil, fmt.Errorf("enricher verify: scan audit row: %w", err)
		}
		r.Name = name.String
		// An unreadable time stays zero: the row is reported with none.
		r.CreatedOn, _ = decodeTime(created)
		page = append(page, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("enricher verify: read audit table: %w", err)
	}
	return page, nil
}
