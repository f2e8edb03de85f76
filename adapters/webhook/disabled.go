package webhook

import "time"

// EndpointDisabledType is the CloudEvents type of the event Herald emits,
// on its main destination, when it disables a webhook endpoint: an operator
// or a partner's own tooling can react to it instead of finding out from a
// growing dead-letter count.
const EndpointDisabledType = "io.herald.webhook.endpoint_disabled"

// EndpointDisabled is the data of an EndpointDisabledType event.
type EndpointDisabled struct {
	// Destination is the outbox destination the endpoint serves.
	Destination string `json:"destination"`
	// URL is the endpoint's URL without credentials or query.
	URL string `json:"url"`
	// Reason says why: a 410 Gone, or failing since when.
	Reason string `json:"reason"`
	// DisabledAt is when Herald disabled it.
	DisabledAt time.Time `json:"disabled_at"`
}
