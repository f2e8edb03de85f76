package enricher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"gorm.io/gorm"
)

// kind is one kind of business entity Herald emits events about: its verbs,
// the roles a record of it names, and how to read what its events carry.
// Rules refer to kinds by name; adding a kind is adding a constructor to
// kindsByName.
type kind struct {
	name         string // in event types and schema paths, e.g. "output_port"
	doc          string // what the entity is, for the catalogue
	subject      string // the event subject's pattern, for the catalogue
	partitionKey string // what the partition key is, for the catalogue
	keyWhy       string // why, when it is not obvious
	roles        []role
	verbs        []verbSpec
	// shapes are zero values of the data of a verb's events: one shape, or
	// the live shape and DeletedEntity when the entity may be gone.
	shapes func(verb string) []any
	build  func(ctx context.Context, db *gorm.DB, c call) (built, error)
}

// role is one entity a record of the kind names, found by its portal type on
// whichever side (subject or target) it is.
type role struct {
	name       string
	portalType string // the default type; a rule may spell it otherwise
}

type verbSpec struct {
	name string
	doc  string // one sentence: what happened, for the catalogue
}

func (k *kind) verbNames() []string {
	out := make([]string, len(k.verbs))
	for i, v := range k.verbs {
		out[i] = v.name
	}
	return out
}

func (k *kind) roleNames() []string {
	out := make([]string, len(k.roles))
	for i, r := range k.roles {
		out[i] = r.name
	}
	return out
}

// call is one record on its way through a kind's build.
type call struct {
	rec   AuditRecord
	verb  string
	sides map[string]entityRef // by role name
	prov  Provenance
	rules Rules // the whole table, for audit-trail lookups by event type
	log   *slog.Logger
	state stateStore // the entities' last known state, in the outbox's database
	now   func() time.Time
}

// readAt is the as_of of data read at enrichment: now, when the lookups
// read it, or the record's own time when that is later (a portal clock
// ahead of Herald's, or a replay). Finding the entity's latest audited
// change instead would read its whole audit trail for every record, which
// turns a bulk change of one entity quadratic.
func (c call) readAt() time.Time {
	now := c.now().UTC()
	if c.rec.CreatedOn.After(now) {
		return c.rec.CreatedOn
	}
	return now
}

// built is what a kind's build returns.
type built struct {
	data    any
	subject string
	key     string // the partition key
	skip    string // non-empty: no event on purpose, and why
	// remember, when set, makes the event's data the entity's last known
	// state.
	remember *remembered
}

// remembered names the entity whose state an event's data is.
type remembered struct {
	kind, id string
	asOf     time.Time
}

// kindsByName returns every kind, built anew so no caller can change
// another's.
func kindsByName() map[string]*kind {
	out := map[string]*kind{}
	for _, k := range []*kind{
		dataProductSpec().kind(), outputPortSpec().kind(), technicalAssetSpec().kind(),
		portAssetKind(), inputPortKind(), teamMemberKind(), outputPortMemberKind(),
	} {
		out[k.name] = k
	}
	return out
}

// kindOrder is the order of kinds in the catalogue.
func kindOrder() []string {
	return []string{"data_product", "output_port", "technical_asset", "port_asset", "input_port", "team_member", "output_port_member"}
}

// entityFacts is what names an entity in the data of another event.
type entityFacts struct {
	id, name, namespace string
	owner               string // the owning data product; a data product owns itself
}

// entityData is the data of an entity kind's live events: read from the
// entity's row, or decoded from its last known state.
type entityData interface {
	facts() entityFacts
	setAsOf(time.Time)
	with(Provenance) entityData
}

func (d *DataProduct) facts() entityFacts {
	return entityFacts{id: d.ID, name: d.Name, namespace: d.Namespace, owner: d.ID}
}

func (d *OutputPort) facts() entityFacts {
	return entityFacts{id: d.ID, name: d.Name, namespace: d.Namespace, owner: d.DataProductID}
}

func (d *TechnicalAsset) facts() entityFacts {
	return entityFacts{id: d.ID, name: d.Name, namespace: d.Namespace, owner: d.DataProductID}
}

// loadOnce is load, read once per entity in a batch of records (see
// withLoadMemo): a bulk change of one entity then costs one read, not one
// per record. asOf is when the row was read, never before the record.
func (s entitySpec) loadOnce(ctx context.Context, db *gorm.DB, id string, c call) (entityData, time.Time, error) {
	memo, _ := ctx.Value(loadMemoKey{}).(loadMemo)
	if hit, ok := memo[memoKey{kind: s.name, id: id}]; ok {
		return hit.data.with(c.prov), laterOf(hit.at, c.rec.CreatedOn), nil
	}
	data, err := s.load(ctx, db, id, c.prov)
	if err != nil {
		return nil, time.Time{}, err
	}
	at := c.readAt()
	if memo != nil {
		memo[memoKey{kind: s.name, id: id}] = memoEntry{data: data.with(Provenance{}), at: at}
	}
	return data, at, nil
}

