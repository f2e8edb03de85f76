package enricher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"gorm.io/gorm"
)

// The relation kinds: events about a link between entities rather than an
// entity of their own. Their subject names both ends, so it is the same
// whichever way round the portal recorded them, and stays meaningful after
// the link's row is deleted.

func portAssetKind() *kind {
	return &kind{
		name:         "port_asset",
		doc:          "A technical asset published on an output port of the same data product (the portal's data_outputs_datasets row).",
		subject:      "output_ports/{output_port_id}/technical_assets/{technical_asset_id}",
		partitionKey: "the id of the data product that owns the technical asset and the output port",
		roles:        []role{{"technical_asset", portalDataOutput}, {"output_port", portalDataset}},
		verbs: []verbSpec{
			{"linked", "A technical asset was published on an output port: consumers of the port can now read it."},
			{"unlinked", "A technical asset was withdrawn from an output port."},
		},
		shapes: func(string) []any { return []any{PortAsset{}} },
		build:  buildPortAsset,
	}
}

func buildPortAsset(ctx context.Context, db *gorm.DB, c call) (built, error) {
	assetSide, portSide := c.sides["technical_asset"], c.sides["output_port"]
	asset, err := technicalAssetSpec().ref(ctx, db, c.rules, assetSide)
	if err != nil {
		return built{}, err
	}
	port, err := outputPortSpec().ref(ctx, db, c.rules, portSide)
	if err != nil {
		return built{}, err
	}
	owner := asset.DataProductID
	if owner == "" {
		owner = port.DataProductID
	}
	if owner == "" {
		c.log.WarnContext(ctx, "owning data product of port asset unknown; partitioning by the technical asset",
			slog.String("audit_record_id", c.rec.ID), slog.String("technical_asset_id", asset.ID))
	}
	key := owner
	if key == "" {
		key = asset.ID
	}
	return built{
		data:    PortAsset{TechnicalAsset: asset, OutputPort: port, DataProductID: owner, Provenance: c.prov},
		subject: "output_ports/" + port.ID + "/technical_assets/" + asset.ID,
		key:     key,
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
			{"requested", "A data product asked for access to an output port; the status is pending."},
			{"approved", "Access was granted: provision read access for the consuming data product."},
			{"denied", "A pending request was refused."},
			{"revoked", "Access that was granted was taken away: remove it."},
			{"cancelled", "The consumer withdrew its request."},
			{"removed", "The input port was deleted from the portal: remove any access it gave."},
		},
		shapes: func(string) []any { return []any{InputPort{}} },
		build:  buildInputPort,
	}
}

func buildInputPort(ctx context.Context, db *gorm.DB, c call) (built, error) {
	consumerSide, portSide := c.sides["consumer"], c.sides["output_port"]
	consumer, err := dataProductSpec().ref(ctx, db, c.rules, consumerSide)
	if err != nil {
		return built{}, err
	}
	port, err := outputPortSpec().ref(ctx, db, c.rules, portSide)
	if err != nil {
		return built{}, err
	}
	ip := InputPort{DataProduct: consumer, OutputPort: port, Status: inputPortStatus(c.verb), Provenance: c.prov}
	// The row gives what the portal holds now; a removed input port has none.
	if err := loadInputPort(ctx, db, consumer.ID, port.ID, &ip); err != nil && !errors.Is(err, errRowMissing) {
		return built{}, err
	}
	prev, err := c.rules.previousInputPortVerb(ctx, db, c.rec, consumer.ID, port.ID)
	if err != nil {
		return built{}, err
	}
	if prev != "" {
		s := inputPortStatus(prev)
		ip.PreviousStatus = &s
	}
	return built{
		data:    ip,
		subject: "data_products/" + consumer.ID + "/input_ports/" + port.ID,
		key:     consumer.ID,
	}, nil
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
			{"added", "A user joined the data product's team with a role (added by someone allowed to, or a request to join approved)."},
			{"role_changed", "A team member's role changed; role is the new one."},
			{"removed", "A user left the data product's team."},
		},
		shapes: func(string) []any { return []any{TeamMemberChange{}} },
		build:  buildTeamMember,
	}
}

func buildTeamMember(ctx context.Context, db *gorm.DB, c call) (built, error) {
	dpSide, userSide := c.sides["data_product"], c.sides["user"]
	dp, err := dataProductSpec().ref(ctx, db, c.rules, dpSide)
	if err != nil {
		return built{}, err
	}
	user, err := loadUser(ctx, db, userSide)
	if err != nil {
		return built{}, err
	}
	out := built{
		subject: "data_products/" + dp.ID + "/team_members/" + user.ID,
		key:     dp.ID,
	}
	tm := TeamMemberChange{DataProduct: dp, User: user, Provenance: c.prov}
	if c.verb == "removed" {
		// The assignment is gone; a row there now is a later one, whose role
		// would be wrong here.
		out.data = tm
		return out, nil
	}

	a, err := loadAssignment(ctx, db, dp.ID, user.ID)
	switch {
	case errors.Is(err, errRowMissing):
		// Removed since, or its data product deleted: the event still says
		// who joined, without the role nobody knows any more.
		removed, err := c.rules.assignmentRemoved(ctx, db, dp.ID, user.ID)
		if err != nil {
			return built{}, err
		}
		if !removed && !dp.Deleted {
			return built{}, fmt.Errorf("role assignment of user %s on data product %s: %w", user.ID, dp.ID, ErrEntityNotFound)
		}
	case err != nil:
		return built{}, err
	case a.decision != "approved":
		// Created by someone who may not approve it: a request in all but
		// name. Nobody joined yet; the approval's own audit row will say so.
		out.skip = fmt.Sprintf("role assignment is %s, not approved: no team change yet", a.decision)
		return out, nil
	default:
		tm.Role = a.role
	}
	out.data = tm
	return out, nil
}
