// Package event defines Herald's one message type: a business event in the
// CloudEvents 1.0 structured JSON format.
//
// An Event is created once, by the enricher or by a producer calling [New], and
// from then on it is only ever moved: the outbox stores its serialized bytes,
// the relay hands those same bytes to an adapter, and the adapter hands them to
// the broker. Nothing downstream re-encodes it, so a retry, a second relay or a
// different adapter delivers byte-identical payloads.
//
// # Attributes
//
//   - id: a UUIDv7 assigned by [New] and never changed. It is the consumers'
//     de-duplication key and the brokers' duplicate-detection id.
//   - source: a URI-reference naming the producing system, e.g. "/portal".
//   - type: reverse-DNS, lower case, dot separated, ending in the entity and
//     the past-tense verb: "io.herald.portal.data_product.created".
//   - subject: the entity the event is about, e.g. "data_products/<id>", or a
//     nested one such as "data_products/<id>/members/<user>".
//   - time: when the audited change happened (not when Herald saw it).
//   - datacontenttype: "application/json" (Herald carries JSON data only).
//   - dataschema: an absolute URI of the JSON Schema of data, when known.
//   - partitionkey (extension): the ordering key; events with the same key are
//     meant to be consumed in order. The portal uses the owning data product id.
//   - traceparent (extension): the W3C trace context of the producing
//     transaction, so traces cross the broker.
//
// [Validate] rejects an event whose attributes break these rules with an error
// that names the attribute; errors.Is(err, ErrInvalid) holds for all of them.
package event
