// Package redact is the one place that decides what of a credential Herald
// may show. Every log line, status screen, error and event that names a
// broker, database or endpoint passes through it first.
//
// There are two tools, for two situations:
//
//   - Structural redaction, when the value is known to be a URL or a DSN:
//     [URL], [URLs] and [DSN] keep what an operator needs to recognise the
//     target (scheme, user name, host, path, query keys) and replace every
//     secret part with [Mask]: a password, a user that stands alone (NATS and
//     Git hosts take a token there), every query value and the fragment.
//
//   - Known secrets, when the text comes from elsewhere (a driver's error, a
//     library's log line): a [Secrets] set holds the secret values the
//     configuration carries and replaces each wherever it appears, in plain
//     or escaped form. [Secrets.Handler] applies it to every log record.
//
// Structural redaction never fails: input it cannot parse is masked more,
// not less.
package redact
