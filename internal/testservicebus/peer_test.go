package testservicebus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"

	"github.com/heraldhq/herald/internal/testservicebus"
)

// These tests check each behaviour of the local Service Bus peer that Herald
// and its consumers rely on, through the real azservicebus client: if one
// fails, the peer no longer stands in for Service Bus, and the adapter and
// example tests that run against it prove nothing. What the peer does is
// written down in .ci/servicebus/README.md.

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func newSender(t *testing.T, client *azservicebus.Client, entity string) *azservicebus.Sender {
	t.Helper()
	s, err := client.NewSender(entity, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func newReceiver(t *testing.T, client *azservicebus.Client, queue string, opts *azservicebus.ReceiverOptions) *azservicebus.Receiver {
	t.Helper()
	r, err := client.NewReceiverForQueue(queue, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func send(ctx context.Context, t *testing.T, s *azservicebus.Sender, msgs ...*azservicebus.Message) {
	t.Helper()
	for _, m := range msgs {
		if err := s.SendMessage(ctx, m, nil); err != nil {
			t.Fatalf("send %s: %v", deref(m.MessageID), err)
		}
	}
}

func msg(id string) *azservicebus.Message {
	return &azservicebus.Message{MessageID: new(id), Body: []byte("body of " + id)}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// receiveN receives exactly n messages, failing the test if they do not come
// within the context.
func receiveN(ctx context.Context, t *testing.T, r interface {
	ReceiveMessages(context.Context, int, *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error)
}, n int) []*azservicebus.ReceivedMessage {
	t.Helper()
	var got []*azservicebus.ReceivedMessage
	for len(got) < n {
		msgs, err := r.ReceiveMessages(ctx, n-len(got), nil)
		if err != nil {
			t.Fatalf("received %d of %d: %v", len(got), n, err)
		}
		got = append(got, msgs...)
	}
	return got
}

// expectNone fails the test if a message arrives within wait.
func expectNone(t *testing.T, r interface {
	ReceiveMessages(context.Context, int, *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error)
}, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	msgs, err := r.ReceiveMessages(ctx, 10, nil)
	if len(msgs) > 0 {
		t.Fatalf("received %d unexpected message(s), the first %s", len(msgs), msgs[0].MessageID)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}

func ids(msgs []*azservicebus.ReceivedMessage) string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.MessageID
	}
	return strings.Join(out, ",")
}

func peekCount(ctx context.Context, t *testing.T, r *azservicebus.Receiver) int {
	t.Helper()
	msgs, err := r.PeekMessages(ctx, 100, nil)
	if err != nil {
		t.Fatalf("peek: %v", err)
	}
	return len(msgs)
}

// TestMessageArrivesAsSent: the bare message (id, subject, content type,
// application properties with their AMQP types, body) comes back as sent,
// with the broker's own annotations (sequence number, enqueued time, lock).
func TestMessageArrivesAsSent(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.Queue)
	ctx := ctxFor(t, 20*time.Second)
	s := newSender(t, client, queue)
	sent := &azservicebus.Message{
		MessageID:   new("m-1"),
		Subject:     new("io.herald.test.sent"),
		ContentType: new("application/cloudevents+json"),
		Body:        []byte(`{"z" : 1,"a":"h\u00e9llo ✓"}`),
		ApplicationProperties: map[string]any{
			"cloudEvents:id": "m-1", "cloudEvents:retries": int64(3), "cloudEvents:replayed": false,
		},
		PartitionKey: new("pk-1"),
	}
	send(ctx, t, s, sent, msg("m-2"))
	r := newReceiver(t, client, queue, nil)
	got := receiveN(ctx, t, r, 2)
	m := got[0]
	if m.MessageID != "m-1" || deref(m.Subject) != *sent.Subject || deref(m.ContentType) != *sent.ContentType {
		t.Errorf("id %q subject %q content type %q, want those sent", m.MessageID, deref(m.Subject), deref(m.ContentType))
	}
	if !bytes.Equal(m.Body, sent.Body) {
		t.Errorf("body %q, want %q", m.Body, sent.Body)
	}
	for k, want := range sent.ApplicationProperties {
		if got := m.ApplicationProperties[k]; got != want {
			t.Errorf("application property %s = %#v (%T), want %#v (%T)", k, got, got, want, want)
		}
	}
	if deref(m.PartitionKey) != "pk-1" {
		t.Errorf("partition key %q, want pk-1", deref(m.PartitionKey))
	}
	if m.DeliveryCount != 1 {
		t.Errorf("delivery count %d on the first delivery, want 1", m.DeliveryCount)
	}
	if m.SequenceNumber == nil || got[1].SequenceNumber == nil || *got[1].SequenceNumber <= *m.SequenceNumber {
		t.Errorf("sequence numbers %v, %v: want increasing", m.SequenceNumber, got[1].SequenceNumber)
	}
	if m.EnqueuedTime == nil || time.Since(*m.EnqueuedTime) > time.Minute {
		t.Errorf("enqueued time %v, want just now", m.EnqueuedTime)
	}
	// q- queues lock for 30s.
	if m.LockedUntil == nil || time.Until(*m.LockedUntil) < 20*time.Second || time.Until(*m.LockedUntil) > 31*time.Second {
		t.Errorf("locked until %v, want about 30s from now", m.LockedUntil)
	}
	if m.LockToken == got[1].LockToken || m.LockToken == [16]byte{} {
		t.Errorf("lock tokens %x and %x: want distinct, set", m.LockToken, got[1].LockToken)
	}
}

// TestCompleteRemoves: a completed message is gone; one not settled is
// still held (peek sees locked messages too).
func TestCompleteRemoves(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.Queue)
	ctx := ctxFor(t, 20*time.Second)
	send(ctx, t, newSender(t, client, queue), msg("a"), msg("b"))
	r := newReceiver(t, client, queue, nil)
	got := receiveN(ctx, t, r, 2)
	if err := r.CompleteMessage(ctx, got[0], nil); err != nil {
		t.Fatal(err)
	}
	peeked, err := r.PeekMessages(ctx, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(peeked) != 1 || peeked[0].MessageID != "b" {
		t.Fatalf("peek after completing a: %d message(s), want b alone", len(peeked))
	}
	if err := r.CompleteMessage(ctx, got[1], nil); err != nil {
		t.Fatal(err)
	}
	if n := peekCount(ctx, t, r); n != 0 {
		t.Fatalf("peek after completing both: %d message(s)", n)
	}
}

// TestAbandonRedelivers: an abandoned message comes back at once with its
// delivery count raised and the properties the abandon set.
func TestAbandonRedelivers(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.Queue)
	ctx := ctxFor(t, 20*time.Second)
	send(ctx, t, newSender(t, client, queue), msg("a"))
	r := newReceiver(t, client, queue, nil)
	first := receiveN(ctx, t, r, 1)[0]
	if err := r.AbandonMessage(ctx, first, &azservicebus.AbandonMessageOptions{
		PropertiesToModify: map[string]any{"failure": "side effect down"},
	}); err != nil {
		t.Fatal(err)
	}
	again := receiveN(ctx, t, r, 1)[0]
	if again.MessageID != "a" || again.DeliveryCount != 2 {
		t.Fatalf("after abandon: %s with delivery count %d, want a with 2", again.MessageID, again.DeliveryCount)
	}
	if again.ApplicationProperties["failure"] != "side effect down" {
		t.Errorf("application properties %v, want failure set by the abandon", again.ApplicationProperties)
	}
	if !bytes.Equal(again.Body, first.Body) {
		t.Errorf("body changed on redelivery: %q, was %q", again.Body, first.Body)
	}
	if err := r.CompleteMessage(ctx, again, nil); err != nil {
		t.Fatal(err)
	}
}

func deadLetterReceiver(t *testing.T, client *azservicebus.Client, queue string) *azservicebus.Receiver {
	t.Helper()
	return newReceiver(t, client, queue, &azservicebus.ReceiverOptions{SubQueue: azservicebus.SubQueueDeadLetter})
}

// TestMaxDeliveryCountDeadLetters: after MaxDeliveryCount deliveries (3 on
// lock- queues) the message moves to the dead-letter queue, with the reason.
func TestMaxDeliveryCountDeadLetters(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.ShortLockQueue)
	ctx := ctxFor(t, 20*time.Second)
	send(ctx, t, newSender(t, client, queue), msg("poison"))
	r := newReceiver(t, client, queue, nil)
	for want := uint32(1); want <= 3; want++ {
		m := receiveN(ctx, t, r, 1)[0]
		if m.DeliveryCount != want {
			t.Fatalf("delivery count %d, want %d", m.DeliveryCount, want)
		}
		if err := r.AbandonMessage(ctx, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	expectNone(t, r, 500*time.Millisecond)
	dl := receiveN(ctx, t, deadLetterReceiver(t, client, queue), 1)[0]
	if dl.MessageID != "poison" || deref(dl.DeadLetterReason) != "MaxDeliveryCountExceeded" {
		t.Fatalf("dead letter %s, reason %q: want poison, MaxDeliveryCountExceeded", dl.MessageID, deref(dl.DeadLetterReason))
	}
	if deref(dl.DeadLetterSource) != queue {
		t.Errorf("dead-letter source %q, want %q", deref(dl.DeadLetterSource), queue)
	}
}

// TestDeadLetterMessage: an explicit dead letter keeps its reason and
// description, and leaves the queue.
func TestDeadLetterMessage(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.Queue)
	ctx := ctxFor(t, 20*time.Second)
	send(ctx, t, newSender(t, client, queue), msg("bad"), msg("good"))
	r := newReceiver(t, client, queue, nil)
	got := receiveN(ctx, t, r, 2)
	if err := r.DeadLetterMessage(ctx, got[0], &azservicebus.DeadLetterOptions{
		Reason: new("schema"), ErrorDescription: new("data.name missing"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.CompleteMessage(ctx, got[1], nil); err != nil {
		t.Fatal(err)
	}
	if n := peekCount(ctx, t, r); n != 0 {
		t.Fatalf("queue holds %d message(s) after dead-lettering one and completing the other", n)
	}
	dl := receiveN(ctx, t, deadLetterReceiver(t, client, queue), 1)[0]
	if dl.MessageID != "bad" || deref(dl.DeadLetterReason) != "schema" || deref(dl.DeadLetterErrorDescription) != "data.name missing" {
		t.Fatalf("dead letter %s (%q: %q), want bad (schema: data.name missing)",
			dl.MessageID, deref(dl.DeadLetterReason), deref(dl.DeadLetterErrorDescription))
	}
}

// TestLockExpiryRedelivers: a lock that runs out (2s on lock- queues) gives
// the message to the next receiver with its delivery count raised, and the
// late settlement fails with a lost lock.
func TestLockExpiryRedelivers(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.ShortLockQueue)
	ctx := ctxFor(t, 20*time.Second)
	send(ctx, t, newSender(t, client, queue), msg("slow"))
	r := newReceiver(t, client, queue, nil)
	first := receiveN(ctx, t, r, 1)[0]
	if first.LockedUntil == nil || time.Until(*first.LockedUntil) > 2*time.Second {
		t.Fatalf("locked until %v, want within 2s", first.LockedUntil)
	}
	again := receiveN(ctx, t, r, 1)[0]
	if again.MessageID != "slow" || again.DeliveryCount != 2 {
		t.Fatalf("after lock expiry: %s with delivery count %d, want slow with 2", again.MessageID, again.DeliveryCount)
	}
	var sbErr *azservicebus.Error
	if err := r.CompleteMessage(ctx, first, nil); !errors.As(err, &sbErr) || sbErr.Code != azservicebus.CodeLockLost {
		t.Fatalf("completing with the expired lock: err = %v, want CodeLockLost", err)
	}
	if err := r.CompleteMessage(ctx, again, nil); err != nil {
		t.Fatal(err)
	}
}

// TestRenewLock: renewing keeps a message locked past its lock duration, so
// no other receiver gets it and it can still be completed.
func TestRenewLock(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.ShortLockQueue)
	ctx := ctxFor(t, 20*time.Second)
	send(ctx, t, newSender(t, client, queue), msg("long"))
	r := newReceiver(t, client, queue, nil)
	m := receiveN(ctx, t, r, 1)[0]
	firstLock := *m.LockedUntil
	for range 4 { // 4 × 1s is twice the 2s lock
		time.Sleep(time.Second)
		if err := r.RenewMessageLock(ctx, m, nil); err != nil {
			t.Fatalf("renew: %v", err)
		}
	}
	if !m.LockedUntil.After(firstLock.Add(3 * time.Second)) {
		t.Errorf("locked until %v after renewing, first %v: want it moved on", m.LockedUntil, firstLock)
	}
	other := newReceiver(t, client, queue, nil)
	expectNone(t, other, 500*time.Millisecond)
	if err := r.CompleteMessage(ctx, m, nil); err != nil {
		t.Fatalf("complete after renewing: %v", err)
	}
}

// TestReceiveAndDelete: messages taken in receive-and-delete mode are gone.
func TestReceiveAndDelete(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.Queue)
	ctx := ctxFor(t, 20*time.Second)
	send(ctx, t, newSender(t, client, queue), msg("a"), msg("b"))
	r := newReceiver(t, client, queue, &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModeReceiveAndDelete})
	if got := ids(receiveN(ctx, t, r, 2)); got != "a,b" {
		t.Fatalf("received %s, want a,b", got)
	}
	if n := peekCount(ctx, t, r); n != 0 {
		t.Fatalf("%d message(s) left after receive-and-delete", n)
	}
}

// TestBatchFormat: a MessageBatch goes as one transfer in Service Bus's batch
// format and is stored as its messages, each with its own properties.
func TestBatchFormat(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.Queue)
	ctx := ctxFor(t, 20*time.Second)
	s := newSender(t, client, queue)
	batch, err := s.NewMessageBatch(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 10 {
		id := fmt.Sprintf("b-%d", i)
		want = append(want, id)
		if err := batch.AddMessage(&azservicebus.Message{MessageID: new(id), Body: []byte(id),
			ApplicationProperties: map[string]any{"n": int64(i)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SendMessageBatch(ctx, batch, nil); err != nil {
		t.Fatal(err)
	}
	got := receiveN(ctx, t, newReceiver(t, client, queue, &azservicebus.ReceiverOptions{
		ReceiveMode: azservicebus.ReceiveModeReceiveAndDelete}), 10)
	if ids(got) != strings.Join(want, ",") {
		t.Fatalf("received %s, want %s", ids(got), strings.Join(want, ","))
	}
	for i, m := range got {
		if string(m.Body) != want[i] || m.ApplicationProperties["n"] != int64(i) {
			t.Errorf("message %d: body %q, n %#v", i, m.Body, m.ApplicationProperties["n"])
		}
	}
}

// TestMaxMessageSize: the entity's maximum message size (256 KB Standard) is
// announced on the link, so the SDK's MessageBatch and SendMessage measure
// against it, and a queue set to 1 MB takes a 300 KB message.
func TestMaxMessageSize(t *testing.T) {
	client := testservicebus.Client(t)
	ctx := ctxFor(t, 20*time.Second)
	s := newSender(t, client, testservicebus.Name(t, testservicebus.Queue))
	batch, err := s.NewMessageBatch(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.AddMessage(&azservicebus.Message{Body: make([]byte, 250<<10)}, nil); err != nil {
		t.Fatalf("250 KB message into an empty batch: %v", err)
	}
	if err := batch.AddMessage(&azservicebus.Message{Body: make([]byte, 10<<10)}, nil); !errors.Is(err, azservicebus.ErrMessageTooLarge) {
		t.Fatalf("another 10 KB past 256 KB: err = %v, want ErrMessageTooLarge", err)
	}
	if err := s.SendMessage(ctx, &azservicebus.Message{Body: make([]byte, 300<<10)}, nil); !errors.Is(err, azservicebus.ErrMessageTooLarge) {
		t.Fatalf("300 KB message: err = %v, want ErrMessageTooLarge", err)
	}
	large := newSender(t, client, testservicebus.Name(t, testservicebus.LargeQueue))
	if err := large.SendMessage(ctx, &azservicebus.Message{Body: make([]byte, 300<<10)}, nil); err != nil {
		t.Fatalf("300 KB message to a 1 MB queue: %v", err)
	}
}

// TestDuplicateDetection: a MessageId seen inside the window is accepted and
// dropped, alone or in a batch; a queue without duplicate detection keeps
// both; and once the window (2s on shortdup- queues) has passed, the id is
// stored again.
func TestDuplicateDetection(t *testing.T) {
	client := testservicebus.Client(t)
	ctx := ctxFor(t, 30*time.Second)
	count := func(queue string, sendTwice func(s *azservicebus.Sender)) string {
		s := newSender(t, client, queue)
		sendTwice(s)
		r := newReceiver(t, client, queue, &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModeReceiveAndDelete})
		var got []*azservicebus.ReceivedMessage
		for {
			c, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
			msgs, err := r.ReceiveMessages(c, 10, nil)
			cancel()
			got = append(got, msgs...)
			if len(msgs) == 0 {
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatal(err)
				}
				return ids(got)
			}
		}
	}
	twice := func(s *azservicebus.Sender) {
		send(ctx, t, s, msg("d-1"), msg("d-2"))
		batch, err := s.NewMessageBatch(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []*azservicebus.Message{msg("d-1"), msg("d-3"), msg("d-2")} {
			if err := batch.AddMessage(m, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SendMessageBatch(ctx, batch, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(testservicebus.Name(t, testservicebus.Queue), twice); got != "d-1,d-2,d-3" {
		t.Errorf("with duplicate detection: received %s, want d-1,d-2,d-3", got)
	}
	if got := count(testservicebus.Name(t, testservicebus.PlainQueue), twice); got != "d-1,d-2,d-1,d-3,d-2" {
		t.Errorf("without duplicate detection: received %s, want d-1,d-2,d-1,d-3,d-2", got)
	}
	afterWindow := func(s *azservicebus.Sender) {
		send(ctx, t, s, msg("w-1"))
		time.Sleep(2500 * time.Millisecond)
		send(ctx, t, s, msg("w-1"))
	}
	if got := count(testservicebus.Name(t, testservicebus.ShortDedupeQueue), afterWindow); got != "w-1,w-1" {
		t.Errorf("re-sent after the 2s window: received %s, want w-1,w-1", got)
	}
}

// TestTopicSubscriptionsFilterOnSubject: each subscription gets its own copy
// of what its rule matches; "created" filters on Subject.
func TestTopicSubscriptionsFilterOnSubject(t *testing.T) {
	client := testservicebus.Client(t)
	topic := testservicebus.Name(t, testservicebus.Topic)
	ctx := ctxFor(t, 20*time.Second)
	s := newSender(t, client, topic)
	send(ctx, t, s,
		&azservicebus.Message{MessageID: new("c-1"), Subject: new("com.example.herald.test.created")},
		&azservicebus.Message{MessageID: new("u-1"), Subject: new("com.example.herald.test.updated")},
		&azservicebus.Message{MessageID: new("c-2"), Subject: new("com.example.herald.test.created")})
	sub := func(name string) *azservicebus.Receiver {
		r, err := client.NewReceiverForSubscription(topic, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close(context.Background()) })
		return r
	}
	all, created := sub("all"), sub("created")
	if got := ids(receiveN(ctx, t, all, 3)); got != "c-1,u-1,c-2" {
		t.Errorf("subscription all: %s, want c-1,u-1,c-2", got)
	}
	got := receiveN(ctx, t, created, 2)
	if ids(got) != "c-1,c-2" {
		t.Errorf("subscription created: %s, want c-1,c-2", ids(got))
	}
	if err := created.CompleteMessage(ctx, got[0], nil); err != nil {
		t.Fatal(err)
	}
	expectNone(t, created, 500*time.Millisecond)
	_, err := sub("missing").ReceiveMessages(ctx, 1, nil)
	requireCondition(t, err, amqp.ErrCondNotFound, "receiving from a missing subscription")
}

// TestSessionEntityRefusesMessageWithoutSessionID: a session-enabled queue
// takes no message without a SessionId, and no receiver without a session.
func TestSessionEntityRefusesMessageWithoutSessionID(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.SessionQueue)
	ctx := ctxFor(t, 20*time.Second)
	s := newSender(t, client, queue)
	err := s.SendMessage(ctx, msg("no-session"), nil)
	if err == nil || !strings.Contains(err.Error(), "not-allowed") {
		t.Fatalf("message without SessionId to a session queue: err = %v, want not-allowed", err)
	}
	r := newReceiver(t, client, queue, nil)
	if _, err := r.ReceiveMessages(ctx, 1, nil); err == nil || !strings.Contains(err.Error(), "not-allowed") {
		t.Fatalf("a plain receiver on a session queue: err = %v, want not-allowed", err)
	}
	if _, err := client.AcceptNextSessionForQueue(ctx, testservicebus.Name(t, testservicebus.Queue), nil); err == nil ||
		!strings.Contains(err.Error(), "not-allowed") {
		t.Fatalf("a session receiver on a queue without sessions: err = %v, want not-allowed", err)
	}
}

func requireCondition(t *testing.T, err error, cond amqp.ErrCond, what string) {
	t.Helper()
	var amqpErr *amqp.Error
	if !errors.As(err, &amqpErr) || amqpErr.Condition != cond {
		t.Fatalf("%s: err = %v, want AMQP condition %s", what, err, cond)
	}
}

func sessionMsg(id, session string) *azservicebus.Message {
	m := msg(id)
	m.SessionID = new(session)
	return m
}

func acceptSession(ctx context.Context, t *testing.T, client *azservicebus.Client, queue, id string) *azservicebus.SessionReceiver {
	t.Helper()
	r, err := client.AcceptSessionForQueue(ctx, queue, id, nil)
	if err != nil {
		t.Fatalf("accept session %s: %v", id, err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

// TestSessionsInOrder: a session receiver gets only its session's messages,
// in the order sent, and the next free session is the one with the oldest
// message.
func TestSessionsInOrder(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.SessionQueue)
	ctx := ctxFor(t, 20*time.Second)
	send(ctx, t, newSender(t, client, queue),
		sessionMsg("b-1", "B"), sessionMsg("a-1", "A"), sessionMsg("b-2", "B"), sessionMsg("a-2", "A"),
		sessionMsg("a-3", "A"), sessionMsg("b-3", "B"))
	a := acceptSession(ctx, t, client, queue, "A")
	got := receiveN(ctx, t, a, 3)
	if ids(got) != "a-1,a-2,a-3" {
		t.Fatalf("session A: %s, want a-1,a-2,a-3", ids(got))
	}
	for _, m := range got {
		if deref(m.SessionID) != "A" {
			t.Errorf("message %s in session A has SessionID %q", m.MessageID, deref(m.SessionID))
		}
		if err := a.CompleteMessage(ctx, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	expectNone(t, a, 300*time.Millisecond)
	next, err := client.AcceptNextSessionForQueue(ctx, queue, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = next.Close(context.Background()) })
	if next.SessionID() != "B" {
		t.Fatalf("next session %q, want B", next.SessionID())
	}
	if next.LockedUntil().Before(time.Now()) {
		t.Errorf("session locked until %v, in the past", next.LockedUntil())
	}
	if got := ids(receiveN(ctx, t, next, 3)); got != "b-1,b-2,b-3" {
		t.Fatalf("session B: %s, want b-1,b-2,b-3", got)
	}
	if err := next.RenewSessionLock(ctx, nil); err != nil {
		t.Fatalf("renew session lock: %v", err)
	}
}

// TestOneReceiverPerSession: a session held by one receiver cannot be
// accepted by another until it is closed, and an abandoned message comes
// back to the same session first, so order holds across redelivery.
func TestOneReceiverPerSession(t *testing.T) {
	client := testservicebus.Client(t)
	queue := testservicebus.Name(t, testservicebus.SessionQueue)
	ctx := ctxFor(t, 30*time.Second)
	send(ctx, t, newSender(t, client, queue), sessionMsg("k-1", "K"), sessionMsg("k-2", "K"))
	first := acceptSession(ctx, t, client, queue, "K")
	m := receiveN(ctx, t, first, 1)[0]
	if m.MessageID != "k-1" {
		t.Fatalf("first message of K: %s", m.MessageID)
	}
	var sbErr *azservicebus.Error
	if _, err := client.AcceptSessionForQueue(ctx, queue, "K", nil); err == nil ||
		!strings.Contains(err.Error(), "session-cannot-be-locked") {
		t.Fatalf("accepting K a second time: err = %v (%v), want session-cannot-be-locked", err, errors.As(err, &sbErr))
	}
	// The peer answers when the timeout the SDK sends runs out, which the
	// SDK sets a hair before the context's deadline: either may win.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if r, err := client.AcceptNextSessionForQueue(short, queue, nil); err == nil {
		_ = r.Close(ctx)
		t.Fatalf("accepted session %q while the only one, K, is held", r.SessionID())
	} else if timedOut := errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeTimeout; !timedOut && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("accept next session with none free: err = %v, want CodeTimeout or the deadline", err)
	}
	if err := first.AbandonMessage(ctx, m, nil); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	second := acceptSession(ctx, t, client, queue, "K")
	got := receiveN(ctx, t, second, 2)
	if ids(got) != "k-1,k-2" || got[0].DeliveryCount != 2 {
		t.Fatalf("K after abandon and close: %s (k-1 delivery count %d), want k-1,k-2 with k-1 at 2",
			ids(got), got[0].DeliveryCount)
	}
}

// TestSessionSubscription: a session-enabled subscription takes a topic's
// messages per session.
func TestSessionSubscription(t *testing.T) {
	client := testservicebus.Client(t)
	topic := testservicebus.Name(t, testservicebus.SessionTopic)
	ctx := ctxFor(t, 20*time.Second)
	send(ctx, t, newSender(t, client, topic), sessionMsg("x-1", "X"), sessionMsg("y-1", "Y"), sessionMsg("x-2", "X"))
	r, err := client.AcceptSessionForSubscription(ctx, topic, "ordered", "X", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close(context.Background()) }()
	if got := ids(receiveN(ctx, t, r, 2)); got != "x-1,x-2" {
		t.Fatalf("session X of the subscription: %s, want x-1,x-2", got)
	}
}

// TestMissingEntityAndBadKey: a name no entity has, and a connection string
// with the wrong key, fail as Service Bus fails them.
func TestMissingEntityAndBadKey(t *testing.T) {
	client := testservicebus.Client(t)
	ctx := ctxFor(t, 20*time.Second)
	var sbErr *azservicebus.Error
	s := newSender(t, client, "no-such-entity")
	requireCondition(t, s.SendMessage(ctx, msg("x"), nil), amqp.ErrCondNotFound, "send to a missing entity")
	bad := strings.Replace(testservicebus.ConnectionString(), "SharedAccessKey=SAS_KEY_VALUE", "SharedAccessKey=wrong", 1)
	if bad == testservicebus.ConnectionString() {
		t.Skip("HERALD_SERVICEBUS_CONNECTION_STRING has another key; cannot make a wrong one")
	}
	other, err := azservicebus.NewClientFromConnectionString(bad, &azservicebus.ClientOptions{
		RetryOptions: azservicebus.RetryOptions{MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Close(context.Background()) }()
	s2 := newSender(t, other, testservicebus.Name(t, testservicebus.Queue))
	if err := s2.SendMessage(ctx, msg("x"), nil); !errors.As(err, &sbErr) || sbErr.Code != azservicebus.CodeUnauthorizedAccess {
		t.Fatalf("send with a wrong key: err = %v, want CodeUnauthorizedAccess", err)
	}
}

// TestOfficialJavaScriptClient drives the peer with @azure/service-bus,
// Microsoft's JavaScript client (.ci/servicebus/crosscheck.js): send, peek-lock
// receive, complete, abandon, renew, duplicate detection, sessions. A peer
// shaped around the Go SDK's quirks would fail it. The script then leaves a
// message that this test reads with the Go SDK, so both clients agree on
// what a message is.
func TestOfficialJavaScriptClient(t *testing.T) {
	queue := testservicebus.Name(t, testservicebus.Queue)
	sessionQueue := testservicebus.Name(t, testservicebus.SessionQueue)
	handoff := testservicebus.Name(t, testservicebus.Queue)
	ctx := ctxFor(t, 90*time.Second)
	out, err := testservicebus.RunNode(ctx, t, "crosscheck.js", queue, sessionQueue, handoff)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "crosscheck: ok") {
		t.Fatalf("crosscheck.js did not finish:\n%s", out)
	}
	client := testservicebus.Client(t)
	r := newReceiver(t, client, handoff, nil)
	m := receiveN(ctx, t, r, 1)[0]
	if m.MessageID != "from-js" || string(m.Body) != `{"hello":"go"}` || deref(m.ContentType) != "application/json" ||
		deref(m.Subject) != "io.herald.handoff" || m.ApplicationProperties["origin"] != "js" {
		t.Fatalf("message from the JavaScript client: %+v", m)
	}
	if err := r.CompleteMessage(ctx, m, nil); err != nil {
		t.Fatal(err)
	}
}
