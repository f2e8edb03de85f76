package enricher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"gorm.io/gorm"
)

// The relation kinds: events about a link between entities rather than an
// entity of their own. Their subject names both ends, so it is the same
// whichever way round the portal recorded them, and stays meaningful after
// the link's row is deleted. Their data is the relation as the audited
// action left it (as_of is the record's time); the entities they name are
// described as they are when Herald processes the record, or as Herald last
// described them once deleted.

func portAssetKind() *kind {
	return &kind{
		name:         "port_asset",
		doc:          "A technical asset published on an output port of the same data product (the portal's data_outputs_datasets row).",
		subject:      "output_ports/{output_port_id}/technical_assets/{technical_asset_id}",
		partitionKey: "the id of the data product that owns the technical asset and the output port",
		roles:        []role{{"technical_asset", portalDataOutput}, {"output_port", portalDataset}},
		verbs: []verbSpec{
			{"linked", "A technical asset was published on an output port: consumers of the port can now read it. " +
				"The data is the link as this action left it, with the technical asset's platform, service and configuration."},
			{"unlinked", "A technical asset was withdrawn from an output port: remove the port's consumers' access to it. " +
				"The data is the link as this action left it, with the technical asset's platform, service and configuration."},
		},
		shapes: func(string) []any { return []any{PortAsset{}} },
		build:  buildPortAsset,
	}
}

func buildPortAsset(ctx context.Context, db *gorm.DB, c call) (built, error) {
	asset, err := technicalAssetSpec().describe(ctx, db, c, c.sides["technical_asset"])
	if err != nil {
		return built{}, err
	}
	port, err := outputPortSpec().describe(ctx, db, c, c.sides["output_port"])
	if err != nil {
		return built{}, err
	}
	owner := cmp.Or(asset.owner, port.owner)
	if owner == "" {
		c.log.WarnContext(ctx, "owning data product of port asset unknown; partitioning by the technical asset",
			slog.String("audit_record_id", c.rec.ID), slog.String("technical_asset_id", asset.id))
	}
	return built{
		data: PortAsset{TechnicalAsset: asset.technicalAssetRef(), OutputPort: port.outputPortRef(), DataProductID: owner,
			AsOf: c.rec.CreatedOn, Provenance: c.prov},
		subject: "output_ports/" + port.id + "/technical_assets/" + asset.id,
		key:     cmp.Or(owner, asset.id),
	}, nil
}

// inputPortStatus is the status an input-port verb leaves.
func inputPortStatus(verb string) string {
	if verb == "requested" {
		return "pending"
	}
	return verb
}

func inputPortKind() *kind {
	asLeft := " The data is the input port as this action left it, whatever happened later: a request carries no " +
		"approval, an approval the one it made; the output port and its technical assets are described as they are when " +
		"Herald processes the record."
	return &kind{
		name: "input_port",
		doc: "An input port: access from a consuming data product to another data product's output port " +
			"(the portal's data_products_datasets row). The portal records a decision taken from the output " +
			"port's side with subject and target swapped; Herald emits the same event either way.",
		subject:      "data_products/{consumer_id}/input_ports/{output_port_id}",
		partitionKey: "the consuming data product's id",
		keyWhy: "The input port belongs to the consumer: the consumer asks for it, holds it and loses it when it is " +
			"deleted, and access is granted to the consumer's identity, so its events must stay in order with the " +
			"consumer's own (created before access is approved, access removed before the product is deleted). " +
			"The output port's owner is data.output_port.data_product_id.",
		roles: []role{{"consumer", portalDataProduct}, {"output_port", portalDataset}},
		verbs: []verbSpec{
			{"requested", "A data product asked for access to an output port; the status is pending." + asLeft},
			{"approved", "Access was granted: provision read access for the consuming data product to the output port's technical assets." + asLeft},
			{"denied", "A pending request was refused." + asLeft},
			{"revoked", "Access that was granted was taken away: remove it." + asLeft},
			{"cancelled", "The consumer withdrew its request." + asLeft},
			{"removed", "The input port was deleted from the portal: remove any access it gave." + asLeft},
		},
		shapes: func(string) []any { return []any{InputPort{}} },
		build:  buildInputPort,
	}
}

