package servicebus

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/adaptertest"
	"github.com/heraldhq/herald/internal/testservicebus"
)

// The tests in this file run the Publisher, with the real azservicebus
// client, against the local Service Bus peer .ci/servicebus.sh starts
// (internal/testservicebus; skipped without it unless
// HERALD_REQUIRE_SERVICES=1). What the peer is faithful to, and what it is
// not, is in .ci/servicebus/README.md.

// TestConformanceAgainstPeer runs the shared suite through the real SDK, to
// a session-enabled queue with WithSessions, read back by session receivers:
// each partition key is a session, so PartitionKeyOrder checks the order a
// Service Bus consumer sees. Duplicates is skipped, as against a real
// namespace (Service Bus never reports a duplicate); TestDuplicateDetection
// AgainstPeer checks what can be checked instead. BrokerDown goes through a
// TCP proxy to the peer that the test shuts.
func TestConformanceAgainstPeer(t *testing.T) {
	testservicebus.Require(t)
	adaptertest.Run(t, adaptertest.Harness{
		Open: func(t *testing.T) (adapters.Publisher, adaptertest.Destination) {
			queue := testservicebus.Name(t, testservicebus.SessionQueue)
			p, err := NewFromConnectionString(t.Context(), testservicebus.ConnectionString(), queue, quiet, WithSessions(true))
			if err != nil {
				t.Fatal(err)
			}
			return p, newSessionReader(t, queue)
		},
		OpenDown: func(t *testing.T) adapters.Publisher {
			proxy := testservicebus.NewProxy(t)
			p, err := NewFromConnectionString(t.Context(), proxy.ConnectionString(),
				testservicebus.Name(t, testservicebus.SessionQueue), quiet, WithSessions(true))
			if err != nil {
				t.Fatal(err)
			}
			proxy.Stop()
			return p
		},
		MaxPayload: DefaultMaxMessageSize,
		// Reading a session costs an accept: LargeBatch's keyless events are
		// a session each.
		ReceiveTimeout: time.Minute,
		SettleTime:     time.Second,
		Dedupe:         false,
	})
}

// sessionReader reads a session-enabled queue one session at a time, as a
// consumer that keeps each key's order does, completing what it reads.
// Peek-lock, not receive-and-delete: a message the peer had sent when a
// short receive call gave up would be lost with the session's link.
type sessionReader struct {
	client *azservicebus.Client
	queue  string
}

func newSessionReader(t *testing.T, queue string) *sessionReader {
	t.Helper()
	client, err := azservicebus.NewClientFromConnectionString(testservicebus.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_ = client.Close(ctx)
	})
	return &sessionReader{client: client, queue: queue}
}

// Receive implements adaptertest.Destination.
func (r *sessionReader) Receive(ctx context.Context, max int) ([]adaptertest.Received, error) {
	var got []adaptertest.Received
	for len(got) < max && ctx.Err() == nil {
		session, err := r.client.AcceptNextSessionForQueue(ctx, r.queue, nil)
		if err != nil {
			var sbErr *azservicebus.Error
			if ctx.Err() != nil || errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeTimeout {
				continue // no session with messages yet
			}
			return got, err
		}
		got, err = r.drainSession(ctx, session, got, max)
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		_ = session.Close(closeCtx)
		cancel()
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// drainSession reads a session until it has nothing more for a moment, one
// message per call: the SDK releases what arrives after a call has returned,
// and a released message comes back behind the ones still in the client's
// buffer, out of order. With a credit of one, nothing ever arrives late.
func (r *sessionReader) drainSession(ctx context.Context, s *azservicebus.SessionReceiver, got []adaptertest.Received, max int) ([]adaptertest.Received, error) {
	wait := 5 * time.Second // the session was accepted for a message it holds
	for len(got) < max {
		callCtx, cancel := context.WithTimeout(ctx, wait)
		msgs, err := s.ReceiveMessages(callCtx, 1, nil)
		cancel()
		for _, m := range msgs {
			if err := s.CompleteMessage(ctx, m, nil); err != nil {
				return got, err
			}
			got = append(got, adaptertest.Received{ID: m.MessageID, Payload: m.Body})
		}
		if len(msgs) == 0 {
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return got, err
			}
			return got, nil
		}
		wait = 50 * time.Millisecond
	}
	return got, nil
}

// queueIDs reads every message a plain queue holds, deleting it.
func queueIDs(t *testing.T, queue string) []string {
	t.Helper()
	client := testservicebus.Client(t)
	r, err := client.NewReceiverForQueue(queue, &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModeReceiveAndDelete})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		msgs, err := r.ReceiveMessages(ctx, 100, nil)
		cancel()
		for _, m := range msgs {
			ids = append(ids, m.MessageID)
		}
		if len(msgs) == 0 {
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatal(err)
			}
			return ids
		}
	}
}

