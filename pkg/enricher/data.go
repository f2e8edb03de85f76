package enricher

import "time"

// The types below are the data of the events this package emits. They are
// exported so Go consumers can decode events into them, and they are the one
// source of truth of the published JSON Schemas: package
// [github.com/heraldhq/herald/pkg/enricher/schema] reflects them, reading
// each field's json tag (omitempty: the field may be absent), its doc tag
// (the description) and its schema tag ("uuid": a canonical lower-case UUID).
// A pointer field is null when the portal has no value.
//
// Changing a field here changes the schemas; `herald schema export`
// regenerates them and a test fails until the checked-in files match.
//
// Every data type carries as_of, the time its state was true, because an
// audit record may be processed well after its change. Two kinds of data
// exist, and each type's as_of says which it is:
//
//   - at enrichment: an entity (data product, output port, technical asset)
//     as Herald read its row when it processed the record. Its as_of is when
//     Herald read it, never before the record.
//   - at the audited change: a relation (input port, port asset, team and
//     output-port membership) as the action left it. Its as_of is the
//     record's time; the entities it names are described at enrichment.
//
// A user is always a [UserRef] ({id, email}), wherever it appears.

// Provenance ties an event to the portal action behind it. Every event's
// data carries it.
type Provenance struct {
	ActorID       string `json:"actor_id" schema:"uuid" doc:"The portal user who performed the action."`
	AuditRecordID string `json:"audit_record_id" schema:"uuid" doc:"The portal audit row behind this event, to trace it back. Should an audit record ever be enriched again (a replay), its events get new ids but keep this value and their type."`
}

// Ref names a related entity.
type Ref struct {
	ID   string `json:"id" schema:"uuid" doc:"Id in the portal."`
	Name string `json:"name" doc:"Display name."`
}

// UserRef names a portal user.
type UserRef struct {
	ID    string `json:"id" schema:"uuid" doc:"The user's id in the portal."`
	Email string `json:"email" doc:"The user's e-mail address; the one the audit row kept if the user is gone, empty when nothing knows it."`
}

// TeamMember is a user with an approved role on a data product.
type TeamMember struct {
	User UserRef `json:"user" doc:"The user."`
	Role string  `json:"role" doc:"The role's name, e.g. Owner or Member; empty when the assignment has no role."`
}

// DataProduct is the data of io.herald.portal.data_product.* events while
// the data product exists.
type DataProduct struct {
	ID          string            `json:"id" schema:"uuid" doc:"The data product's id."`
	Name        string            `json:"name" doc:"Display name."`
	Namespace   string            `json:"namespace" doc:"Unique technical name, used to name infrastructure."`
	Description string            `json:"description" doc:"Free text; empty when the portal has none."`
	Status      string            `json:"status" doc:"Lifecycle status: pending, active or archived."`
	Domain      *Ref              `json:"domain" doc:"The business domain; null when the product has none."`
	Type        *Ref              `json:"type" doc:"The data product type; null when the product has none."`
	Settings    map[string]string `json:"settings" doc:"Every setting of the data product by name, as text; an empty object when there are none."`
	TeamMembers []TeamMember      `json:"team_members" doc:"Users with an approved role on the data product, ordered by e-mail; pending and denied requests are not members."`
	AsOf        time.Time         `json:"as_of" format:"date-time" doc:"When this state was true. The data is the data product as Herald read it when it processed the audit record (at enrichment); as_of is when Herald read it, never before the event's time. Every audited change committed before as_of is in it."`
	Provenance
}

// OutputPort is the data of io.herald.portal.output_port.* events while the
// output port (the portal's "dataset") exists.
type OutputPort struct {
	ID            string    `json:"id" schema:"uuid" doc:"The output port's id."`
	Name          string    `json:"name" doc:"Display name."`
	Namespace     string    `json:"namespace" doc:"Technical name, used to name infrastructure."`
	DataProductID string    `json:"data_product_id" schema:"uuid" doc:"The data product that owns the output port."`
	AccessType    string    `json:"access_type" doc:"Who may read it: restricted (an approved input port is needed), unrestricted or private."`
	Status        string    `json:"status" doc:"Lifecycle status."`
	AsOf          time.Time `json:"as_of" format:"date-time" doc:"When this state was true. The data is the output port as Herald read it when it processed the audit record (at enrichment); as_of is when Herald read it, never before the event's time. Every audited change committed before as_of is in it."`
	Provenance
}

// TechnicalAsset is the data of io.herald.portal.technical_asset.* events
// while the technical asset (the portal's "data output") exists.
type TechnicalAsset struct {
	ID            string         `json:"id" schema:"uuid" doc:"The technical asset's id."`
	Name          string         `json:"name" doc:"Display name."`
	Namespace     string         `json:"namespace" doc:"Technical name, used to name infrastructure."`
	DataProductID string         `json:"data_product_id" schema:"uuid" doc:"The data product that owns the technical asset."`
	Platform      string         `json:"platform" doc:"The platform it lives on, e.g. aws."`
	Service       string         `json:"service" doc:"The platform's service, e.g. s3."`
	Configuration map[string]any `json:"configuration" doc:"The platform-specific configuration as the portal stores it (a JSON object), e.g. a bucket and prefix."`
	Status        string         `json:"status" doc:"Lifecycle status."`
	AsOf          time.Time      `json:"as_of" format:"date-time" doc:"When this state was true. The data is the technical asset as Herald read it when it processed the audit record (at enrichment); as_of is when Herald read it, never before the event's time. Every audited change committed before as_of is in it."`
	Provenance
}

