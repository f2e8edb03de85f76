// Package adapters defines the one interface every broker adapter implements.
//
// The relay (package producer) claims rows from the outbox and hands them to a
// [Publisher] as a batch of [Message] values. The publisher sends them to its
// broker and reports one [Result] per message, in the same order. That is the
// whole contract: broker specifics (subjects, queue URLs, duplicate-detection
// ids, ordering keys, size limits, authentication) stay inside each adapter's
// own package, e.g. adapters/nats.
//
// Two rules every adapter follows, proven for each by the shared conformance
// suite in adapters/adaptertest:
//
//   - The payload is sent byte for byte; the adapter never re-encodes it.
//   - The event id is handed to the broker's duplicate detection where the
//     broker has one, so a re-publish after a relay crash is dropped there.
//
// An error wrapping [ErrPermanent] means retrying cannot help (the event is
// larger than the broker accepts, say): the relay dead-letters the event at
// once instead of retrying it. Every other error is retried with backoff.
package adapters