// loadMemo holds the entities read for one batch of records, which is
// handled in one transaction within milliseconds: every record of the batch
// sees the entity as it was read for the first.
type loadMemo map[memoKey]memoEntry

type memoKey struct{ kind, id string }

type memoEntry struct {
	data entityData
	at   time.Time
}

type loadMemoKey struct{}

// withLoadMemo returns a context in which each entity is read once.
func withLoadMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, loadMemoKey{}, loadMemo{})
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// with returns a copy of the data with another record's provenance. The
// copies share maps and slices, which nothing changes after the read.
func (d *DataProduct) with(p Provenance) entityData    { c := *d; c.Provenance = p; return &c }
func (d *OutputPort) with(p Provenance) entityData     { c := *d; c.Provenance = p; return &c }
func (d *TechnicalAsset) with(p Provenance) entityData { c := *d; c.Provenance = p; return &c }

func (d *DataProduct) setAsOf(t time.Time)    { d.AsOf = t }
func (d *OutputPort) setAsOf(t time.Time)     { d.AsOf = t }
func (d *TechnicalAsset) setAsOf(t time.Time) { d.AsOf = t }

// entitySpec describes an entity kind: a portal table with one row per
// entity, created, updated and deleted.
type entitySpec struct {
	name       string // e.g. "output_port"
	portalType string // subject_type/target_type in the audit table, e.g. "dataset"
	collection string // the subject prefix, e.g. "output_ports"
	doc        string
	keyDoc     string
	shape      any // the live data's zero value
	gone       any // the zero value of a deletion's data

	// load reads the live row as the event data. It returns errRowMissing
	// when the row is gone.
	load func(ctx context.Context, db *gorm.DB, id string, prov Provenance) (entityData, error)
	// decode reads a remembered state: the data of an earlier live event.
	decode func(data []byte) (entityData, error)
	// deleted is a deletion's data: what the audit trail knows, and the
	// last known state (nil when there is none).
	deleted func(gone DeletedEntity, last entityData) any
	// refQuery, when set, selects name, namespace and owner id (NULL for a
	// data product) of the row with id ?, to name the entity in another
	// event more cheaply than load; without it load names it.
	refQuery string
}

func (s entitySpec) kind() *kind {
	why := ""
	if s.name != "data_product" {
		why = "Once the " + s.readable() + " is deleted, the owner comes from the audit record, from what Herald last knew of it " +
			"or from the audit row that created it; only when none names one is the " + s.readable() + "'s own id used (and a warning logged)."
	}
	atEnrichment := " The data is the " + s.readable() + " as Herald read it when it processed the record (at enrichment), " +
		"so a record processed late carries later changes too; as_of is when Herald read it."
	return &kind{
		name:         s.name,
		doc:          s.doc,
		subject:      s.collection + "/{id}",
		partitionKey: s.keyDoc,
		keyWhy:       why,
		roles:        []role{{name: s.name, portalType: s.portalType}},
		verbs: []verbSpec{
			{VerbCreated, s.indefinite() + " was created." + atEnrichment},
			{VerbUpdated, s.indefinite() + " was changed; the data is the whole " + s.readable() + "." + atEnrichment},
			{VerbDeleted, s.indefinite() + " was deleted: tear down what was provisioned for it. The data names it as the " +
				"deletion left it (as_of is the deletion) and carries in last_known the " + s.readable() + " as Herald last " +
				"described it, since the portal's row is gone."},
		},
		shapes: func(verb string) []any {
			if verb == VerbDeleted {
				return []any{s.gone}
			}
			return []any{s.shape, DeletedEntity{}}
		},
		build: s.build,
	}
}

// indefinite is readable with its article, to start a sentence.
func (s entitySpec) indefinite() string {
	if s.name == "output_port" {
		return "An " + s.readable()
	}
	return "A " + s.readable()
}

func (s entitySpec) readable() string {
	switch s.name {
	case "data_product":
		return "data product"
	case "output_port":
		return "output port"
	default:
		return "technical asset"
	}
}

// decodeAs decodes a remembered state into a new T.
func decodeAs[T any, P interface {
	*T
	entityData
}](data []byte) (entityData, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return P(&v), nil
}

