// Package portalsample is the data-product portal's sample scenario: its
// tables and one consistent set of entities and audit records, for Herald's
// demo and tests. It runs on SQLite, PostgreSQL and MySQL/MariaDB.
//
// schema.sql and seed.sql are copies of the shared portal fixture; schema.sql
// differs in one column default, explained at its top. showcase.sql continues
// the fixture's story so that every event type of the enricher's catalogue
// occurs; [Examples] turns it into the catalogue's documented examples.
package portalsample

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/enricher"
)

//go:embed schema.sql
var schemaSQL string

//go:embed schema_mysql.sql
var schemaMySQL string

//go:embed seed.sql
var seedSQL string

//go:embed showcase.sql
var showcaseSQL string

// script is one embedded SQL file.
type script struct{ name, sql string }

// Load creates the portal tables and inserts the scenario into db, all in one
// transaction: a failure leaves no half-loaded portal behind. The seed's
// inserts fail on a database that already holds the scenario.
func Load(ctx context.Context, db *gorm.DB) error {
	schema := script{"schema.sql", schemaSQL}
	if db.Name() == "mysql" {
		schema = script{"schema_mysql.sql", schemaMySQL}
	}
	return run(ctx, db, schema, script{"seed.sql", seedSQL})
}

// LoadShowcase continues a loaded scenario (see [Load]) with showcase.sql, in
// one transaction: one more day of portal actions, covering every event type
// the enricher emits.
func LoadShowcase(ctx context.Context, db *gorm.DB) error {
	return run(ctx, db, script{"showcase.sql", showcaseSQL})
}

// rfc3339Literal is a UTC time literal as the scripts write it.
var rfc3339Literal = regexp.MustCompile(`'(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d(?:\.\d+)?)Z'`)

func run(ctx context.Context, db *gorm.DB, scripts ...script) error {
	return db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, file := range scripts {
			text := file.sql
			if db.Name() == "mysql" {
				// MySQL's DATETIME takes neither the T nor the zone; the
				// scripts' times are UTC, which is what the column holds.
				text = rfc3339Literal.ReplaceAllString(text, "'$1 $2'")
			}
			for i, stmt := range splitStatements(text) {
				// Straight to the driver: gorm's Exec would scan the text for
				// placeholders, and a literal may contain '?' or '@'.
				if _, err := tx.Statement.ConnPool.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("portal sample: %s statement %d (%s): %w", file.name, i+1, firstLine(stmt), err)
				}
			}
		}
		return nil
	})
}

// AuditRecords returns every row of the portal's audit table, oldest first
// (created_on, then id).
func AuditRecords(ctx context.Context, db *gorm.DB) ([]enricher.AuditRecord, error) {
	rows, err := db.WithContext(ctx).Raw(`SELECT id, name, subject_id, subject_type, target_id, target_type, actor_id,
  deleted_subject_identifier, deleted_target_identifier, created_on
FROM events ORDER BY created_on, id`).Rows()
	if err != nil {
		return nil, fmt.Errorf("portal sample: read audit records: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err reports what matters

	var recs []enricher.AuditRecord
	for rows.Next() {
		var id, name, subjectID, subjectType, targetID, targetType, actorID, delSubject, delTarget sql.NullString
		var createdOn any
		if err := rows.Scan(&id, &name, &subjectID, &subjectType, &targetID, &targetType, &actorID,
			&delSubject, &delTarget, &createdOn); err != nil {
			return nil, fmt.Errorf("portal sample: scan audit record: %w", err)
		}
		t, err := parseTime(createdOn)
		if err != nil {
			return nil, fmt.Errorf("portal sample: audit record %s: created_on: %w", id.String, err)
		}
		recs = append(recs, enricher.AuditRecord{
			ID: id.String, Name: name.String,
			SubjectID: subjectID.String, SubjectType: subjectType.String,
			TargetID: targetID.String, TargetType: targetType.String,
			ActorID:                  actorID.String,
			DeletedSubjectIdentifier: delSubject.String, DeletedTargetIdentifier: delTarget.String,
			CreatedOn: t,
		})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("portal sample: read audit records: %w", err)
	}
	// SQLite compares created_on as text, and the seed's "2026-11-01T10:00:00Z"
	// and the column default's "2026-11-01 10:00:00" do not sort as instants;
	// sorting the parsed times keeps the promised order on every database.
	slices.SortStableFunc(recs, func(a, b enricher.AuditRecord) int {
		if c := a.CreatedOn.Compare(b.CreatedOn); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return recs, nil
}

// parseTime reads a timestamp column as PostgreSQL drivers (time.Time) and
// SQLite (text) return it. A time without a zone is UTC, as the portal
// writes UTC.
func parseTime(v any) (time.Time, error) {
	var s string
	switch x := v.(type) {
	case time.Time:
		return x.UTC(), nil
	case string:
		s = x
	case []byte:
		s = string(x)
	case nil:
		return time.Time{}, fmt.Errorf("is NULL")
	default:
		return time.Time{}, fmt.Errorf("unexpected %T", v)
	}
	s = strings.TrimSpace(s)
	// RFC 3339 as the seed writes it, CURRENT_TIMESTAMP's form, and what
	// drivers write for a bound time.Time.
	layouts := [...]string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05.999999999",
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999",
		"2006-01-02 15:04:05.999999999 -0700 MST",
	}
	for _, layout := range layouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a timestamp", s)
}

// splitStatements splits a SQL script into single statements on the
// semicolons that end them, not those inside quoted text, quoted identifiers
// or comments: drivers differ on whether one Exec may run several statements.
// Chunks holding only comments and space are dropped.
func splitStatements(script string) []string {
	var stmts []string
	start, hasCode := 0, false
	for i := 0; i < len(script); i++ {
		switch c := script[i]; {
		case c == '\'' || c == '"':
			// A doubled quote is an escaped quote and keeps the literal open.
			for i++; i < len(script); i++ {
				if script[i] == c {
					if i+1 < len(script) && script[i+1] == c {
						i++
						continue
					}
					break
				}
			}
			hasCode = true
		case c == '-' && i+1 < len(script) && script[i+1] == '-':
			for i < len(script) && script[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(script) && script[i+1] == '*':
			end := strings.Index(script[i+2:], "*/")
			if end < 0 {
				i = len(script)
			} else {
				i += 2 + end + 1
			}
		case c == ';':
			if hasCode {
				stmts = append(stmts, strings.TrimSpace(script[start:i]))
			}
			start, hasCode = i+1, false
		case c != ' ' && c != '\t' && c != '\n' && c != '\r':
			hasCode = true
		}
	}
	if hasCode {
		stmts = append(stmts, strings.TrimSpace(script[start:]))
	}
	return stmts
}

// firstLine is a statement's first line of code, to name it in errors.
func firstLine(stmt string) string {
	for line := range strings.Lines(stmt) {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "--") {
			return l
		}
	}
	return ""
}
