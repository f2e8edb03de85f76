package adaptertest

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters"
)

// Event types deliberately contain dots: subject-based brokers map them to
// several tokens, which must still route to the destination.
const (
	typeCreated = "com.example.herald.test.created"
	typeUpdated = "com.example.herald.test.updated"
)

type suite struct {
	h        Harness
	idPrefix string // unique per Run, so re-runs never collide on ids
	seq      atomic.Int64
}

func (s *suite) publishOne(t *testing.T) {
	p, d := s.open(t)
	id := s.nextID()
	// Key order, spacing, an escaped and a raw non-ASCII character, a
	// trailing zero and a final newline: a publisher that decodes and
	// re-encodes the JSON changes at least one of them.
	payload := []byte(`{"specversion" : "1.0","id":"` + id +
		`","type":"` + typeCreated + `","source":"/adaptertest","data":{"z":1,"a":"h\u00e9llo ✓","n":1.50}}` + "\n")
	msg := adapters.Message{ID: id, Type: typeCreated, PartitionKey: "key-one", Payload: payload}

	res := s.publish(t, context.Background(), p, []adapters.Message{msg})
	requireSent(t, []adapters.Message{msg}, res)
	if res[0].Duplicate {
		t.Errorf("first publish of %s reported Duplicate", id)
	}
	got := s.receive(t, d, 1)
	if got[0].ID != id {
		t.Errorf("received id %q, published %q", got[0].ID, id)
	}
	if !bytes.Equal(got[0].Payload, payload) {
		t.Errorf("payload changed on the way:\n sent %q\n got  %q", payload, got[0].Payload)
	}
	s.expectNoMore(t, d)
}

func (s *suite) emptyBatch(t *testing.T) {
	p, d := s.open(t)
	if res := p.Publish(context.Background(), nil); len(res) != 0 {
		t.Errorf("Publish(nil) returned %d results, want 0", len(res))
	}
	if res := p.Publish(context.Background(), []adapters.Message{}); len(res) != 0 {
		t.Errorf("Publish(empty) returned %d results, want 0", len(res))
	}
	s.expectNoMore(t, d)
}

func (s *suite) largeBatch(t *testing.T) {
	p, d := s.open(t)
	n := max(250, 3*s.h.BatchLimit+1)
	msgs := make([]adapters.Message, n)
	for i := range msgs {
		key := ""
		if i%3 != 0 {
			key = fmt.Sprintf("key-%d", i%7)
		}
		msgs[i] = s.message(typeCreated, key, nil)
	}
	res := s.publish(t, context.Background(), p, msgs)
	requireSent(t, msgs, res)
	for i, r := range res {
		if r.Duplicate {
			t.Errorf("message %d (%s) reported Duplicate on its first publish", i, msgs[i].ID)
		}
	}
	got := s.receive(t, d, n)
	requireEachOnce(t, msgs, got)
	s.expectNoMore(t, d)
}

func (s *suite) duplicates(t *testing.T) {
	if !s.h.Dedupe {
		t.Skip("Harness.Dedupe is false: this broker does not drop re-published ids")
	}
	p, d := s.open(t)
	first := make([]adapters.Message, 5)
	for i := range first {
		first[i] = s.message(typeCreated, "key-dup", nil)
	}
	res := s.publish(t, context.Background(), p, first)
	requireSent(t, first, res)
	for i, r := range res {
		if r.Duplicate {
			t.Errorf("message %d reported Duplicate on its first publish", i)
		}
	}

	// A relay that crashed after publishing but before marking the rows
	// sent publishes them again, possibly together with new events.
	second := append(append([]adapters.Message(nil), first...),
		s.message(typeUpdated, "key-dup", nil), s.message(typeUpdated, "", nil))
	res = s.publish(t, context.Background(), p, second)
	requireSent(t, second, res)
	for i, r := range res {
		if want := i < len(first); r.Duplicate != want {
			t.Errorf("message %d (%s): Duplicate = %v, want %v", i, second[i].ID, r.Duplicate, want)
		}
	}
	got := s.receive(t, d, len(second))
	requireEachOnce(t, second, got)
	s.expectNoMore(t, d)
}