func dataProductSpec() entitySpec {
	return entitySpec{
		name: "data_product", portalType: portalDataProduct, collection: "data_products",
		doc:    "A data product: a team's unit of data ownership, with its settings and team.",
		keyDoc: "the data product's own id",
		shape:  DataProduct{}, gone: DeletedDataProduct{},
		load:   loadDataProduct,
		decode: decodeAs[DataProduct],
		deleted: func(gone DeletedEntity, last entityData) any {
			d := DeletedDataProduct{DeletedEntity: gone}
			d.LastKnown, _ = last.(*DataProduct)
			return d
		},
		refQuery: `SELECT name, namespace, NULL FROM data_products WHERE id = ?`,
		// The team is part of a data product's data.
	}
}

func outputPortSpec() entitySpec {
	return entitySpec{
		name: "output_port", portalType: portalDataset, collection: "output_ports",
		doc:    "An output port (the portal's legacy name: dataset): what a data product offers others to read.",
		keyDoc: "the owning data product's id",
		shape:  OutputPort{}, gone: DeletedOutputPort{},
		load:   loadOutputPort,
		decode: decodeAs[OutputPort],
		deleted: func(gone DeletedEntity, last entityData) any {
			d := DeletedOutputPort{DeletedEntity: gone}
			d.LastKnown, _ = last.(*OutputPort)
			return d
		},
	}
}

func technicalAssetSpec() entitySpec {
	return entitySpec{
		name: "technical_asset", portalType: portalDataOutput, collection: "technical_assets",
		doc:    "A technical asset (the portal's legacy name: data output): storage a data product writes, such as an S3 prefix.",
		keyDoc: "the owning data product's id",
		shape:  TechnicalAsset{}, gone: DeletedTechnicalAsset{},
		load:   loadTechnicalAsset,
		decode: decodeAs[TechnicalAsset],
		deleted: func(gone DeletedEntity, last entityData) any {
			d := DeletedTechnicalAsset{DeletedEntity: gone}
			d.LastKnown, _ = last.(*TechnicalAsset)
			return d
		},
	}
}

// build reads the entity a record is about. When its row is gone, a deletion
// expects that and names the entity itself; any other action must be
// explained by a later deletion, or the portal and the audit trail disagree
// and an empty event would hide it.
func (s entitySpec) build(ctx context.Context, db *gorm.DB, c call) (built, error) {
	ref := c.sides[s.name]
	out := built{subject: s.collection + "/" + ref.id}
	data, asOf, err := s.loadOnce(ctx, db, ref.id, c)
	switch {
	case err == nil:
		data.setAsOf(asOf)
		out.data, out.key = data, data.facts().owner
		out.remember = &remembered{kind: s.name, id: ref.id, asOf: asOf}
		return out, nil
	case !errors.Is(err, errRowMissing):
		return built{}, err
	}

	gone := DeletedEntity{ID: ref.id, Name: ref.deletedName, Deleted: true, AsOf: c.rec.CreatedOn, Provenance: c.prov}
	if c.verb != VerbDeleted {
		rm, ok, err := c.rules.removal(ctx, db, s.name, ref.id)
		if err != nil {
			return built{}, err
		}
		if !ok {
			return built{}, fmt.Errorf("%s %s: %w", s.portalType, ref.id, ErrEntityNotFound)
		}
		gone.Name, gone.AsOf = rm.name, rm.at
	}
	last, err := s.lastKnown(ctx, c.state, ref.id)
	if err != nil {
		return built{}, err
	}
	if gone.Name == "" && last != nil {
		gone.Name = last.facts().name
	}
	owner, err := s.deletedOwner(ctx, db, c, last)
	if err != nil {
		return built{}, err
	}
	if owner == "" {
		// Ordering with the owner's other events is lost, but the event still
		// goes out under a stable key of its own rather than not at all.
		c.log.WarnContext(ctx, "owning data product of deleted entity unknown; partitioning by the entity itself",
			slog.String("audit_record_id", c.rec.ID), slog.String("entity", s.name), slog.String("id", ref.id))
		owner = ref.id
	} else if owner != ref.id {
		gone.DataProductID = owner
	}
	out.key = owner
	out.data = gone
	if c.verb == VerbDeleted {
		out.data = s.deleted(gone, last)
	}
	return out, nil
}

// lastKnown is the entity's remembered state, nil when there is none.
func (s entitySpec) lastKnown(ctx context.Context, st stateStore, id string) (entityData, error) {
	raw, err := st.get(ctx, s.name, id)
	if err != nil || raw == nil {
		return nil, err
	}
	d, err := s.decode(raw)
	if err != nil {
		return nil, fmt.Errorf("last known state of %s %s: %w", s.name, id, err)
	}
	return d, nil
}

