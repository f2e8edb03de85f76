package enricher

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
)

// The lookups read the portal's tables with plain SQL through gorm: "?"
// placeholders (gorm rebinds them per dialect), no dialect-specific functions,
// so the same text runs on SQLite, PostgreSQL and MySQL. They run on the
// portal handle the caller gives (its transaction, unless the portal is a
// database of its own), so they see the state it sees. Timestamps are
// compared in Go, not SQL: SQLite holds them as text in more than one layout.

// errRowMissing is returned by a loader when the entity row does not exist.
var errRowMissing = errors.New("row missing")

// query runs q and calls scan once per row. Rows are closed before it
// returns, so the next query can reuse a transaction's single connection.
func query(ctx context.Context, db *gorm.DB, scan func(*sql.Rows) error, q string, args ...any) error {
	rows, err := db.WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }() // rows.Err reports what matters
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// refOf turns a LEFT JOINed (id, name) pair into a *Ref, nil when absent.
func refOf(id, name sql.NullString) *Ref {
	if !id.Valid {
		return nil
	}
	return &Ref{ID: id.String, Name: name.String}
}

func loadDataProduct(ctx context.Context, db *gorm.DB, id string, prov Provenance) (entityData, error) {
	dp := &DataProduct{Settings: map[string]string{}, TeamMembers: []TeamMember{}, Provenance: prov}
	found := false
	err := query(ctx, db, func(r *sql.Rows) error {
		var desc, domainID, domainName, typeID, typeName sql.NullString
		if err := r.Scan(&dp.ID, &dp.Name, &dp.Namespace, &desc, &dp.Status, &domainID, &domainName, &typeID, &typeName); err != nil {
			return err
		}
		dp.Description, dp.Domain, dp.Type = desc.String, refOf(domainID, domainName), refOf(typeID, typeName)
		found = true
		return nil
	}, `SELECT dp.id, dp.name, dp.namespace, dp.description, dp.status, d.id, d.name, t.id, t.name
FROM data_products dp
LEFT JOIN domains d ON d.id = dp.domain_id
LEFT JOIN data_product_types t ON t.id = dp.type_id
WHERE dp.id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("look up data product %s: %w", id, err)
	}
	if !found {
		return nil, errRowMissing
	}

	err = query(ctx, db, func(r *sql.Rows) error {
		var name, value string
		if err := r.Scan(&name, &value); err != nil {
			return err
		}
		dp.Settings[name] = value
		return nil
	}, `SELECT name, value FROM data_product_settings WHERE data_product_id = ? ORDER BY name`, id)
	if err != nil {
		return nil, fmt.Errorf("look up settings of data product %s: %w", id, err)
	}

	// Only approved assignments make someone a member; pending and denied
	// requests are not part of the team.
	err = query(ctx, db, func(r *sql.Rows) error {
		var m TeamMember
		var role sql.NullString
		if err := r.Scan(&m.User.ID, &m.User.Email, &role); err != nil {
			return err
		}
		m.Role = role.String
		dp.TeamMembers = append(dp.TeamMembers, m)
		return nil
	}, `SELECT ra.user_id, u.email, r.name
FROM role_assignments_data_product ra
JOIN users u ON u.id = ra.user_id
LEFT JOIN roles r ON r.id = ra.role_id
WHERE ra.data_product_id = ? AND ra.decision = 'approved'
ORDER BY u.email, ra.user_id`, id)
	if err != nil {
		return nil, fmt.Errorf("look up team of data product %s: %w", id, err)
	}
	return dp, nil
}

func loadOutputPort(ctx context.Context, db *gorm.DB, id string, prov Provenance) (entityData, error) {
	op := &OutputPort{Provenance: prov}
	found := false
	err := query(ctx, db, func(r *sql.Rows) error {
		found = true
		return r.Scan(&op.ID, &op.Name, &op.Namespace, &op.DataProductID, &op.AccessType, &op.Status)
	}, `SELECT id, name, namespace, data_product_id, access_type, status FROM datasets WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("look up output port %s: %w", id, err)
	}
	if !found {
		return nil, errRowMissing
	}
	return op, nil
}

