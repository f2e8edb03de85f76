package enricher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

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
}

// built is what a kind's build returns.
type built struct {
	data    any
	subject string
	key     string // the partition key
	skip    string // non-empty: no event on purpose, and why
}

// kindsByName returns every kind, built anew so no caller can change
// another's.
func kindsByName() map[string]*kind {
	out := map[string]*kind{}
	for _, k := range []*kind{
		dataProductSpec().kind(), outputPortSpec().kind(), technicalAssetSpec().kind(),
		portAssetKind(), inputPortKind(), teamMemberKind(),
	} {
		out[k.name] = k
	}
	return out
}

// kindOrder is the order of kinds in the catalogue.
func kindOrder() []string {
	return []string{"data_product", "output_port", "technical_asset", "port_asset", "input_port", "team_member"}
}

// entitySpec describes an entity kind: a portal table with one row per
// entity, created, updated and deleted.
type entitySpec struct {
	name       string // e.g. "output_port"
	portalType string // subject_type/target_type in the audit table, e.g. "dataset"
	collection string // the subject prefix, e.g. "output_ports"
	doc        string
	keyDoc     string
	shape      any // the live data's zero value

	// load reads the live row: the event data and the id of the owning data
	// product (the partition key). It returns errRowMissing when the row is gone.
	load func(ctx context.Context, db *gorm.DB, id string, prov Provenance) (data any, owner string, err error)
	// refQuery selects name, namespace and owner id (NULL for a data
	// product) of the row with id ?, to name the entity in another event.
	refQuery string
}

func (s entitySpec) kind() *kind {
	why := ""
	if s.name != "data_product" {
		why = "Once the " + s.readable() + " is deleted, the owner comes from the audit record or from the audit row " +
			"that created it; only when neither names one is the " + s.readable() + "'s own id used (and a warning logged)."
	}
	return &kind{
		name:         s.name,
		doc:          s.doc,
		subject:      s.collection + "/{id}",
		partitionKey: s.keyDoc,
		keyWhy:       why,
		roles:        []role{{name: s.name, portalType: s.portalType}},
		verbs: []verbSpec{
			{VerbCreated, "A " + s.readable() + " was created."},
			{VerbUpdated, "A " + s.readable() + " was changed; the data is the whole " + s.readable() + " as it is now."},
			{VerbDeleted, "A " + s.readable() + " was deleted."},
		},
		shapes: func(verb string) []any {
			if verb == VerbDeleted {
				return []any{DeletedEntity{}}
			}
			return []any{s.shape, DeletedEntity{}}
		},
		build: s.build,
	}
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

func dataProductSpec() entitySpec {
	return entitySpec{
		name: "data_product", portalType: portalDataProduct, collection: "data_products",
		doc:      "A data product: a team's unit of data ownership, with its settings and team.",
		keyDoc:   "the data product's own id",
		shape:    DataProduct{},
		load:     loadDataProduct,
		refQuery: `SELECT name, namespace, NULL FROM data_products WHERE id = ?`,
	}
}

func outputPortSpec() entitySpec {
	return entitySpec{
		name: "output_port", portalType: portalDataset, collection: "output_ports",
		doc:      "An output port (the portal's legacy name: dataset): what a data product offers others to read.",
		keyDoc:   "the owning data product's id",
		shape:    OutputPort{},
		load:     loadOutputPort,
		refQuery: `SELECT name, namespace, data_product_id FROM datasets WHERE id = ?`,
	}
}

func technicalAssetSpec() entitySpec {
	return entitySpec{
		name: "technical_asset", portalType: portalDataOutput, collection: "technical_assets",
		doc:      "A technical asset (the portal's legacy name: data output): storage a data product writes, such as an S3 prefix.",
		keyDoc:   "the owning data product's id",
		shape:    TechnicalAsset{},
		load:     loadTechnicalAsset,
		refQuery: `SELECT name, namespace, owner_id FROM data_outputs WHERE id = ?`,
	}
}

// build reads the entity a record is about. When its row is gone, a deletion
// expects that and names the entity itself; any other action must be
// explained by a later deletion, or the portal and the audit trail disagree
// and an empty event would hide it.
func (s entitySpec) build(ctx context.Context, db *gorm.DB, c call) (built, error) {
	ref := c.sides[s.name]
	out := built{subject: s.collection + "/" + ref.id}
	data, owner, err := s.load(ctx, db, ref.id, c.prov)
	if !errors.Is(err, errRowMissing) {
		out.data, out.key = data, owner
		return out, err
	}

	name := ref.deletedName
	if c.verb != VerbDeleted {
		var deleted bool
		name, deleted, err = c.rules.removal(ctx, db, s.name, ref.id)
		if err != nil {
			return built{}, err
		}
		if !deleted {
			return built{}, fmt.Errorf("%s %s: %w", s.portalType, ref.id, ErrEntityNotFound)
		}
	}
	owner, err = s.deletedOwner(ctx, db, c)
	if err != nil {
		return built{}, err
	}
	gone := DeletedEntity{ID: ref.id, Name: name, Deleted: true, Provenance: c.prov}
	if owner == "" {
		// Ordering with the owner's other events is lost, but the event still
		// goes out under a stable key of its own rather than not at all.
		c.log.WarnContext(ctx, "owning data product of deleted entity unknown; partitioning by the entity itself",
			slog.String("audit_record_id", c.rec.ID), slog.String("entity", s.name), slog.String("id", ref.id))
		owner = ref.id
	} else if owner != ref.id {
		gone.DataProductID = owner
	}
	out.data, out.key = gone, owner
	return out, nil
}

// deletedOwner finds the data product a deleted entity belonged to: a data
// product owns itself; an output port or technical asset is owned by the
// data product its record names, else by the one its creation's audit row
// names. "" when nothing says.
func (s entitySpec) deletedOwner(ctx context.Context, db *gorm.DB, c call) (string, error) {
	ref := c.sides[s.name]
	if s.name == "data_product" {
		return ref.id, nil
	}
	if dp, ok := c.rec.side(portalDataProduct); ok {
		return dp.id, nil
	}
	return c.rules.creationOwner(ctx, db, s.name, ref.id)
}

// ref names the entity id of this kind for an event about something else:
// from its row, or from the audit trail once it is deleted (the record's own
// deleted_*_identifier first). ErrEntityNotFound when neither knows it.
func (s entitySpec) ref(ctx context.Context, db *gorm.DB, rules Rules, side entityRef) (EntityRef, error) {
	out := EntityRef{ID: side.id}
	found, err := queryRef(ctx, db, s.refQuery, side.id, &out)
	if err != nil {
		return EntityRef{}, fmt.Errorf("look up %s %s: %w", s.name, side.id, err)
	}
	if found {
		return out, nil
	}
	out.Deleted = true
	out.Name = side.deletedName
	if out.Name == "" {
		name, deleted, err := rules.removal(ctx, db, s.name, side.id)
		if err != nil {
			return EntityRef{}, err
		}
		if !deleted {
			return EntityRef{}, fmt.Errorf("%s %s: %w", s.portalType, side.id, ErrEntityNotFound)
		}
		out.Name = name
	}
	if s.name != "data_product" {
		if out.DataProductID, err = rules.creationOwner(ctx, db, s.name, side.id); err != nil {
			return EntityRef{}, err
		}
	}
	return out, nil
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
