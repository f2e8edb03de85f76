package enricher

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// ErrNotQuarantined is returned by [Quarantine.Retry] for an id that names no
// quarantined record.
var ErrNotQuarantined = errors.New("no such quarantined audit record")

// Quarantined is one audit record that could not be enriched.
type Quarantined struct {
	ID            string          `json:"id"` // the quarantine row's own id
	AuditID       string          `json:"audit_record_id"`
	Action        string          `json:"action"`
	Source        string          `json:"source"` // "tail:<cursor>", "ingest"
	Kind          string          `json:"kind"`   // KindInvalid, KindUnmapped, KindNotFound, KindTooLarge, KindFailed
	Reason        string          `json:"reason"`
	Record        json.RawMessage `json:"record"` // as received
	Attempts      int             `json:"attempts"`
	FirstSeenAt   time.Time       `json:"first_seen_at"`
	LastAttemptAt time.Time       `json:"last_attempt_at"`
}

// Quarantine lists quarantined audit records and re-runs them through the
// Enricher's current rules, e.g. after a mapping fix.
type Quarantine struct{ p *pipeline }

// NewQuarantine returns the quarantine of the outbox database db; records
// are retried with e. It accepts [WithPortal], [WithSourceLogger] and
// [WithMaxEventBytes].
func NewQuarantine(db *gorm.DB, e *Enricher, opts ...SourceOption) (*Quarantine, error) {
	p, err := newPipeline(db, e, newSourceConfig(opts))
	if err != nil {
		return nil, err
	}
	return &Quarantine{p: p}, nil
}

// List returns every quarantined record, oldest first.
func (q *Quarantine) List(ctx context.Context) ([]Quarantined, error) {
	return q.list(ctx, q.p.db, "", "")
}