func buildInputPort(ctx context.Context, db *gorm.DB, c call) (built, error) {
	consumer, err := dataProductSpec().describe(ctx, db, c, c.sides["consumer"])
	if err != nil {
		return built{}, err
	}
	port, err := outputPortSpec().describe(ctx, db, c, c.sides["output_port"])
	if err != nil {
		return built{}, err
	}
	ip := InputPort{DataProduct: consumer.dataProductRef(), OutputPort: port.outputPortRef(),
		Status: inputPortStatus(c.verb), AsOf: c.rec.CreatedOn, Provenance: c.prov}
	if ip.TechnicalAssets, err = portAssets(ctx, db, c, port); err != nil {
		return built{}, err
	}
	h, err := c.rules.inputPortHistory(ctx, db, c.rec, c.verb, consumer.id, port.id)
	if err != nil {
		return built{}, err
	}
	if h.previous != "" {
		s := inputPortStatus(h.previous)
		ip.PreviousStatus = &s
	}
	// The row gives what the portal holds now; a removed input port has none.
	row, err := loadInputPort(ctx, db, consumer.id, port.id)
	found := err == nil
	if err != nil && !errors.Is(err, errRowMissing) {
		return built{}, err
	}
	if err := fillRequest(ctx, db, &ip, h, row, found, c.rec); err != nil {
		return built{}, err
	}
	return built{
		data:    ip,
		subject: "data_products/" + consumer.id + "/input_ports/" + port.id,
		key:     consumer.id,
	}, nil
}

// fillRequest sets the request and approval fields of ip as the record's
// action left them. The portal's row holds the latest request only, and its
// approval may be later than the record; so the row speaks for the record's
// request only when no later request exists, and the approval comes from the
// audit trail, where one at or before the record is the only one that
// counts. Only when the trail does not reach back to the record's request is
// the row's approval taken, and then only if it is not later than the
// record.
func fillRequest(ctx context.Context, db *gorm.DB, ip *InputPort, h inputPortHistory, row inputPortRow, found bool, rec AuditRecord) error {
	current := found && !h.laterRequest
	if found {
		ip.ID = row.id
	}
	if current {
		ip.Justification, ip.RequestedBy, ip.RequestedOn = row.justification, row.requestedBy, row.requestedOn
	}
	var err error
	if h.request != nil && ip.RequestedBy == nil {
		if ip.RequestedBy, err = trailUser(ctx, db, h.request.actorID); err != nil {
			return err
		}
	}
	if h.request != nil && ip.RequestedOn == nil {
		ip.RequestedOn = new(h.request.createdOn)
	}
	switch {
	case h.approval != nil:
		if ip.ApprovedBy, err = trailUser(ctx, db, h.approval.actorID); err != nil {
			return err
		}
		ip.ApprovedOn = new(h.approval.createdOn)
		if current {
			ip.ValidUntil = row.validUntil
		}
	case h.request == nil && current && row.approvedOn != nil && !row.approvedOn.After(rec.CreatedOn):
		ip.ApprovedBy, ip.ApprovedOn, ip.ValidUntil = row.approvedBy, row.approvedOn, row.validUntil
	}
	return nil
}

