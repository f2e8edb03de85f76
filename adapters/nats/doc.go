// Package nats publishes Herald's events to NATS JetStream.
//
// # Model
//
// Every event becomes one JetStream message:
//
//   - subject: from a template, "herald.{type}" by default. {type} is the
//     CloudEvents type, so "order.created" lands on "herald.order.created"
//     and consumers can filter with "herald.order.>". {partitionkey} inserts
//     the ordering key ("_" for an event without one). The template is
//     checked when the Publisher is built, including that the stream
//     captures it; an event whose type still yields an invalid subject (a
//     space, a '*' or '>', an empty token) fails permanently and is
//     dead-lettered instead of being retried forever.
//   - header Nats-Msg-Id: the event id. The stream drops a second message
//     with the same id inside its duplicate window (2 minutes by default)
//     and acknowledges it with Duplicate set, so a relay that crashed after
//     publishing but before marking the outbox rows sent can safely publish
//     them again. The window must be longer than such a retry can take.
//   - the CloudEvents NATS protocol binding's content mode (WithBinding).
//     Structured, the default: header Content-Type
//     application/cloudevents+json and the stored CloudEvent as the body,
//     byte for byte. Binary: the event's data as the body, every other
//     attribute as a "ce-" header (ce-id, ce-type, ce-time, …,
//     ce-partitionkey, ce-traceparent; values percent-encoded as the
//     binding requires) and Content-Type set to the datacontenttype. Binary
//     mode parses each payload; one that is not a valid CloudEvent fails
//     permanently. Nats-Msg-Id is the event id in both.
//
// A message is only reported sent once the stream has acknowledged it, that
// is, stored it. Messages of a batch are published asynchronously on one
// connection with a bounded number awaiting acknowledgement; one connection
// keeps them in order, so events sharing a partition key are stored in the
// order given.
//
// Once a message with a partition key has failed, for whatever reason, the
// later messages with that key in the same Publish are not sent: they fail
// with ErrEarlierFailed, and the relay decides what becomes of the key. A
// failure that only its ack reports (the stream refusing the size, a lost
// ack) is known once the ack is back; successors sent meanwhile, at most
// WithMaxPendingAcks of them, cannot be recalled, and one the stream stored
// is ahead of its predecessor (logged as a warning). WithMaxPendingAcks(1)
// closes that window at the cost of a round trip per message.
//
// # Errors
//
// Permanent (wrapping adapters.ErrPermanent, dead-lettered by the relay): an
// invalid subject (ErrInvalidSubject), an id the header cannot carry
// (ErrInvalidID), a message over the server's max_payload or the stream's
// max_msg_size (ErrTooLarge), a payload the Binary binding cannot lay out.
//
// A fault of the destination as a whole (wrapping adapters.ErrUnavailable:
// the relay pauses the destination and spends no attempt of any event): the
// connection closed, reconnecting or disconnected; no responders on the
// subject (the stream was deleted, or JetStream is down); no ack within
// WithAckTimeout, since the server stores a message without looking at its
// content; refused credentials or permissions; JetStream's 503 answers (a
// full stream that discards new messages, insufficient resources, no
// cluster leader), a missing or sealed stream.
//
// A message held back (ErrEarlierFailed) wraps its predecessor's error, so
// it is unavailable when that was, but never permanent: it was not refused
// itself. Messages left unsent because ctx ended wrap ctx's error, and those
// of a closed Publisher ErrClosed; neither is marked unavailable. No
// responders while the stream exists but does not capture the subject (an
// operator narrowed its subjects) is the event's type at fault, not the
// stream: ErrNotCaptured, unmarked. Anything else is transient, for the
// relay to retry.
//
// MaxPublishTime (adapters.Bounded) is one ack timeout per window of
// WithMaxPendingAcks messages, plus one for a stall behind acks an earlier
// Publish abandoned, plus a little slack.
//
// # Per-key order for consumers
//
// A stream keeps messages in the order it stored them, and the Publisher
// stores each partition key's events in the order the relay hands them
// over; the relay in turn never has two events of one key in flight. A
// consumer that must see one key's events in order therefore either reads
// with a single ordered consumer (any subject filter), or, to read one key
// alone, puts {partitionkey} into the subject template
// ("herald.{partitionkey}.{type}") and filters on "herald.<key>.>". Keys
// are then subject tokens: a key containing '.' spans several tokens, and
// one containing a space, '*' or '>' fails permanently.
//
// # Connecting
//
// Connect takes one or more comma-separated nats:// or tls:// URLs and
// tries them in random order (natsgo's default) until one answers. One
// authentication method may be given: WithCredsFile, WithNKeySeedFile,
// WithToken or WithUserPassword. WithTLS verifies the server against a CA
// file and presents a client certificate for mutual TLS. Each option
// checks its files when Connect starts, with an error naming the option;
// creds, CA and certificate files are read again on every reconnect, so
// rotating them needs no restart.
//
// # Why publishes are never buffered
//
// By default a NATS client keeps publishing into a memory buffer while it
// reconnects and sends the buffer later. For Herald that would be wrong
// twice over: the relay would wait for acks that cannot come, and events
// would sit in the memory of a process that may die, while the outbox
// already holds them durably. Connect therefore turns the reconnect buffer
// off, so a publish to a dead server fails at once (ErrUnavailable) and the
// relay pauses the destination, spending no attempt, and probes it until it
// answers, while the client keeps reconnecting in the background for as
// long as the Publisher lives.
//
// # Stream
//
// By default the Publisher creates the stream ("HERALD", subjects
// "herald.>", file storage) or, if it exists, updates only its subjects and
// duplicate window. Where the relay should not manage streams, pass
// WithProvisionStream(false): the stream must then exist and capture the
// template's subjects.
//
// # Embedded server
//
// StartEmbedded runs a real NATS server with JetStream inside the process,
// so that Herald's demo and tests need no broker installed.
package nats