func (s *suite) partitionKeyOrder(t *testing.T) {
	p, d := s.open(t)
	keys := []string{"acct-1", "acct-2", "acct-3", ""}
	// A fixed seed keeps a failure reproducible.
	rng := rand.New(rand.NewPCG(7, 11))
	msgs := make([]adapters.Message, 120)
	for i := range msgs {
		key := keys[rng.IntN(len(keys))]
		typ := typeCreated
		if rng.IntN(2) == 0 {
			typ = typeUpdated
		}
		msgs[i] = s.message(typ, key, nil)
	}
	// Two calls: order must also hold across batches.
	half := len(msgs) / 2
	requireSent(t, msgs[:half], s.publish(t, context.Background(), p, msgs[:half]))
	requireSent(t, msgs[half:], s.publish(t, context.Background(), p, msgs[half:]))

	got := s.receive(t, d, len(msgs))
	requireEachOnce(t, msgs, got)
	if s.h.Unordered {
		return
	}
	want := map[string][]string{} // key -> ids in publish order
	for _, m := range msgs {
		if m.PartitionKey != "" {
			want[m.PartitionKey] = append(want[m.PartitionKey], m.ID)
		}
	}
	keyOf := map[string]string{}
	for _, m := range msgs {
		keyOf[m.ID] = m.PartitionKey
	}
	have := map[string][]string{}
	for _, r := range got {
		if k := keyOf[r.ID]; k != "" {
			have[k] = append(have[k], r.ID)
		}
	}
	for k, ids := range want {
		if strings.Join(have[k], ",") != strings.Join(ids, ",") {
			t.Errorf("partition key %q: received in order\n %v\nwant\n %v", k, have[k], ids)
		}
	}
}

func (s *suite) oversize(t *testing.T) {
	p, d := s.open(t)
	msgs := []adapters.Message{
		s.message(typeCreated, "", nil),
		s.message(typeCreated, "", nil),
		s.message(typeCreated, "", nil),
		s.message(typeCreated, "", nil),
	}
	msgs[1].Payload = paddedPayload(s.h.MaxPayload + 1)
	msgs[2].Payload = paddedPayload(s.h.MaxPayload / 2)

	res := s.publish(t, context.Background(), p, msgs)
	switch err := res[1].Err; {
	case err == nil || !errors.Is(err, adapters.ErrPermanent):
		t.Errorf("message of %d bytes (limit %d): err = %v, want one wrapping adapters.ErrPermanent",
			len(msgs[1].Payload), s.h.MaxPayload, err)
	case errors.Is(err, adapters.ErrUnavailable):
		// The relay would pause a healthy destination for one bad event.
		t.Errorf("message of %d bytes: err = %v wraps adapters.ErrUnavailable; an oversize event is its own fault, "+
			"not the destination's", len(msgs[1].Payload), err)
	}
	sent := []adapters.Message{msgs[0], msgs[2], msgs[3]}
	requireSent(t, sent, []adapters.Result{res[0], res[2], res[3]})
	requireEachOnce(t, sent, s.receive(t, d, len(sent)))
	s.expectNoMore(t, d)
}

// keyHeldAfterFailure checks the hold-back rule: once a message with a
// partition key fails, even permanently, the later messages with that key in
// the same call are not sent, while other keys go on. The relay decides what
// becomes of the key (it retries the head, or parks the key behind its dead
// letter); a successor that went out anyway would overtake it for good.
func (s *suite) keyHeldAfterFailure(t *testing.T) {
	p, d := s.open(t)
	const key = "key-held"
	msgs := []adapters.Message{
		s.message(typeCreated, key, paddedPayload(s.h.MaxPayload+1)),
		s.message(typeUpdated, key, nil),
		s.message(typeCreated, "key-free", nil),
	}
	res := s.publish(t, context.Background(), p, msgs)
	if err := res[0].Err; !errors.Is(err, adapters.ErrPermanent) {
		t.Errorf("oversize head of %q: err = %v, want one wrapping adapters.ErrPermanent", key, err)
	}
	switch err := res[1].Err; {
	case err == nil:
		t.Errorf("successor of the failed head of %q reported sent; it must be held back", key)
	case errors.Is(err, adapters.ErrPermanent):
		// It was never refused itself: the relay would dead-letter a good event.
		t.Errorf("held-back successor: err = %v wraps adapters.ErrPermanent; it was not sent, so not refused", err)
	case errors.Is(err, adapters.ErrUnavailable):
		// The head failed for what it is, not because the destination is down.
		t.Errorf("held-back successor: err = %v wraps adapters.ErrUnavailable, but the earlier failure was the "+
			"head's own", err)
	}
	if err := res[2].Err; err != nil {
		t.Errorf("message with another key: %v; a failure holds back only its own key", err)
	}
	requireEachOnce(t, msgs[2:], s.receive(t, d, 1))
	s.expectNoMore(t, d)
}