// trailUser names the user an audit row names as its actor; nil for none.
func trailUser(ctx context.Context, db *gorm.DB, id string) (*UserRef, error) {
	if id == "" {
		return nil, nil
	}
	u, err := loadUser(ctx, db, entityRef{id: id})
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// portAssets are the technical assets access to the output port reaches:
// those published on it now or, once it is deleted, those its audit trail
// last showed published, each as Herald last described it.
func portAssets(ctx context.Context, db *gorm.DB, c call, port described) ([]TechnicalAssetRef, error) {
	if !port.deleted {
		return publishedAssets(ctx, db, port.id)
	}
	sides, err := c.rules.publishedOnDeleted(ctx, db, port.id)
	if err != nil {
		return nil, err
	}
	out := make([]TechnicalAssetRef, 0, len(sides))
	for _, side := range sides {
		d, err := technicalAssetSpec().describe(ctx, db, c, side)
		if errors.Is(err, ErrEntityNotFound) {
			// Gone without a deletion Herald can see: its id is still what
			// a consumer granted access to.
			d, err = described{entityFacts: entityFacts{id: side.id}, deleted: true}, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d.technicalAssetRef())
	}
	slices.SortStableFunc(out, func(a, b TechnicalAssetRef) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func teamMemberKind() *kind {
	return &kind{
		name:         "team_member",
		doc:          "A user's role on a data product (the portal's role_assignments_data_product row).",
		subject:      "data_products/{data_product_id}/team_members/{user_id}",
		partitionKey: "the data product's id",
		keyWhy:       "A team change must stay in order with the data product's own events.",
		roles:        []role{{"data_product", portalDataProduct}, {"user", portalUser}},
		verbs: []verbSpec{
			{"added", "A user joined the data product's team with a role (added by someone allowed to, or a request to join approved). " +
				"The role is read when Herald processes the record; as_of says as of when it holds."},
			{"role_changed", "A team member's role changed; role is the new one, read when Herald processes the record; as_of says as of when it holds."},
			{"removed", "A user left the data product's team; as_of is the record's time."},
		},
		shapes: func(string) []any { return []any{TeamMemberChange{}} },
		build:  buildTeamMember,
	}
}

func buildTeamMember(ctx context.Context, db *gorm.DB, c call) (built, error) {
	dp, err := dataProductSpec().describe(ctx, db, c, c.sides["data_product"])
	if err != nil {
		return built{}, err
	}
	user, err := loadUser(ctx, db, c.sides["user"])
	if err != nil {
		return built{}, err
	}
	out := built{
		subject: "data_products/" + dp.id + "/team_members/" + user.ID,
		key:     dp.id,
	}
	tm := TeamMemberChange{DataProduct: dp.dataProductRef(), User: user, AsOf: c.rec.CreatedOn, Provenance: c.prov}
	if c.verb == "removed" {
		// The assignment is gone; a row there now is a later one, whose role
		// would be wrong here.
		out.data = tm
		return out, nil
	}

	a, err := loadAssignment(ctx, db, dp.id, user.ID)
	switch {
	case errors.Is(err, errRowMissing):
		// Removed since, or its data product deleted: the event still says
		// who joined, without the role nobody knows any more.
		removed, err := c.rules.assignmentRemoved(ctx, db, dp.id, user.ID)
		if err != nil {
			return built{}, err
		}
		if !removed && !dp.deleted {
			return built{}, fmt.Errorf("role assignment of user %s on data product %s: %w", user.ID, dp.id, ErrEntityNotFound)
		}
	case err != nil:
		return built{}, err
	case a.decision != "approved":
		// Created by someone who may not approve it: a request in all but
		// name. Nobody joined yet; the approval's own audit row will say so.
		out.skip = fmt.Sprintf("role assignment is %s, not approved: no team change yet", a.decision)
		return out, nil
	default:
		// The role is today's, so the state is as of now.
		tm.Role, tm.AsOf = a.role, c.readAt()
	}
	out.data = tm
	return out, nil
}

func outputPortMemberKind() *kind {
	return &kind{
		name: "output_port_member",
		doc: "A user's role on an output port (the portal's dataset role assignment). Output-port owners decide who is " +
			"granted access to the port. The portal's tables hold no output-port role assignments, so the event names " +
			"the user and the output port but not the role, and, unlike team_member.added, cannot tell a created " +
			"assignment still awaiting approval from an approved one.",
		subject:      "output_ports/{output_port_id}/members/{user_id}",
		partitionKey: "the id of the data product that owns the output port",
		keyWhy: "Who may grant access to an output port must stay in order with the port's own events, which its " +
			"owner's key orders.",
		roles: []role{{"output_port", portalDataset}, {"user", portalUser}},
		verbs: []verbSpec{
			{"added", "A user was given a role on an output port (by someone allowed to, or a request approved). The data is the membership as this action left it."},
			{"role_changed", "A member's role on an output port changed. The data is the membership as this action left it."},
			{"removed", "A user's role on an output port was taken away. The data is the membership as this action left it."},
		},
		shapes: func(string) []any { return []any{OutputPortMemberChange{}} },
		build:  buildOutputPortMember,
	}
}

func buildOutputPortMember(ctx context.Context, db *gorm.DB, c call) (built, error) {
	port, err := outputPortSpec().describe(ctx, db, c, c.sides["output_port"])
	if err != nil {
		return built{}, err
	}
	user, err := loadUser(ctx, db, c.sides["user"])
	if err != nil {
		return built{}, err
	}
	if port.owner == "" {
		c.log.WarnContext(ctx, "owning data product of output port unknown; partitioning by the output port",
			slog.String("audit_record_id", c.rec.ID), slog.String("output_port_id", port.id))
	}
	return built{
		data:    OutputPortMemberChange{OutputPort: port.outputPortRef(), User: user, AsOf: c.rec.CreatedOn, Provenance: c.prov},
		subject: "output_ports/" + port.id + "/members/" + user.ID,
		key:     cmp.Or(port.owner, port.id),
	}, nil
}
