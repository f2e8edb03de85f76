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

// TeamMember is a user with an approved role on a data product.
type TeamMember struct {
	UserID string `json:"user_id" schema:"uuid" doc:"The user's id in the portal."`
	Email  string `json:"email" doc:"The user's e-mail address."`
	Role   string `json:"role" doc:"The role's name, e.g. Owner or Member; empty when the assignment has no role."`
}

// DataProduct is the data of io.herald.portal.data_product.* events while
// the data product exists.
type DataProduct struct {
	ID          string            `json:"id" schema:"uuid" doc:"The data product's id."`
	Name        string            `json:"name" doc:"Display name."`
	Namespace   string            `json:"namespace" doc:"Unique technical name, used to name infrastructure."`
	Description string            `json:"description" doc:"Free text; empty when the portal has none."`
	Status      string            `json:"status" doc:"Lifecycle status as the portal holds it now: pending, active or archived."`
	Domain      *Ref              `json:"domain" doc:"The business domain; null when the product has none."`
	Type        *Ref              `json:"type" doc:"The data product type; null when the product has none."`
	Settings    map[string]string `json:"settings" doc:"Every setting of the data product by name, as text; an empty object when there are none."`
	TeamMembers []TeamMember      `json:"team_members" doc:"Users with an approved role on the data product, ordered by e-mail; pending and denied requests are not members."`
	Provenance
}

// OutputPort is the data of io.herald.portal.output_port.* events while the
// output port (the portal's "dataset") exists.
type OutputPort struct {
	ID            string `json:"id" schema:"uuid" doc:"The output port's id."`
	Name          string `json:"name" doc:"Display name."`
	Namespace     string `json:"namespace" doc:"Technical name, used to name infrastructure."`
	DataProductID string `json:"data_product_id" schema:"uuid" doc:"The data product that owns the output port."`
	AccessType    string `json:"access_type" doc:"Who may read it: restricted (an approved input port is needed), unrestricted or private."`
	Status        string `json:"status" doc:"Lifecycle status as the portal holds it now."`
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
	Status        string         `json:"status" doc:"Lifecycle status as the portal holds it now."`
	Provenance
}

// DeletedEntity is the data of an event whose entity row is gone from the
// portal: always for a deletion, and for an earlier action processed after
// the entity was deleted. Only what the audit trail still knows is left.
type DeletedEntity struct {
	ID   string `json:"id" schema:"uuid" doc:"The deleted entity's id."`
	Name string `json:"name" doc:"The name the portal kept when it deleted the entity."`
	// DataProductID is the owning data product of a deleted output port or
	// technical asset, when known.
	DataProductID string `json:"data_product_id,omitempty" schema:"uuid" doc:"The data product that owned the deleted output port or technical asset, when the audit trail knows it; absent for data products."`
	Deleted       bool   `json:"deleted" schema:"true" doc:"Always true: the entity no longer exists in the portal, so only id, name and the owner are known. It tells this shape apart from the full one in created and updated events processed after the deletion."`
	Provenance
}

// EntityRef names an entity an event relates to, with what a consumer needs
// to address its infrastructure.
type EntityRef struct {
	ID            string `json:"id" schema:"uuid" doc:"Id in the portal."`
	Name          string `json:"name" doc:"Display name; for a deleted entity the name the portal kept."`
	Namespace     string `json:"namespace,omitempty" doc:"Technical name; absent when the entity is deleted."`
	DataProductID string `json:"data_product_id,omitempty" schema:"uuid" doc:"The owning data product (output ports and technical assets), when known."`
	Deleted       bool   `json:"deleted,omitempty" schema:"true" doc:"Present and true when the entity no longer exists in the portal."`
}

// UserRef names a portal user.
type UserRef struct {
	ID    string `json:"id" schema:"uuid" doc:"The user's id in the portal."`
	Email string `json:"email" doc:"The user's e-mail address; the one the audit row kept if the user is gone, empty when nothing knows it."`
}

// PortAsset is the data of io.herald.portal.port_asset.* events: a
// technical asset published on (linked) or withdrawn from (unlinked) an
// output port of the same data product.
type PortAsset struct {
	TechnicalAsset EntityRef `json:"technical_asset" doc:"The technical asset."`
	OutputPort     EntityRef `json:"output_port" doc:"The output port it is published on."`
	DataProductID  string    `json:"data_product_id" schema:"uuid" doc:"The data product that owns both (the partition key)."`
	Provenance
}

// InputPort is the data of io.herald.portal.input_port.* events: access from
// a consuming data product to an output port (the portal's
// data_products_datasets row).
type InputPort struct {
	ID             string     `json:"id,omitempty" schema:"uuid" doc:"The input port's id in the portal; absent when the portal no longer holds it (after removal)."`
	DataProduct    EntityRef  `json:"data_product" doc:"The consuming data product that requested access (the partition key)."`
	OutputPort     EntityRef  `json:"output_port" doc:"The output port access is requested to, with the data product that owns it."`
	Status         string     `json:"status" doc:"The status this action left: pending (requested), approved, denied, revoked, cancelled or removed."`
	PreviousStatus *string    `json:"previous_status" doc:"The status before this action, from the audit trail of the same consumer and output port; null for the first request."`
	Justification  string     `json:"justification" doc:"Why access was requested; empty when the portal has no text."`
	RequestedBy    *UserRef   `json:"requested_by" doc:"Who requested access; null when unknown."`
	RequestedOn    *time.Time `json:"requested_on" doc:"When access was requested; null when unknown." format:"date-time"`
	ApprovedBy     *UserRef   `json:"approved_by" doc:"Who approved access, as the portal holds the input port now; null when it was never approved."`
	ApprovedOn     *time.Time `json:"approved_on" doc:"When access was approved; null when it was never approved." format:"date-time"`
	ValidUntil     *time.Time `json:"valid_until" doc:"When approved access expires; null for no expiry. The portal writes no audit row when access expires." format:"date-time"`
	Provenance
}

// TeamMemberChange is the data of io.herald.portal.team_member.* events: a
// user's role on a data product.
type TeamMemberChange struct {
	DataProduct EntityRef `json:"data_product" doc:"The data product whose team changed (the partition key)."`
	User        UserRef   `json:"user" doc:"The user."`
	Role        string    `json:"role,omitempty" doc:"The role the user holds now, e.g. Owner or Member. Absent on team_member.removed: the portal deletes the assignment and its audit row does not say which role it was."`
	Provenance
}