// limited checks adapters.Limited, if the publisher implements it: the
// largest payload it claims is positive and within the broker's limit, and
// a CloudEvent of exactly that size, carrying every attribute Herald's events
// do at its longest (a 36-character id, a traceparent, a partition key), is
// taken and arrives byte for byte. Writers keep larger events out of the
// outbox by this number, so one that is too high lets through events the
// broker refuses, and one that is too low holds back events it would take.
func (s *suite) limited(t *testing.T) {
	p, d := s.open(t)
	l, ok := p.(adapters.Limited)
	if !ok {
		t.Skip("the publisher is not adapters.Limited: writers cannot keep oversize events out of the outbox")
	}
	n := l.MaxMessageBytes()
	if n <= 0 || n > s.h.MaxPayload {
		t.Fatalf("MaxMessageBytes() = %d, want between 1 and the broker's limit %d", n, s.h.MaxPayload)
	}
	// Event ids are canonical UUIDs: 36 characters, as the headers that
	// carry them are sized for.
	id := (s.nextID() + "-" + strings.Repeat("0", 36))[:36]
	key := "data_products/" + id
	msg := adapters.Message{ID: id, Type: typeCreated, PartitionKey: key,
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	msg.Payload = eventOfSize(t, msg, n)
	res := s.publish(t, context.Background(), p, []adapters.Message{msg})
	if err := res[0].Err; err != nil {
		t.Fatalf("a %d-byte event, exactly MaxMessageBytes(): %v", n, err)
	}
	got := s.receive(t, d, 1)
	if got[0].ID != id || !bytes.Equal(got[0].Payload, msg.Payload) {
		t.Errorf("the %d-byte event arrived as %s with %d bytes", n, got[0].ID, len(got[0].Payload))
	}
	s.expectNoMore(t, d)
}

// eventOfSize is a structured CloudEvent for m of exactly n bytes: every
// context attribute set, data padded.
func eventOfSize(t *testing.T, m adapters.Message, n int) []byte {
	t.Helper()
	head := fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"/adaptertest","type":%q,"subject":%q,`+
		`"time":"2026-11-01T10:00:00.123456789Z","datacontenttype":"application/json",`+
		`"dataschema":"https://schemas.example.com/adaptertest/v1.json","partitionkey":%q,"traceparent":%q,"data":{"pad":"`,
		m.ID, m.Type, m.PartitionKey, m.PartitionKey, m.TraceParent)
	const tail = `"}}`
	if n < len(head)+len(tail) {
		t.Fatalf("MaxMessageBytes() = %d leaves no room for an event's attributes (%d bytes)", n, len(head)+len(tail))
	}
	b := append(head, bytes.Repeat([]byte("x"), n-len(head)-len(tail))...)
	return append(b, tail...)
}

// bounded checks adapters.Bounded, if the publisher implements it: the bound
// is positive, grows (or stays) with the batch, and a publish takes no longer
// than it says. The relay cuts a Publish off after the bound, so one that is
// too short gives back rows a healthy destination was still taking.
func (s *suite) bounded(t *testing.T) {
	p, d := s.open(t)
	b, ok := p.(adapters.Bounded)
	if !ok {
		t.Skip("the publisher is not adapters.Bounded: the relay allows it adapters.DefaultMaxPublishTime")
	}
	one, many := b.MaxPublishTime(1), b.MaxPublishTime(1000)
	if one <= 0 {
		t.Errorf("MaxPublishTime(1) = %s, want > 0", one)
	}
	if many < one {
		t.Errorf("MaxPublishTime(1000) = %s < MaxPublishTime(1) = %s: a larger batch cannot take less time", many, one)
	}
	msgs := make([]adapters.Message, max(20, 2*s.h.BatchLimit+1))
	for i := range msgs {
		msgs[i] = s.message(typeCreated, fmt.Sprintf("key-%d", i%3), nil)
	}
	start := time.Now()
	res := s.publish(t, context.Background(), p, msgs)
	took := time.Since(start)
	requireSent(t, msgs, res)
	if bound := b.MaxPublishTime(len(msgs)); took > bound {
		t.Errorf("Publish of %d messages took %s, longer than MaxPublishTime(%d) = %s", len(msgs), took, len(msgs), bound)
	}
	requireEachOnce(t, msgs, s.receive(t, d, len(msgs)))
}

func (s *suite) cancelledContext(t *testing.T) {
	p, d := s.open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msgs := []adapters.Message{
		s.message(typeCreated, "key-c", nil),
		s.message(typeCreated, "key-c", nil),
		s.message(typeCreated, "", nil),
	}
	res := s.publish(t, ctx, p, msgs)
	// An adapter may still get a message out, but what it reports must be
	// true: a failed result must be the cancellation, and exactly the
	// messages reported sent must arrive.
	var reportedSent []adapters.Message
	for i, r := range res {
		switch {
		case r.Err == nil:
			reportedSent = append(reportedSent, msgs[i])
		case !errors.Is(r.Err, context.Canceled):
			t.Errorf("message %d: err = %v, want nil or one wrapping context.Canceled", i, r.Err)
		}
	}
	got := s.receiveFor(t, d, len(msgs), s.h.SettleTime)
	requireEachOnce(t, reportedSent, got)
}

func (s *suite) closeTwice(t *testing.T) {
	p, d := s.open(t)
	msg := s.message(typeCreated, "", nil)
	requireSent(t, []adapters.Message{msg}, s.publish(t, context.Background(), p, []adapters.Message{msg}))
	requireEachOnce(t, []adapters.Message{msg}, s.receive(t, d, 1))

	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Logf("second Close returned %v (allowed, but nil is nicer)", err)
	}
	after := []adapters.Message{s.message(typeCreated, "", nil), s.message(typeCreated, "k", nil)}
	res := s.publish(t, context.Background(), p, after)
	for i, r := range res {
		if r.Err == nil {
			t.Errorf("Publish after Close: message %d reported sent", i)
		}
	}
	s.expectNoMore(t, d)
}

