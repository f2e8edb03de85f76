// Package subscriptions keeps the webhook endpoints that operators register
// at runtime, with `herald webhooks` or the admin API under /v1/webhooks,
// in the outbox's own database.
//
// A subscription is an endpoint URL, the event types it wants (globs such as
// "io.herald.portal.input_port.*"), its signing secrets, extra request
// headers and an enabled flag. Each endpoint is served as the outbox
// destination "webhook:<name>" ([Destination]): the writer's [Router] gives
// every matching event a row for it, and a running Herald gives each enabled
// endpoint its own relay and webhook publisher, so that one slow or dead
// receiver never delays another.
//
// The life of an endpoint:
//
//   - [Store.Add] registers it, generating a secret unless one is given. The
//     secret is returned once, for the receiver; it never appears in a
//     listing, a log line or JSON again ([Secret] marshals without it).
//     A Store built with [WithValidator]([Validator](opts...)), as serve's
//     and the CLI's are, refuses a URL that a publisher built with opts
//     would refuse to deliver to (the SSRF guard, with the operator's
//     allowlist), here and on every change of URL.
//   - [Store.Update] changes its URL, types or headers; a running Herald
//     picks the change up on its next refresh without a restart.
//   - [Store.RotateSecret] puts a new secret first and lets the old ones sign
//     alongside it until their grace period ends, so receivers can switch
//     without missing a request.
//   - [Store.Disable] stops deliveries. Herald disables an endpoint itself
//     when it answers 410 Gone or keeps failing; its events keep coming into
//     the outbox, and those in flight become dead letters.
//   - Re-enabling with [Store.Update] first replays its dead letters, then
//     lets the relay run: what it missed goes out in order per partition key.
//     [Store.Replay] replays dead letters at any time, e.g. those a receiver
//     rejected with a 4xx before it was fixed.
//   - [Store.Remove] deletes it and every outbox row still bound for it.
//
// Secrets at rest: a Store built [WithKeyring] seals each row's secrets
// with AES-256-GCM (sealing.go says what is sealed and how), and opens rows
// sealed under any of the keyring's keys. [Store.Reencrypt] seals every row
// under the current key: the plaintext rows of before, and the rows of a
// previous key after a rotation. A Store without a keyring reads plaintext
// rows and refuses new secrets unless [WithPlaintextSecrets].
package subscriptions