// deletedOwner finds the data product a deleted entity belonged to: a data
// product owns itself; an output port or technical asset is owned by the
// data product its record names, else by the one Herald last knew, else by
// the one its creation's audit row names. "" when nothing says.
func (s entitySpec) deletedOwner(ctx context.Context, db *gorm.DB, c call, last entityData) (string, error) {
	ref := c.sides[s.name]
	if s.name == "data_product" {
		return ref.id, nil
	}
	if dp, ok := c.rec.side(portalDataProduct); ok {
		return dp.id, nil
	}
	if last != nil && last.facts().owner != "" {
		return last.facts().owner, nil
	}
	return c.rules.creationOwner(ctx, db, s.name, ref.id)
}

// described is an entity as another event names it.
type described struct {
	entityFacts
	deleted bool
	data    entityData // the row or the last known state; nil when neither was read
}

// describe names the entity id of this kind for an event about something
// else: from its row, or once it is deleted from the audit trail (the
// record's own deleted_*_identifier first) and its last known state.
// ErrEntityNotFound when no deletion explains a missing row.
func (s entitySpec) describe(ctx context.Context, db *gorm.DB, c call, side entityRef) (described, error) {
	out := described{entityFacts: entityFacts{id: side.id}}
	if s.refQuery != "" {
		found, err := queryRef(ctx, db, s.refQuery, side.id, &out.entityFacts)
		if err != nil {
			return described{}, fmt.Errorf("look up %s %s: %w", s.name, side.id, err)
		}
		if found {
			return out, nil
		}
	} else {
		data, err := s.load(ctx, db, side.id, Provenance{})
		if err == nil {
			out.entityFacts, out.data = data.facts(), data
			return out, nil
		}
		if !errors.Is(err, errRowMissing) {
			return described{}, err
		}
	}

	out.deleted = true
	out.name = side.deletedName
	if out.name == "" {
		rm, ok, err := c.rules.removal(ctx, db, s.name, side.id)
		if err != nil {
			return described{}, err
		}
		if !ok {
			return described{}, fmt.Errorf("%s %s: %w", s.portalType, side.id, ErrEntityNotFound)
		}
		out.name = rm.name
	}
	last, err := s.lastKnown(ctx, c.state, side.id)
	if err != nil {
		return described{}, err
	}
	if last != nil {
		f := last.facts()
		out.data, out.namespace, out.owner = last, f.namespace, f.owner
		if out.name == "" {
			out.name = f.name
		}
	}
	if s.name != "data_product" && out.owner == "" {
		if out.owner, err = c.rules.creationOwner(ctx, db, s.name, side.id); err != nil {
			return described{}, err
		}
	}
	return out, nil
}

// dataProductRef is d as an EntityRef.
func (d described) dataProductRef() EntityRef {
	return EntityRef{ID: d.id, Name: d.name, Namespace: d.namespace, Deleted: d.deleted}
}

// outputPortRef is d as an OutputPortRef.
func (d described) outputPortRef() OutputPortRef {
	r := OutputPortRef{ID: d.id, Name: d.name, Namespace: d.namespace, DataProductID: d.owner, Deleted: d.deleted}
	if op, ok := d.data.(*OutputPort); ok {
		r.AccessType = op.AccessType
	}
	return r
}

// technicalAssetRef is d as a TechnicalAssetRef.
func (d described) technicalAssetRef() TechnicalAssetRef {
	r := TechnicalAssetRef{ID: d.id, Name: d.name, Namespace: d.namespace, DataProductID: d.owner, Deleted: d.deleted}
	if ta, ok := d.data.(*TechnicalAsset); ok {
		r.Platform, r.Service, r.Configuration = ta.Platform, ta.Service, ta.Configuration
	}
	return r
}

// sidesOf finds every role of r on rec by its portal type. A record without
// one is malformed for its action.
func (r rule) sidesOf(rec AuditRecord) (map[string]entityRef, error) {
	sides := make(map[string]entityRef, len(r.roles))
	for _, ro := range r.kind.roles {
		typ := r.roles[ro.name]
		ref, ok := rec.side(typ)
		if !ok {
			return nil, &RecordError{RecordID: rec.ID, Field: "subject_type",
				Reason: fmt.Sprintf("action %q needs a %s (the %s) as subject or target", rec.Name, typ, ro.name)}
		}
		sides[ro.name] = ref
	}
	return sides, nil
}

// actionsFor returns the actions the table maps to kind.verb (any verb when
// verb is ""), sorted, with the verb each maps to.
func (t Rules) actionsFor(kindName, verb string) map[string]string {
	out := map[string]string{}
	for a, r := range t.byAction {
		if r.kind != nil && r.kind.name == kindName && (verb == "" || r.verb == verb) {
			out[a] = r.verb
		}
	}
	return out
}

// sortedKeys is the keys of m, sorted, for deterministic queries.
func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