// TestDuplicateDetectionAgainstPeer publishes events twice, as a relay does
// after a crash between the service's acceptance and marking the rows sent:
// a queue with duplicate detection holds each once, one without it twice
// (which shows the check can fail).
func TestDuplicateDetectionAgainstPeer(t *testing.T) {
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	msgs := []adapters.Message{
		{ID: run + "-1", Type: "t", PartitionKey: "k", Payload: []byte(`{"n":1}`)},
		{ID: run + "-2", Type: "t", Payload: []byte(`{"n":2}`)},
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{testservicebus.Queue, []string{msgs[0].ID, msgs[1].ID}},
		{testservicebus.PlainQueue, []string{msgs[0].ID, msgs[1].ID, msgs[0].ID, msgs[1].ID}},
	} {
		queue := testservicebus.Name(t, tc.prefix)
		p, err := NewFromConnectionString(t.Context(), testservicebus.ConnectionString(), queue, quiet)
		if err != nil {
			t.Fatal(err)
		}
		for attempt := range 2 {
			for i, r := range p.Publish(t.Context(), msgs) {
				if r.Err != nil {
					t.Fatalf("%s, attempt %d, message %d: %v", queue, attempt+1, i, r.Err)
				}
			}
		}
		_ = p.Close()
		if got := queueIDs(t, queue); !slices.Equal(got, tc.want) {
			t.Errorf("%s holds %v, want %v", queue, got, tc.want)
		}
	}
}

// TestSubjectFiltersOnTopic: a subscription rule on Subject (the event
// type, as the adapter maps it) takes only that type from a topic.
func TestSubjectFiltersOnTopic(t *testing.T) {
	topic := testservicebus.Name(t, testservicebus.Topic)
	p, err := NewFromConnectionString(t.Context(), testservicebus.ConnectionString(), topic, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	msgs := []adapters.Message{
		{ID: run + "-c", Type: "com.example.herald.test.created", Payload: []byte(`{}`)},
		{ID: run + "-u", Type: "com.example.herald.test.updated", Payload: []byte(`{}`)},
	}
	for i, r := range p.Publish(t.Context(), msgs) {
		if r.Err != nil {
			t.Fatalf("message %d: %v", i, r.Err)
		}
	}
	client := testservicebus.Client(t)
	r, err := client.NewReceiverForSubscription(topic, "created", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := r.ReceiveMessages(ctx, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	more, _ := r.ReceiveMessages(short, 2, nil)
	got = append(got, more...)
	if len(got) != 1 || got[0].MessageID != msgs[0].ID || deref(got[0].Subject) != msgs[0].Type {
		t.Fatalf("subscription created holds %d message(s), want %s alone", len(got), msgs[0].ID)
	}
}

// TestOpenErrorsAgainstPeer: a wrong key and a missing entity fail the
// constructor with the hint an operator needs, and a publisher without
// sessions to a session queue is refused per event without pausing the
// destination (not-allowed is not marked unavailable).
func TestOpenErrorsAgainstPeer(t *testing.T) {
	testservicebus.Require(t)
	connStr := testservicebus.ConnectionString()
	bad := strings.Replace(connStr, "SharedAccessKey=SAS_KEY_VALUE", "SharedAccessKey=wrong", 1)
	if bad != connStr {
		_, err := NewFromConnectionString(t.Context(), bad, testservicebus.Name(t, testservicebus.Queue), quiet)
		if err == nil || !strings.Contains(err.Error(), "Send claim") || strings.Contains(err.Error(), "wrong") {
			t.Errorf("wrong key: err = %v, want the Send claim hint and no key", err)
		}
	}
	_, err := NewFromConnectionString(t.Context(), connStr, "no-such-queue", quiet)
	if err == nil || !strings.Contains(err.Error(), `"no-such-queue" does not exist`) {
		t.Errorf("missing queue: err = %v, want it named as missing", err)
	}
	p, err := NewFromConnectionString(t.Context(), connStr, testservicebus.Name(t, testservicebus.SessionQueue), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	res := p.Publish(t.Context(), []adapters.Message{{ID: "no-session-1", Type: "t", Payload: []byte(`{}`)}})
	switch err := res[0].Err; {
	case err == nil:
		t.Fatal("a session queue took a message without SessionId")
	case errors.Is(err, adapters.ErrUnavailable) || errors.Is(err, adapters.ErrPermanent):
		t.Errorf("err = %v: not-allowed must be neither unavailable nor permanent", err)
	case !strings.Contains(err.Error(), "not-allowed"):
		t.Errorf("err = %v, want not-allowed", err)
	}
}

// TestCheckAgainstPeer: Check passes while the peer answers and fails once
// the way to it is cut, without a publish.
func TestCheckAgainstPeer(t *testing.T) {
	testservicebus.Require(t)
	proxy := testservicebus.NewProxy(t)
	p, err := NewFromConnectionString(t.Context(), proxy.ConnectionString(),
		testservicebus.Name(t, testservicebus.Queue), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.Check(ctx); err != nil {
		t.Fatalf("Check with the peer up: %v", err)
	}
	proxy.Stop()
	if err := p.Check(ctx); err == nil {
		t.Fatal("Check passed with the way to the peer cut")
	} else {
		t.Logf("Check with the peer cut off: %v", err)
	}
}
