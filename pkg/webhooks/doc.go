// Package webhooks signs and verifies webhook requests the way the Standard
// Webhooks specification (standardwebhooks.com) describes, so that Herald's
// webhook adapter and the services receiving its events share one
// implementation.
//
// # Scheme
//
// Every request carries three headers:
//
//   - webhook-id: the CloudEvents id. It stays the same on every retry, so
//     receivers use it as an idempotency key.
//   - webhook-timestamp: the attempt's time in Unix seconds. It changes on
//     every retry and is signed, so a captured request cannot be replayed
//     once it falls outside the receiver's tolerance.
//   - webhook-signature: one or more space-separated signatures
//     "v1,<base64 HMAC-SHA256(secret, id + "." + timestamp + "." + body)>".
//
// The body is signed exactly as sent: a receiver must verify the raw bytes
// it read, before any JSON decoding.
//
// # Secrets and rotation
//
// A secret is 24 to 64 random bytes, written "whsec_" followed by their
// standard base64 encoding (see [ParseSecret], [FormatSecret],
// [NewSecret]). To rotate without downtime the sender signs with the new and
// the old secret at once ([SignAll]) until the old one expires; a receiver
// holding either secret accepts the request, because [Verify] accepts any one
// matching signature.
package webhooks