func (q *Quarantine) list(ctx context.Context, db *gorm.DB, where string, arg any) ([]Quarantined, error) {
	stmt := "SELECT id, audit_id, action, source, kind, reason, record, attempts, first_seen_at, last_attempt_at FROM " +
		QuarantineTable
	var args []any
	if where != "" {
		stmt += " WHERE " + where
		args = append(args, arg, arg)
	}
	stmt += " ORDER BY first_seen_at, id"
	rows, err := db.WithContext(ctx).Raw(stmt, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("list quarantine: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err reports what matters
	var out []Quarantined
	for rows.Next() {
		var r Quarantined
		var record string
		var first, last any
		if err := rows.Scan(&r.ID, &r.AuditID, &r.Action, &r.Source, &r.Kind, &r.Reason, &record, &r.Attempts, &first, &last); err != nil {
			return nil, fmt.Errorf("list quarantine: %w", err)
		}
		if r.FirstSeenAt, err = decodeTime(first); err != nil {
			return nil, fmt.Errorf("list quarantine: %s: first_seen_at: %w", r.ID, err)
		}
		if r.LastAttemptAt, err = decodeTime(last); err != nil {
			return nil, fmt.Errorf("list quarantine: %s: last_attempt_at: %w", r.ID, err)
		}
		if json.Valid([]byte(record)) {
			r.Record = json.RawMessage(record)
		} else {
			r.Record, _ = json.Marshal(record) // a string is always encodable
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list quarantine: %w", err)
	}
	return out, nil
}

// Retry re-runs the quarantined record with quarantine id or audit record id
// id. On success its events are written, the quarantine row is deleted and
// its id is marked enriched, in one transaction; when it still fails, the
// row's reason, kind and attempts are updated and the Result says
// StatusQuarantined. An unknown id fails with [ErrNotQuarantined]. When the
// portal cannot be read ([ErrPortalUnavailable]: unreachable, or its tables
// missing because the portal database setting is wrong), the row is left as
// it was, its diagnosis included, and that error is returned.
func (q *Quarantine) Retry(ctx context.Context, id string) (Result, error) {
	rows, err := q.list(ctx, q.p.db, "id = ? OR audit_id = ?", strings.TrimSpace(id))
	if err != nil {
		return Result{}, err
	}
	if len(rows) == 0 {
		return Result{}, fmt.Errorf("%w: %s", ErrNotQuarantined, id)
	}
	return q.retry(ctx, rows[0])
}

// RetryAll retries every quarantined record, oldest first, and returns one
// Result per record. It stops at the first infrastructure error, a portal
// that cannot be read included, and returns the Results so far with it.
func (q *Quarantine) RetryAll(ctx context.Context) ([]Result, error) {
	rows, err := q.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(rows))
	for _, r := range rows {
		res, err := q.retry(ctx, r)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

func (q *Quarantine) retry(ctx context.Context, row Quarantined) (Result, error) {
	p := q.p
	res := Result{AuditID: row.AuditID, QuarantineID: row.ID}
	rec, decodeErr := decodeRecord(row.Record)
	var evs []event.Event
	var enrichErr error
	err := p.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// Deleting first takes the row's lock: a concurrent retry of the same
		// row finds it gone and does nothing.
		del := tx.WithContext(ctx).Exec("DELETE FROM "+QuarantineTable+" WHERE id = ?", row.ID)
		if del.Error != nil {
			return fmt.Errorf("retry %s: %w", row.ID, del.Error)
		}
		if del.RowsAffected == 0 {
			return errDuplicate
		}
		if decodeErr != nil {
			return errQuarantine{decodeErr}
		}
		var err error
		evs, err = p.e.enrich(ctx, p.lookupDB(tx), tx, rec)
		if err == nil {
			err = p.fits(evs)
		}
		if err == nil {
			err = outbox.Write(ctx, tx, evs...)
			if err != nil && !errors.Is(err, event.ErrInvalid) {
				return fmt.Errorf("retry %s: %w", row.ID, err)
			}
		}
		if err != nil {
			return p.fault(ctx, err)
		}
		if row.AuditID == "" {
			return nil
		}
		// The tail may have pruned the id already; then there is nothing to update.
		err = tx.WithContext(ctx).Exec("UPDATE "+ProcessedTable+" SET outcome = ?, processed_at = ? WHERE audit_id = ?",
			string(StatusEnriched), p.encodeTime(time.Now()), row.AuditID).Error
		if err != nil {
			return fmt.Errorf("retry %s: mark enriched: %w", row.ID, err)
		}
		return nil
	})
	var eq errQuarantine
	switch {
	case err == nil:
		res.Status = StatusEnriched
		for _, ev := range evs {
			res.EventIDs = append(res.EventIDs, ev.ID)
		}
		p.log.InfoContext(ctx, "quarantined audit record enriched",
			slog.String("audit_record_id", row.AuditID), slog.String("quarantine_id", row.ID), slog.Int("events", len(evs)))
		return res, nil
	case errors.Is(err, errDuplicate):
		return res, fmt.Errorf("%w: %s (retried concurrently?)", ErrNotQuarantined, row.ID)
	case errors.As(err, &eq):
		enrichErr = eq.err
	default:
		return res, err
	}
	err = p.db.WithContext(ctx).Exec("UPDATE "+QuarantineTable+
		" SET kind = ?, reason = ?, attempts = attempts + 1, last_attempt_at = ? WHERE id = ?",
		kindOf(enrichErr), enrichErr.Error(), p.encodeTime(time.Now()), row.ID).Error
	if err != nil {
		return res, fmt.Errorf("retry %s: record reason: %w", row.ID, err)
	}
	res.Status, res.Kind, res.Reason = StatusQuarantined, kindOf(enrichErr), enrichErr
	return res, nil
}

// wireRecord is the JSON form of an [AuditRecord], as HTTP ingest receives it
// and the quarantine keeps it: the audit table's column names.
type wireRecord struct {
	ID                       string `json:"id"`
	Name                     string `json:"name"`
	SubjectID                string `json:"subject_id,omitempty"`
	SubjectType              string `json:"subject_type,omitempty"`
	TargetID                 string `json:"target_id,omitempty"`
	TargetType               string `json:"target_type,omitempty"`
	ActorID                  string `json:"actor_id"`
	DeletedSubjectIdentifier string `json:"deleted_subject_identifier,omitempty"`
	DeletedTargetIdentifier  string `json:"deleted_target_identifier,omitempty"`
	CreatedOn                string `json:"created_on"`
}

func wireOf(r AuditRecord) wireRecord {
	w := wireRecord{
		ID: r.ID, Name: r.Name, SubjectID: r.SubjectID, SubjectType: r.SubjectType,
		TargetID: r.TargetID, TargetType: r.TargetType, ActorID: r.ActorID,
		DeletedSubjectIdentifier: r.DeletedSubjectIdentifier, DeletedTargetIdentifier: r.DeletedTargetIdentifier,
	}
	if !r.CreatedOn.IsZero() {
		w.CreatedOn = r.CreatedOn.UTC().Format(time.RFC3339Nano)
	}
	return w
}

// decodeRecord reads one JSON audit record. What it could read is returned
// even with an error, so a quarantined record keeps its id and action; the
// error is a *RecordError naming the field.
func decodeRecord(raw []byte) (AuditRecord, error) {
	var w wireRecord
	if err := json.Unmarshal(raw, &w); err != nil {
		var partial struct {
			ID   any `json:"id"`
			Name any `json:"name"`
		}
		_ = json.Unmarshal(raw, &partial) // best effort, for the quarantine's columns
		rec := AuditRecord{}
		rec.ID, _ = partial.ID.(string)
		rec.Name, _ = partial.Name.(string)
		field := "record"
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			field = te.Field
		}
		return rec, &RecordError{RecordID: rec.ID, Field: field, Reason: jsonReason(err)}
	}
	rec := AuditRecord{
		ID: w.ID, Name: w.Name, SubjectID: w.SubjectID, SubjectType: w.SubjectType,
		TargetID: w.TargetID, TargetType: w.TargetType, ActorID: w.ActorID,
		DeletedSubjectIdentifier: w.DeletedSubjectIdentifier, DeletedTargetIdentifier: w.DeletedTargetIdentifier,
	}
	if w.CreatedOn != "" {
		t, err := time.Parse(time.RFC3339Nano, w.CreatedOn)
		if err != nil {
			return rec, &RecordError{RecordID: w.ID, Field: "created_on", Reason: fmt.Sprintf("%q is not an RFC 3339 time", w.CreatedOn)}
		}
		rec.CreatedOn = t.UTC()
	}
	return rec, nil
}

func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("want a JSON %s, got %s", te.Type.Kind(), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "malformed JSON: " + se.Error()
	}
	return err.Error()
}

// nullTime scans a nullable timestamp column of any dialect.
type nullTime struct {
	t     time.Time
	valid bool
}

func (n *nullTime) Scan(v any) error {
	if v == nil {
		*n = nullTime{}
		return nil
	}
	t, err := decodeTime(v)
	if err != nil {
		return err
	}
	*n = nullTime{t: t, valid: true}
	return nil
}

var _ sql.Scanner = (*nullTime)(nil)
