// Package console is the operator's web view of a running Herald, served by
// herald serve under /console when http.admin_token is set.
//
// # What it shows
//
// One page per question an operator on call asks:
//
//   - Overview: per destination (main, the config's destinations, every
//     stored webhook endpoint as "webhook:<name>") its health, backlog,
//     oldest pending age and dead letters, with a plot of backlog and
//     throughput over the last hour.
//   - Dead letters: filter by destination, type and error text; open one
//     for its reason, its attempts and its payload; retry one, a selection
//     or every match.
//   - Webhook endpoints: list, add, edit, disable and enable, rotate the
//     secret, send a test event, and each endpoint's recent attempts.
//   - Enricher: the lag of the last record enriched here, the quarantined
//     audit records with their reasons, retry.
//   - Event story: from an event id, its outbox row per destination and
//     every attempt of the delivery log, newest first.
//
// # Where the data comes from
//
// The console holds no state of its own but sessions and samples. Every
// number is read from the same stores the CLI and the admin API use, and
// every change goes through the same call: outbox.Store.TypeStats (as herald
// status), ListRows, Get, Attempts (the delivery log) and Retry (as herald
// outbox retry); subscriptions.Store Add, Get, List, Update, RotateSecret
// and the tester of POST /v1/webhooks/{name}/test; enricher.Quarantine List,
// Retry and RetryAll (as herald enrich errors and retry).
//
// Health is what can be known without sending a destination anything: the
// adapter's Checker when it has one (NATS, Service Bus), asked by the
// sampler; otherwise, and for a destination whose relay paused it, the
// outcome of the latest attempt in the delivery log.
//
// # The sampler
//
// [Console.Run] takes a sample every Config.SampleEvery (default 10s): each
// relay's published counter (producer.Relay.Stats), each destination's
// backlog, and each checkable broker's answer. Samples live in a ring per
// destination bounded to Config.History (default 1h); nothing is written to
// the database. serve runs it beside the relays and waits for it.
//
// # Security
//
// Sign-in exchanges the admin token, compared in constant time, for a random
// session id kept in memory (a restart signs everyone out) in a cookie that
// is HttpOnly, SameSite=Strict, Path=/console, and Secure when the request
// came over TLS. A request without a live session is redirected to sign-in
// (GET) or refused with 403 (POST). Every change is a POST carrying the
// session's CSRF token, in a hidden field or htmx's X-CSRF-Token header; a
// POST the browser marks as cross-site (Sec-Fetch-Site, Origin) is refused
// too. Pages are server-rendered with html/template, so every value is
// escaped, and no secret is rendered after it was created: URLs and errors
// pass through the redactor, header values are never shown, a signing
// secret appears once, on the page that answers its creation or rotation.
// With Config.ReadOnly (http.console_read_only) every page renders without
// its buttons and every POST but sign-in and sign-out is refused.
//
// # Progressive enhancement
//
// Every page works without JavaScript. htmx 2.0.11, vendored under static/
// with its licence, refreshes the overview in place; no asset comes from a
// CDN, so the console works offline.
package console