// DeletedEntity is what the audit trail still knows of an entity whose row
// is gone from the portal. It is the data of a created or updated event
// processed after the entity was deleted, and the first part of every
// deletion's data ([DeletedDataProduct], [DeletedOutputPort],
// [DeletedTechnicalAsset]).
type DeletedEntity struct {
	ID   string `json:"id" schema:"uuid" doc:"The deleted entity's id."`
	Name string `json:"name" doc:"The name the portal kept when it deleted the entity."`
	// DataProductID is the owning data product of a deleted output port or
	// technical asset, when known.
	DataProductID string    `json:"data_product_id,omitempty" schema:"uuid" doc:"The data product that owned the deleted output port or technical asset, when Herald knows it; absent for data products."`
	Deleted       bool      `json:"deleted" schema:"true" doc:"Always true: the entity no longer exists in the portal. It tells this shape apart from the full one in created and updated events processed after the deletion."`
	AsOf          time.Time `json:"as_of" format:"date-time" doc:"When the entity was deleted: the time of the audit record that deleted it, when id, name and owner were last true."`
	Provenance
}

// DeletedDataProduct is the data of io.herald.portal.data_product.deleted.
type DeletedDataProduct struct {
	DeletedEntity
	LastKnown *DataProduct `json:"last_known" doc:"The data product as Herald last described it, for teardown: the data of the last data_product.created or updated event Herald emitted for it, with that event's as_of, actor_id and audit_record_id. Null when Herald never described it: it was gone before Herald processed any of its records, or was created before Herald ran and never changed since."`
}

// DeletedOutputPort is the data of io.herald.portal.output_port.deleted.
type DeletedOutputPort struct {
	DeletedEntity
	LastKnown *OutputPort `json:"last_known" doc:"The output port as Herald last described it, for teardown: the data of the last output_port.created or updated event Herald emitted for it, with that event's as_of, actor_id and audit_record_id. Null when Herald never described it: it was gone before Herald processed any of its records, or was created before Herald ran and never changed since."`
}

// DeletedTechnicalAsset is the data of
// io.herald.portal.technical_asset.deleted.
type DeletedTechnicalAsset struct {
	DeletedEntity
	LastKnown *TechnicalAsset `json:"last_known" doc:"The technical asset as Herald last described it, for teardown (namespace, platform, service, configuration): the data of the last technical_asset.created or updated event Herald emitted for it, with that event's as_of, actor_id and audit_record_id. Null when Herald never described it: it was gone before Herald processed any of its records, or was created before Herald ran and never changed since."`
}

// EntityRef names a data product an event relates to.
type EntityRef struct {
	ID        string `json:"id" schema:"uuid" doc:"Id in the portal."`
	Name      string `json:"name" doc:"Display name; for a deleted data product the name the portal kept."`
	Namespace string `json:"namespace,omitempty" doc:"Technical name, used to name infrastructure; for a deleted data product the one Herald last described, absent when Herald never described it."`
	Deleted   bool   `json:"deleted,omitempty" schema:"true" doc:"Present and true when the data product no longer exists in the portal."`
}

// OutputPortRef names an output port an event relates to, with what a
// consumer needs to grant access to it.
type OutputPortRef struct {
	ID            string `json:"id" schema:"uuid" doc:"Id in the portal."`
	Name          string `json:"name" doc:"Display name; for a deleted output port the name the portal kept."`
	Namespace     string `json:"namespace,omitempty" doc:"Technical name, used to name infrastructure; for a deleted output port the one Herald last described, absent when Herald never described it."`
	DataProductID string `json:"data_product_id,omitempty" schema:"uuid" doc:"The data product that owns the output port; absent only when the output port is deleted and nothing says who owned it."`
	AccessType    string `json:"access_type,omitempty" doc:"Who may read it: restricted (an approved input port is needed), unrestricted or private; absent when the output port is deleted and Herald never described it."`
	Deleted       bool   `json:"deleted,omitempty" schema:"true" doc:"Present and true when the output port no longer exists in the portal."`
}

// TechnicalAssetRef names a technical asset an event relates to, with what a
// consumer needs to reach its storage.
type TechnicalAssetRef struct {
	ID            string         `json:"id" schema:"uuid" doc:"Id in the portal."`
	Name          string         `json:"name" doc:"Display name; for a deleted technical asset the name the portal kept, empty when nothing kept it."`
	Namespace     string         `json:"namespace,omitempty" doc:"Technical name; for a deleted technical asset the one Herald last described, absent when Herald never described it."`
	DataProductID string         `json:"data_product_id,omitempty" schema:"uuid" doc:"The data product that owns the technical asset; absent only when it is deleted and nothing says who owned it."`
	Platform      string         `json:"platform,omitempty" doc:"The platform it lives on, e.g. aws; absent when it is deleted and Herald never described it."`
	Service       string         `json:"service,omitempty" doc:"The platform's service, e.g. s3; absent when it is deleted and Herald never described it."`
	Configuration map[string]any `json:"configuration,omitempty" doc:"The platform-specific configuration (a JSON object), e.g. a bucket and prefix; absent when it is empty, or when the asset is deleted and Herald never described it."`
	Deleted       bool           `json:"deleted,omitempty" schema:"true" doc:"Present and true when the technical asset no longer exists in the portal."`
}

