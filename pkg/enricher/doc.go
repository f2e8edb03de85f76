// Package enricher turns the data-product portal's audit records into
// documented business events.
//
// The portal already writes an audit row (its `events` table) for every
// change a user makes, but a row only says "action X, subject S, target T":
// ids, legacy names and no detail. Consumers need the business fact with
// enough data to act on it without calling back into the portal. The
// enricher adds that data:
//
//	audit record ─▶ validate ─▶ mapping ─▶ lookups (through tx) ─▶ events ─▶ outbox (same tx)
//
// Step by step:
//
//  1. Validate: ids are UUIDs, the action has a name and a time, and the
//     record names an entity of its action's family. A bad record fails with a
//     [*RecordError] naming the column (errors.Is(err, [ErrInvalidRecord])).
//  2. Map: the action name selects one rule of a mapping table ([Rules]):
//     which kind of entity the event is about, its verb, and which portal
//     type plays each of the kind's roles. A rule may also ignore an action
//     on purpose (zero events, no error). An action with no rule fails with
//     [ErrUnmapped] and its name; callers must surface it, since skipping it
//     silently would lose a change consumers never hear about. A custom Go
//     enricher ([WithCustom]) goes ahead of the rules for its action.
//  3. Look up: the entities are read from the portal's tables with plain,
//     portable SQL through the caller's *gorm.DB, so it sees what the caller's
//     transaction sees. Entities are read as they are at enrichment; relations
//     (an input port, a published asset, a membership) as the audited action
//     left them, reconstructed from the audit trail. Every event's data says
//     which in as_of (docs/enricher.md, "Event data: which state, as of when").
//  4. Build: one CloudEvent per record, with type
//     io.herald.portal.<entity>.<verb>, a subject naming the entity (both ends
//     for a link), time = the record's created_on, partitionkey = the data
//     product that owns the change (so one data product's events stay in
//     order), dataschema <schema base><type>/v1.json, and data carrying
//     actor_id and audit_record_id so every event traces back to its audit row,
//     and traceparent, the span the record was enriched in
//     ([WithTracerProvider]).
//  5. Store: [Enricher.Record] writes the events with outbox.Write in the same
//     transaction, so they exist if and only if that transaction commits, and
//     with them the entity's last known state (herald_enricher_entity_state),
//     which a later deletion carries. [Enricher.Events] stops before this step.
//
// # Rules
//
// [DefaultRules] is the built-in catalogue; [ParseRules] reads a YAML mapping
// file that overrides or extends it, validated as a whole before the first
// record is seen (an unknown entity kind, verb or role is an error naming the
// entry). The entity kinds and their verbs are:
//
//	data_product    created updated deleted              key: itself
//	output_port     created updated deleted              key: owning data product
//	technical_asset created updated deleted              key: owning data product
//	port_asset      linked unlinked                      key: owning data product
//	input_port      requested approved denied revoked    key: consuming data product
//	                cancelled removed
//	team_member     added role_changed removed           key: the data product
//	output_port_member added role_changed removed        key: the port's data product
//
// [Rules.EventTypes] describes each event type; package schema generates the
// JSON Schemas, the AsyncAPI document and docs/events.md from it and from the
// data types in data.go, their one source of truth.
//
// # Orientation
//
// The portal is not consistent about which entity is the subject and which
// the target: approving an access link from the output-port side records
// subject=dataset, target=data_product, and from the data-product side the
// reverse. The enricher therefore never trusts position; it finds each role
// of a rule by its portal type, on whichever side it is, and the event is the
// same either way.
//
// # Deletions
//
// When the portal deletes an entity, its row is gone but the audit row keeps
// its name in deleted_subject_identifier or deleted_target_identifier. A
// deletion's data is a [DeletedDataProduct], [DeletedOutputPort] or
// [DeletedTechnicalAsset]: the id from the record, that name, the owner and
// last_known, the data of the last created or updated event Herald emitted
// for the entity (namespace, access type, platform, configuration: what
// teardown needs), which Herald keeps per entity since the portal cannot.
// An earlier action (say, "created") processed after the entity was deleted
// is a [DeletedEntity] (deleted: true), named from the audit row that deleted
// it; an entity named inside a relation event takes its details from the
// last known state. An entity whose row is missing without
// any recorded deletion fails with [ErrEntityNotFound] rather than producing
// an empty event; the deletion may sit in a portal transaction that has not
// committed yet, so a retry can succeed. The partition key of a deleted
// output port or technical asset is its owner, taken from the record or from
// the audit row that created it; only when neither knows is its own id used,
// with a warning.
//
// # Decisions
//
// Portal names are legacy: "dataset" is an output port, "data_output" a
// technical asset, a data_products_datasets row an input port, a
// data_outputs_datasets row a port asset. Some actions are deliberately
// not events ([Rules.Ignored] lists them with the reason): requests and
// refusals to publish a technical asset on a port or to join a team change
// nothing a consumer provisions (the approval is the event), and so are
// requests and refusals of output-port roles. A data-product role assignment
// created but still awaiting approval yields no event either; the portal's
// tables hold no output-port role assignments, so output_port_member events
// carry no role. An input port's status
// is the one its action left and previous_status the one the audit trail
// held before it, so both are right however late the record is processed.
package enricher