func (s *suite) brokerDown(t *testing.T) {
	if s.h.OpenDown == nil {
		t.Skip("Harness.OpenDown is nil: this test cannot make the broker unreachable")
	}
	p := s.h.OpenDown(t)
	t.Cleanup(func() { _ = p.Close() })
	// Generous, so that an adapter failing on its own (the contract) is
	// told apart from one that buffers until the caller gives up.
	ctx, cancel := context.WithTimeout(context.Background(), s.h.ReceiveTimeout)
	defer cancel()
	// Twice: the second call meets whatever state the first left behind
	// (a reconnect loop, a half-closed client).
	for attempt := 1; attempt <= 2; attempt++ {
		msgs := []adapters.Message{
			s.message(typeCreated, "key-down", nil),
			s.message(typeCreated, "key-down", nil),
			s.message(typeCreated, "", nil),
		}
		start := time.Now()
		res := s.publish(t, ctx, p, msgs)
		took := time.Since(start)
		for i, r := range res {
			switch {
			case r.Err == nil:
				t.Errorf("attempt %d: message %d reported sent to an unreachable broker", attempt, i)
			case errors.Is(r.Err, context.DeadlineExceeded):
				t.Errorf("attempt %d: message %d failed only when the caller's deadline passed (%v): "+
					"the adapter must report a down broker by itself", attempt, i, r.Err)
			case errors.Is(r.Err, adapters.ErrPermanent):
				// The relay would dead-letter a perfectly good event
				// because of an outage.
				t.Errorf("attempt %d: message %d: err = %v wraps adapters.ErrPermanent; "+
					"an unreachable broker is transient, the relay must retry", attempt, i, r.Err)
			case !errors.Is(r.Err, adapters.ErrUnavailable):
				// Held-back messages included: their error carries the
				// cause. Unmarked, the relay would spend each event's
				// attempts on the outage, and dead-letter them if it lasts.
				t.Errorf("attempt %d: message %d: err = %v does not wrap adapters.ErrUnavailable; "+
					"an unreachable broker is the destination's fault", attempt, i, r.Err)
			}
		}
		if b, ok := p.(adapters.Bounded); ok && took > b.MaxPublishTime(len(msgs)) {
			t.Errorf("attempt %d: reporting the broker down took %s, longer than MaxPublishTime(%d) = %s",
				attempt, took, len(msgs), b.MaxPublishTime(len(msgs)))
		}
	}
}