// PortAsset is the data of io.herald.portal.port_asset.* events: a
// technical asset published on (linked) or withdrawn from (unlinked) an
// output port of the same data product.
type PortAsset struct {
	TechnicalAsset TechnicalAssetRef `json:"technical_asset" doc:"The technical asset, with its platform, service and configuration."`
	OutputPort     OutputPortRef     `json:"output_port" doc:"The output port it is published on."`
	DataProductID  string            `json:"data_product_id" schema:"uuid" doc:"The data product that owns both (the partition key)."`
	AsOf           time.Time         `json:"as_of" format:"date-time" doc:"When the link changed: the audit record's time. The event says the technical asset is (linked) or no longer is (unlinked) published on the output port as of then, whatever happened later; the two are described as Herald read them when it processed the record, or as it last described them once deleted."`
	Provenance
}

// InputPort is the data of io.herald.portal.input_port.* events: access from
// a consuming data product to an output port (the portal's
// data_products_datasets row).
type InputPort struct {
	ID              string              `json:"id,omitempty" schema:"uuid" doc:"The input port's id in the portal; absent when the portal no longer holds it (after removal)."`
	DataProduct     EntityRef           `json:"data_product" doc:"The consuming data product that requested access (the partition key)."`
	OutputPort      OutputPortRef       `json:"output_port" doc:"The output port access is requested to, with the data product that owns it and its access type."`
	TechnicalAssets []TechnicalAssetRef `json:"technical_assets" doc:"The technical assets published on the output port, which access to it reaches, ordered by namespace: those the portal holds when Herald processes the record or, once the output port is deleted, those its audit trail last showed published. Empty when there are none."`
	Status          string              `json:"status" doc:"The status this action left: pending (requested), approved, denied, revoked, cancelled or removed."`
	PreviousStatus  *string             `json:"previous_status" doc:"The status before this action, from the audit trail of the same consumer and output port; null for the first request."`
	Justification   string              `json:"justification" doc:"Why access was requested, in the request this action belongs to; empty when the portal has no text, or its row is gone or holds a later request."`
	RequestedBy     *UserRef            `json:"requested_by" doc:"Who made the request this action belongs to; null when unknown."`
	RequestedOn     *time.Time          `json:"requested_on" doc:"When that request was made; null when unknown." format:"date-time"`
	ApprovedBy      *UserRef            `json:"approved_by" doc:"Who approved that request, at or before this action; null when it was not approved by then: a requested event never has one, whatever happened later."`
	ApprovedOn      *time.Time          `json:"approved_on" doc:"When that request was approved, at or before this action; null when it was not approved by then." format:"date-time"`
	ValidUntil      *time.Time          `json:"valid_until" doc:"When the approved access expires; null when not approved by then, for no expiry, or when the portal's row is gone or holds a later request. The portal writes no audit row when access expires." format:"date-time"`
	AsOf            time.Time           `json:"as_of" format:"date-time" doc:"When this state was true: the audit record's time. status, previous_status and the requested and approved fields are the input port as this action left it, whatever happened later; the data product, output port and technical assets are described as Herald read them when it processed the record, or as it last described them once deleted."`
	Provenance
}

// TeamMemberChange is the data of io.herald.portal.team_member.* events: a
// user's role on a data product.
type TeamMemberChange struct {
	DataProduct EntityRef `json:"data_product" doc:"The data product whose team changed (the partition key)."`
	User        UserRef   `json:"user" doc:"The user."`
	Role        string    `json:"role,omitempty" doc:"The role the user holds as of as_of, e.g. Owner or Member. Absent on team_member.removed (the portal deletes the assignment and its audit row does not say which role it was), and when the assignment is gone by the time Herald processes the record."`
	AsOf        time.Time `json:"as_of" format:"date-time" doc:"When this state was true. For removed, and whenever role is absent, the audit record's time. For added and role_changed the role is read from the portal's assignment when Herald processes the record (at enrichment), so as_of is when Herald read it, never before the event's time."`
	Provenance
}

// OutputPortMemberChange is the data of io.herald.portal.output_port_member.*
// events: a user given, changed in or removed from a role on an output port.
// Output-port owners decide who gets access to the port.
type OutputPortMemberChange struct {
	OutputPort OutputPortRef `json:"output_port" doc:"The output port, with the data product that owns it (the partition key)."`
	User       UserRef       `json:"user" doc:"The user."`
	AsOf       time.Time     `json:"as_of" format:"date-time" doc:"When the membership changed: the audit record's time. The output port and the user are described as Herald read them when it processed the record."`
	Provenance
}
