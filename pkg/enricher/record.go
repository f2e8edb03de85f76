package enricher

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// AuditRecord is one row of the portal's audit table (`events`). Nullable
// columns are empty strings; ids are UUIDs in any case the portal wrote.
type AuditRecord struct {
	ID   string // the audit row's own id, carried into every event as audit_record_id
	Name string // the portal's action name, e.g. "data_product_created"

	SubjectID, SubjectType string
	TargetID, TargetType   string
	ActorID                string

	// The portal deletes the entity row but keeps its name here, so an event
	// about a deleted entity can still say what was deleted.
	DeletedSubjectIdentifier, DeletedTargetIdentifier string

	// CreatedOn is the start of the portal transaction that wrote the row,
	// which is when the change happened as far as consumers are concerned.
	CreatedOn time.Time
}

// ErrInvalidRecord is wrapped by every [RecordError].
var ErrInvalidRecord = errors.New("invalid audit record")

// RecordError reports one bad field of an audit record.
type RecordError struct {
	RecordID string // empty when the id itself is missing
	Field    string // the audit table's column name, e.g. "subject_id"
	Reason   string
}

func (e *RecordError) Error() string {
	id := e.RecordID
	if id == "" {
		id = "(no id)"
	}
	return "audit record " + id + ": " + e.Field + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalidRecord) true.
func (e *RecordError) Unwrap() error { return ErrInvalidRecord }

// actionFamily returns the entity type every action of name's family is
// about; that type must be the subject or the target of the record. Actions
// outside the known families have no rule (they are unmapped anyway).
func actionFamily(name string) (string, bool) {
	// data_product_dataset_link_* belongs to data_product_: its records name a
	// data product on one side, whatever the orientation.
	for _, typ := range []string{portalDataProduct, portalDataset, portalDataOutput} {
		if strings.HasPrefix(name, typ+"_") {
			return typ, true
		}
	}
	return "", false
}

// normalize validates rec and returns it with canonical (lower-case) UUIDs
// and a UTC time, so that lookups match the portal's stored ids and events
// carry one spelling of each id. All problems are reported at once.
func (rec AuditRecord) normalize() (AuditRecord, error) {
	var errs []error
	bad := func(field, reason string) {
		errs = append(errs, &RecordError{RecordID: rec.ID, Field: field, Reason: reason})
	}
	canonical := func(field string, v *string, required bool) {
		if *v == "" {
			if required {
				bad(field, "required")
			}
			return
		}
		u, err := uuid.Parse(*v)
		if err != nil || len(*v) != 36 {
			bad(field, fmt.Sprintf("%q is not a UUID", *v))
			return
		}
		*v = u.String()
	}

	if rec.ID != "" {
		if u, err := uuid.Parse(rec.ID); err == nil && len(rec.ID) == 36 {
			rec.ID = u.String()
		} else {
			// Keep a malformed id out of the "audit record <id>:" prefix of
			// this and later errors; it is quoted in the reason instead.
			raw := rec.ID
			rec.ID = ""
			bad("id", fmt.Sprintf("%q is not a UUID", raw))
		}
	} else {
		bad("id", "required")
	}
	if strings.TrimSpace(rec.Name) == "" {
		bad("name", "required")
	}
	canonical("actor_id", &rec.ActorID, true)
	canonical("subject_id", &rec.SubjectID, false)
	canonical("target_id", &rec.TargetID, false)
	if rec.CreatedOn.IsZero() {
		bad("created_on", "required")
	}
	rec.CreatedOn = rec.CreatedOn.UTC()

	// An id without a type (or the reverse) cannot be oriented.
	pair := func(side, id, typ string) {
		switch {
		case typ != "" && id == "":
			bad(side+"_id", fmt.Sprintf("required (%s_type is %q)", side, typ))
		case typ == "" && id != "":
			bad(side+"_type", fmt.Sprintf("required (%s_id is set)", side))
		}
	}
	pair("subject", rec.SubjectID, rec.SubjectType)
	pair("target", rec.TargetID, rec.TargetType)

	if family, ok := actionFamily(rec.Name); ok && rec.SubjectType != family && rec.TargetType != family {
		// The portal may put the family's entity on either side, so only a
		// record that names it on neither side is wrong.
		bad("subject_type", fmt.Sprintf("%q does not match action %q: want a %s as subject or target", rec.SubjectType, rec.Name, family))
	}
	if len(errs) > 0 {
		return AuditRecord{}, errors.Join(errs...)
	}
	return rec, nil
}

// entityRef is one side of a record: the entity's id and, when the portal
// deleted it, the name it had.
type entityRef struct {
	id, deletedName string
}

// side finds the entity of portal type typ among subject and target. The
// portal flips subject and target depending on where an action started, so
// position means nothing; the type decides. When both sides have the type
// the subject wins, since the action is named after it.
func (rec AuditRecord) side(typ string) (entityRef, bool) {
	switch typ {
	case rec.SubjectType:
		return entityRef{id: rec.SubjectID, deletedName: rec.DeletedSubjectIdentifier}, true
	case rec.TargetType:
		return entityRef{id: rec.TargetID, deletedName: rec.DeletedTargetIdentifier}, true
	}
	return entityRef{}, false
}