// open calls Harness.Open and makes sure the publisher gets closed.
func (s *suite) open(t *testing.T) (adapters.Publisher, Destination) {
	t.Helper()
	p, d := s.h.Open(t)
	if p == nil || d == nil {
		t.Fatal("adaptertest: Harness.Open returned a nil publisher or destination")
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, d
}

// publish calls Publish, turning a panic into a test failure with context
// and checking the one rule that holds for every call: one result each.
func (s *suite) publish(t *testing.T, ctx context.Context, p adapters.Publisher, msgs []adapters.Message) (res []adapters.Result) {
	t.Helper()
	func() {
		defer func() {
			if v := recover(); v != nil {
				t.Fatalf("Publish of %d messages panicked: %v", len(msgs), v)
			}
		}()
		res = p.Publish(ctx, msgs)
	}()
	if len(res) != len(msgs) {
		t.Fatalf("Publish of %d messages returned %d results", len(msgs), len(res))
	}
	return res
}

// receive waits for exactly n messages.
func (s *suite) receive(t *testing.T, d Destination, n int) []Received {
	t.Helper()
	got := s.receiveFor(t, d, n, s.h.ReceiveTimeout)
	if len(got) != n {
		t.Fatalf("received %d messages within %s, want %d", len(got), s.h.ReceiveTimeout, n)
	}
	return got
}

// receiveFor reads up to n messages for at most wait.
func (s *suite) receiveFor(t *testing.T, d Destination, n int, wait time.Duration) []Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got, err := d.Receive(ctx, n)
	if err != nil {
		t.Fatalf("Destination.Receive: %v", err)
	}
	if len(got) > n {
		t.Fatalf("Destination.Receive(max %d) returned %d messages", n, len(got))
	}
	return got
}

// expectNoMore fails if any further message arrives within SettleTime.
func (s *suite) expectNoMore(t *testing.T, d Destination) {
	t.Helper()
	if extra := s.receiveFor(t, d, 1, s.h.SettleTime); len(extra) > 0 {
		t.Errorf("unexpected extra message %s (%d bytes)", extra[0].ID, len(extra[0].Payload))
	}
}

func (s *suite) nextID() string {
	return fmt.Sprintf("%s-%06d", s.idPrefix, s.seq.Add(1))
}

// message builds a message with a fresh id and, unless payload is given, a
// small CloudEvents-shaped payload naming its id and key.
func (s *suite) message(typ, key string, payload []byte) adapters.Message {
	id := s.nextID()
	if payload == nil {
		payload = fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"type":%q,"source":"/adaptertest","data":{"key":%q}}`,
			id, typ, key)
	}
	return adapters.Message{ID: id, Type: typ, PartitionKey: key, Payload: payload}
}

// requireSent fails unless every result is a success.
func requireSent(t *testing.T, msgs []adapters.Message, res []adapters.Result) {
	t.Helper()
	failed := 0
	for i, r := range res {
		if r.Err != nil {
			if failed < 5 {
				t.Errorf("message %d (%s): %v", i, msgs[i].ID, r.Err)
			}
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d messages failed", failed, len(msgs))
	}
}

// requireEachOnce fails unless got holds exactly the sent ids, each once,
// with the payloads that were sent.
func requireEachOnce(t *testing.T, sent []adapters.Message, got []Received) {
	t.Helper()
	want := make(map[string][]byte, len(sent))
	for _, m := range sent {
		want[m.ID] = m.Payload
	}
	seen := make(map[string]bool, len(got))
	for _, r := range got {
		payload, ok := want[r.ID]
		switch {
		case !ok:
			t.Errorf("received id %q that was not published (or should have failed)", r.ID)
		case seen[r.ID]:
			t.Errorf("received id %q more than once", r.ID)
		case !bytes.Equal(payload, r.Payload):
			t.Errorf("id %q: payload changed on the way", r.ID)
		}
		seen[r.ID] = true
	}
	for _, m := range sent {
		if !seen[m.ID] {
			t.Errorf("published id %q never arrived", m.ID)
		}
	}
}

// paddedPayload returns a JSON object of exactly n bytes (n >= 12).
func paddedPayload(n int) []byte {
	const head, tail = `{"pad":"`, `"}`
	b := make([]byte, 0, n)
	b = append(b, head...)
	b = append(b, bytes.Repeat([]byte("x"), max(n-len(head)-len(tail), 0))...)
	return append(b, tail...)
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := crand.Read(b); err != nil {
		t.Fatalf("random id: %v", err)
	}
	return hex.EncodeToString(b)
}
