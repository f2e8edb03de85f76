// Package webhook delivers Herald's events over HTTPS to registered
// endpoints, signed per the Standard Webhooks specification, for subscribers
// for whom a broker is too much.
//
// # Model
//
// A Publisher holds a set of endpoints (Endpoint: a name, a URL, one or
// more secrets, event-type globs, extra headers, an enabled flag). Every
// event goes to each enabled endpoint whose Types match its CloudEvents
// type as one POST:
//
//   - body: the stored CloudEvent, structured JSON, byte for byte, the same
//     on every retry; Content-Type application/cloudevents+json;
//   - webhook-id: the event id, the receiver's idempotency key;
//   - webhook-timestamp: the attempt's time (Unix seconds), fresh on every
//     attempt so receivers can refuse replays;
//   - webhook-signature: "v1,<base64 HMAC-SHA256>" per secret, space
//     separated (package pkg/webhooks signs and verifies);
//   - traceparent, when the event has one, and the endpoint's own headers.
//
// A message's Result is nil when every matching endpoint answered 2xx (an
// event no endpoint subscribes to counts as sent). Otherwise it is the
// failing endpoint's *EndpointError, or a *DeliveryError listing several;
// both name the endpoints. There is no duplicate detection on the sending
// side: a retry goes to every matching endpoint again, including those that
// had accepted the event, and receivers drop the copy by webhook-id.
// For independent progress per endpoint, give each endpoint its own
// Publisher and outbox destination (config destinations): each then has its
// own rows, retries and dead letters.
//
// # Responses
//
//   - 2xx: delivered.
//   - 410 Gone: permanent; the endpoint is disabled for the rest of the
//     Publisher's life (until SetEndpoints) and WithOnDisabled is told.
//     Its later events fail permanently with ErrGone instead of counting
//     as sent, so the relay keeps them as dead letters for replay.
//   - 408, 425, 429, 5xx: transient, ErrUnavailable. A Retry-After header
//     (seconds or HTTP date) is reported in EndpointError.RetryAfter, by
//     RetryAfter(err) and in the Result's RetryAfter; the relay never
//     retries sooner. 429, 502, 503 and 504 say the endpoint as a whole is
//     throttling or down, and also wrap adapters.ErrUnavailable: the relay
//     pauses the destination and spends no attempt of any event on them.
//     408, 425, 500, 501 and other 5xx may be about this very event and are
//     not so marked; the relay judges them by its own rule (a batch of
//     which nothing got through counts as the destination's fault).
//   - 3xx: permanent; redirects are never followed.
//   - other 4xx (400, 401, 403, 404, 413, …): permanent, ErrRejected: the
//     receiver refused these exact bytes, and resending them cannot change
//     that. The relay dead-letters the event; replay it once the receiver
//     is fixed.
//   - no connection (refused, no route, DNS, a TLS handshake that fails: an
//     untrusted or expired certificate, a server that speaks no TLS):
//     transient and adapters.ErrUnavailable.
//   - a connection but no response (ErrTimeout after WithTimeout, a reset
//     after the request went out): transient, not marked.
//
// Whatever the package's own class, webhook.ErrUnavailable means "worth
// retrying" for one endpoint; adapters.ErrUnavailable, a subset, means "the
// destination is down". Messages left unsent because the caller's context
// ended wrap its error and neither.
//
// Only the first 64 KiB of a response body are read, and its first bytes are
// quoted in the error.
//
// # Isolation
//
// Publish serves each endpoint from its own goroutine with at most
// WithConcurrency requests in flight, so a slow endpoint never holds back
// deliveries to the others; each request is bounded by WithTimeout, and
// Publish returns when every endpoint is done. Events sharing a partition
// key go to an endpoint one at a time, in order. If one fails, for whatever
// reason, the later ones of that key are not sent (ErrEarlierFailed): to that
// endpoint when the endpoint failed it, to any endpoint when it failed before
// a request (too large, an invalid id, no subscriber). A held-back event's
// error wraps its predecessor's, so it is adapters.ErrUnavailable when that
// was and carries its Retry-After, but it is never permanent: it was not
// refused itself. (After a 410 the endpoint's remaining events fail
// permanently with ErrGone, as a disabled endpoint's do.)
//
// MaxPublishTime (adapters.Bounded) is WithTimeout once per message, plus a
// little slack: endpoints are served at the same time, but one key's events
// go one after another, and all n may share a key.
//
// # SSRF guard
//
// Endpoint URLs come from subscribers, so the Publisher refuses to be
// pointed inside the network it runs in. URLs must be https, except for
// hosts given to WithAllowHTTPHosts and IP literals inside WithAllowCIDRs.
// Every address is checked after DNS resolution, when the connection is
// dialled, which defeats DNS rebinding: loopback, link-local, private,
// unique-local, carrier-grade NAT, multicast and unspecified addresses are
// refused unless inside WithAllowCIDRs, and cloud metadata addresses
// (169.254.169.254, fd00:ec2::254, 100.100.100.200) unless listed exactly.
// A refused address fails permanently with ErrBlockedAddress. No HTTP proxy
// is used: the guard would be checking the proxy's address.
package webhook