func loadTechnicalAsset(ctx context.Context, db *gorm.DB, id string, prov Provenance) (entityData, error) {
	ta := &TechnicalAsset{Provenance: prov}
	var config sql.NullString
	found := false
	err := query(ctx, db, func(r *sql.Rows) error {
		found = true
		return r.Scan(&ta.ID, &ta.Name, &ta.Namespace, &ta.DataProductID, &ta.Platform, &ta.Service, &config, &ta.Status)
	}, `SELECT id, name, namespace, owner_id, platform_id, service_id, configuration, status FROM data_outputs WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("look up technical asset %s: %w", id, err)
	}
	if !found {
		return nil, errRowMissing
	}
	if ta.Configuration, err = jsonObject(config.String); err != nil {
		return nil, fmt.Errorf("technical asset %s: configuration: %w", id, err)
	}
	return ta, nil
}

// publishedAssets reads the technical assets published on an output port
// (approved data_outputs_datasets rows), ordered by namespace.
func publishedAssets(ctx context.Context, db *gorm.DB, port string) ([]TechnicalAssetRef, error) {
	out := []TechnicalAssetRef{}
	err := query(ctx, db, func(r *sql.Rows) error {
		var a TechnicalAssetRef
		var config sql.NullString
		if err := r.Scan(&a.ID, &a.Name, &a.Namespace, &a.DataProductID, &a.Platform, &a.Service, &config); err != nil {
			return err
		}
		var err error
		if a.Configuration, err = jsonObject(config.String); err != nil {
			return fmt.Errorf("technical asset %s: configuration: %w", a.ID, err)
		}
		out = append(out, a)
		return nil
	}, `SELECT o.id, o.name, o.namespace, o.owner_id, o.platform_id, o.service_id, o.configuration
FROM data_outputs_datasets l
JOIN data_outputs o ON o.id = l.data_output_id
WHERE l.dataset_id = ? AND l.status = 'approved'
ORDER BY o.namespace, o.id`, port)
	if err != nil {
		return nil, fmt.Errorf("look up technical assets of output port %s: %w", port, err)
	}
	return out, nil
}

// jsonObject decodes a stored JSON object. Numbers keep their digits
// (json.Number), so a large integer survives; re-encoding sorts the keys, so
// PostgreSQL's jsonb and SQLite's text give the same bytes.
func jsonObject(s string) (map[string]any, error) {
	if strings.TrimSpace(s) == "" {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil {
		return nil, errors.New("not a JSON object: null")
	}
	return m, nil
}

// queryRef runs an entitySpec's refQuery for id into out. found is false
// when there is no such row.
func queryRef(ctx context.Context, db *gorm.DB, q, id string, out *entityFacts) (found bool, err error) {
	err = query(ctx, db, func(r *sql.Rows) error {
		var owner sql.NullString
		if err := r.Scan(&out.name, &out.namespace, &owner); err != nil {
			return err
		}
		out.owner, found = owner.String, true
		return nil
	}, q, id)
	return found, err
}

// loadUser names a user. A user row the portal deleted is not an error: the
// audit row may have kept the e-mail (a removed role assignment does).
func loadUser(ctx context.Context, db *gorm.DB, side entityRef) (UserRef, error) {
	u := UserRef{ID: side.id, Email: side.deletedName}
	err := query(ctx, db, func(r *sql.Rows) error { return r.Scan(&u.Email) },
		`SELECT email FROM users WHERE id = ?`, side.id)
	if err != nil {
		return UserRef{}, fmt.Errorf("look up user %s: %w", side.id, err)
	}
	return u, nil
}

// inputPortRow is the portal's data_products_datasets row: the input port
// as the portal holds it now, which may be a later request's than the
// record's.
type inputPortRow struct {
	id, justification                   string
	requestedBy, approvedBy             *UserRef
	requestedOn, approvedOn, validUntil *time.Time
}

// loadInputPort reads the portal's row for the consumer and output port, the
// most recently requested if there are several; errRowMissing when there is
// none.
func loadInputPort(ctx context.Context, db *gorm.DB, consumer, port string) (inputPortRow, error) {
	var ip inputPortRow
	found := false
	err := query(ctx, db, func(r *sql.Rows) error {
		var justification, reqID, reqEmail, apprID, apprEmail sql.NullString
		var reqOn, apprOn, validUntil any
		if err := r.Scan(&ip.id, &justification, &reqID, &reqEmail, &reqOn, &apprID, &apprEmail, &apprOn, &validUntil); err != nil {
			return err
		}
		found = true
		ip.justification = justification.String
		ip.requestedBy, ip.approvedBy = userOf(reqID, reqEmail), userOf(apprID, apprEmail)
		var err error
		if ip.requestedOn, err = optionalTime(reqOn); err != nil {
			return fmt.Errorf("requested_on: %w", err)
		}
		if ip.approvedOn, err = optionalTime(apprOn); err != nil {
			return fmt.Errorf("approved_on: %w", err)
		}
		if ip.validUntil, err = optionalTime(validUntil); err != nil {
			return fmt.Errorf("valid_until: %w", err)
		}
		return nil
	}, `SELECT l.id, l.justification, l.requested_by_id, ru.email, l.requested_on, l.approved_by_id, au.email, l.approved_on, l.valid_until
FROM data_products_datasets l
LEFT JOIN users ru ON ru.id = l.requested_by_id
LEFT JOIN users au ON au.id = l.approved_by_id
WHERE l.data_product_id = ? AND l.dataset_id = ?
ORDER BY CASE WHEN l.requested_on IS NULL THEN 1 ELSE 0 END, l.requested_on DESC, l.id DESC
LIMIT 1`, consumer, port)
	if err != nil {
		return inputPortRow{}, fmt.Errorf("look up input port of data product %s on output port %s: %w", consumer, port, err)
	}
	if !found {
		return inputPortRow{}, errRowMissing
	}
	ip.id = strings.ToLower(ip.id)
	return ip, nil
}

// userOf turns a LEFT JOINed user id and e-mail into a *UserRef, nil when
// the id is NULL.
func userOf(id, email sql.NullString) *UserRef {
	if !id.Valid {
		return nil
	}
	return &UserRef{ID: id.String, Email: email.String}
}

// assignment is a role_assignments_data_product row.
type assignment struct {
	decision, role string
}

// loadAssignment reads the user's role assignment on a data product,
// preferring an approved one.
func loadAssignment(ctx context.Context, db *gorm.DB, dataProduct, user string) (assignment, error) {
	var a assignment
	found := false
	err := query(ctx, db, func(r *sql.Rows) error {
		var role sql.NullString
		if err := r.Scan(&a.decision, &role); err != nil {
			return err
		}
		a.role, found = role.String, true
		return nil
	}, `SELECT ra.decision, r.name
FROM role_assignments_data_product ra
LEFT JOIN roles r ON r.id = ra.role_id
WHERE ra.data_product_id = ? AND ra.user_id = ?
ORDER BY CASE ra.decision WHEN 'approved' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, ra.id
LIMIT 1`, dataProduct, user)
	if err != nil {
		return assignment{}, fmt.Errorf("look up role assignment of user %s on data product %s: %w", user, dataProduct, err)
	}
	if !found {
		return assignment{}, errRowMissing
	}
	return a, nil
}

// The audit trail: lookups in the portal's events table. Which actions to
// look for comes from the rules, by event type, so a renamed or added portal
// action mapped in configuration is found too.

// trailRow is one audit row as the trail lookups read it.
type trailRow struct {
	id, name, actorID                   string
	subjectID, subjectType, subjectGone string
	targetID, targetType, targetGone    string
	createdOn                           time.Time
}

// trail reads the audit rows of actions that name id (and, when other is
// not "", other on the opposite side), oldest first by (created_on, id).
func trail(ctx context.Context, db *gorm.DB, actions []string, id, other string) ([]trailRow, error) {
	if len(actions) == 0 {
		return nil, nil
	}
	where, args := `(subject_id = ? OR target_id = ?)`, []any{actions, id, id}
	if other != "" {
		where, args = `((subject_id = ? AND target_id = ?) OR (subject_id = ? AND target_id = ?))`, []any{actions, id, other, other, id}
	}
	var rows []trailRow
	err := query(ctx, db, func(r *sql.Rows) error {
		var t trailRow
		var sid, styp, sgone, tid, ttyp, tgone sql.NullString
		var created any
		if err := r.Scan(&t.id, &t.name, &t.actorID, &sid, &styp, &sgone, &tid, &ttyp, &tgone, &created); err != nil {
			return err
		}
		ct, err := optionalTime(created)
		if err != nil {
			return fmt.Errorf("audit record %s: created_on: %w", t.id, err)
		}
		if ct != nil {
			t.createdOn = *ct
		}
		t.id, t.actorID = strings.ToLower(t.id), strings.ToLower(t.actorID)
		t.subjectID, t.targetID = strings.ToLower(sid.String), strings.ToLower(tid.String)
		t.subjectType, t.subjectGone, t.targetType, t.targetGone = styp.String, sgone.String, ttyp.String, tgone.String
		rows = append(rows, t)
		return nil
	}, `SELECT id, name, actor_id, subject_id, subject_type, deleted_subject_identifier, target_id, target_type, deleted_target_identifier, created_on
FROM events WHERE name IN (?) AND `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read the audit trail of %s: %w", id, err)
	}
	sortTrail(rows)
	return rows, nil
}

// sortTrail orders audit rows as they are processed: created_on, then id.
func sortTrail(rows []trailRow) {
	slices.SortStableFunc(rows, func(a, b trailRow) int {
		if c := a.createdOn.Compare(b.createdOn); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
}

// before reports whether row a happened before the record at (t, id), in the
// order audit records are processed: created_on, then id.
func (a trailRow) before(t time.Time, id string) bool {
	if c := a.createdOn.Compare(t); c != 0 {
		return c < 0
	}
	return a.id < id
}

// removed is the audit row that deleted an entity: the name the portal kept
// there, and when.
type removed struct {
	name string
	at   time.Time
}

// removal finds the latest audit row that deleted the entity of kind with
// id. ok is false when no such row is visible.
func (t Rules) removal(ctx context.Context, db *gorm.DB, kindName, id string) (_ removed, ok bool, err error) {
	rows, err := trail(ctx, db, sortedKeys(t.actionsFor(kindName, VerbDeleted)), id, "")
	if err != nil || len(rows) == 0 {
		return removed{}, false, err
	}
	last := rows[len(rows)-1]
	if last.subjectID == id {
		return removed{last.subjectGone, last.createdOn}, true, nil
	}
	return removed{last.targetGone, last.createdOn}, true, nil
}

// creationOwner finds the data product that owned an output port or
// technical asset from the audit row that created it (the portal records the
// owner there); "" when there is none.
func (t Rules) creationOwner(ctx context.Context, db *gorm.DB, kindName, id string) (string, error) {
	rows, err := trail(ctx, db, sortedKeys(t.actionsFor(kindName, VerbCreated)), id, "")
	if err != nil {
		return "", err
	}
	for _, r := range rows {
		switch {
		case r.subjectID == id && r.targetType == portalDataProduct:
			return r.targetID, nil
		case r.targetID == id && r.subjectType == portalDataProduct:
			return r.subjectID, nil
		}
	}
	return "", nil
}

// inputPortHistory is what the audit trail of one consumer and output port
// says about the request an input-port record belongs to.
type inputPortHistory struct {
	previous string // the verb of the last action before the record; "" for the first
	// request is the requested row the record's cycle began with, the record
	// itself for a request; nil when the trail does not reach back to it.
	request *trailRow
	// approval is the latest approval of that cycle at or before the
	// record, the record itself for an approval.
	approval *trailRow
	// laterRequest: a request after the record exists, so the portal's row
	// describes a later cycle than the record's.
	laterRequest bool
}

// inputPortHistory reads the trail of the consumer and output port around
// rec, whose verb is verb. rec itself need not be in the trail (a record
// POSTed to ingest may not be).
func (t Rules) inputPortHistory(ctx context.Context, db *gorm.DB, rec AuditRecord, verb, consumer, port string) (inputPortHistory, error) {
	actions := t.actionsFor("input_port", "")
	rows, err := trail(ctx, db, sortedKeys(actions), consumer, port)
	if err != nil {
		return inputPortHistory{}, err
	}
	var h inputPortHistory
	for i := range rows {
		r := &rows[i]
		if r.id == rec.ID {
			continue
		}
		v := actions[r.name]
		if !r.before(rec.CreatedOn, rec.ID) {
			h.laterRequest = h.laterRequest || v == "requested"
			continue
		}
		h.previous = v
		switch v {
		case "requested":
			h.request, h.approval = r, nil
		case "approved":
			h.approval = r
		}
	}
	self := &trailRow{id: rec.ID, name: rec.Name, actorID: rec.ActorID, createdOn: rec.CreatedOn}
	switch verb {
	case "requested":
		h.request, h.approval = self, nil
	case "approved":
		h.approval = self
	}
	return h, nil
}

// publishedOnDeleted replays the port_asset actions of the audit trail
// naming a deleted output port and returns the technical assets they leave
// published on it, by id: what was published when it was deleted, since the
// portal's link rows went with it.
func (t Rules) publishedOnDeleted(ctx context.Context, db *gorm.DB, port string) ([]entityRef, error) {
	actions := t.actionsFor("port_asset", "")
	rows, err := trail(ctx, db, sortedKeys(actions), port, "")
	if err != nil {
		return nil, err
	}
	linked := map[string]entityRef{}
	for _, r := range rows {
		asset := entityRef{id: r.subjectID, deletedName: r.subjectGone}
		if r.subjectID == port {
			asset = entityRef{id: r.targetID, deletedName: r.targetGone}
		}
		switch actions[r.name] {
		case "linked":
			linked[asset.id] = asset
		case "unlinked":
			delete(linked, asset.id)
		}
	}
	out := make([]entityRef, 0, len(linked))
	for _, id := range slices.Sorted(maps.Keys(linked)) {
		out = append(out, linked[id])
	}
	return out, nil
}

// assignmentRemoved reports whether the audit trail removes the user from
// the data product's team.
func (t Rules) assignmentRemoved(ctx context.Context, db *gorm.DB, dataProduct, user string) (bool, error) {
	rows, err := trail(ctx, db, sortedKeys(t.actionsFor("team_member", "removed")), dataProduct, user)
	return len(rows) > 0, err
}

// optionalTime reads a nullable timestamp column as PostgreSQL drivers
// (time.Time) and SQLite (text) return it, in UTC. A time without a zone is
// UTC, as the portal writes UTC.
func optionalTime(v any) (*time.Time, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return nil, nil
	case time.Time:
		t := x.UTC()
		return &t, nil
	case string:
		s = x
	case []byte:
		s = string(x)
	default:
		return nil, fmt.Errorf("unexpected %T", v)
	}
	s = strings.TrimSpace(s)
	for _, layout := range []string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05.999999999",
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999",
		"2006-01-02 15:04:05.999999999 -0700 MST",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			t = t.UTC()
			return &t, nil
		}
	}
	return nil, fmt.Errorf("%q is not a timestamp", s)
}
