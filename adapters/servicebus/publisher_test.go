package servicebus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"

	"github.com/heraldhq/herald/adapters"
)

// event returns a message whose encoded size depends only on len(key) and
// size, so tests can reason about how many fit in a batch.
func event(n int, key string, size int) adapters.Message {
	id := fmt.Sprintf("evt-%04d", n)
	pad := max(size-len(`{"id":"","pad":""}`)-len(id), 0)
	payload := fmt.Appendf(nil, `{"id":%q,"pad":%q}`, id, strings.Repeat("x", pad))
	return adapters.Message{ID: id, Type: "com.example.order.created", PartitionKey: key, Payload: payload}
}

func ids(msgs []adapters.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func requireAllSent(t *testing.T, msgs []adapters.Message, res []adapters.Result) {
	t.Helper()
	if len(res) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(res), len(msgs))
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("message %d (%s): %v", i, msgs[i].ID, r.Err)
		}
		if r.Duplicate {
			t.Errorf("message %d reported Duplicate; Service Bus never says so", i)
		}
	}
}

// batchLimitFor returns a batch limit that holds exactly n messages like m
// (same key length and payload size), measured with the SDK's accounting.
func batchLimitFor(t *testing.T, cfg Option, m adapters.Message, n int) uint64 {
	t.Helper()
	c, err := buildConfig([]Option{cfg})
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBatch{max: 1 << 30}
	for range n {
		sm, err := c.toMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.AddMessage(sm, nil); err != nil {
			t.Fatal(err)
		}
	}
	return b.size
}

func TestBatchesBySize(t *testing.T) {
	f := newFakeSender()
	f.maxBatch = batchLimitFor(t, WithBinding(Structured), event(0, "", 200), 7)
	p := newTestPublisher(t, f)

	msgs := make([]adapters.Message, 50)
	for i := range msgs {
		msgs[i] = event(i, "", 200)
	}
	requireAllSent(t, msgs, p.Publish(t.Context(), msgs))

	batches := f.sentBatches()
	var sizes []int
	for _, b := range batches {
		sizes = append(sizes, len(b))
	}
	// Batches are filled to the limit, in order: 7 x 7 + 1.
	if want := []int{7, 7, 7, 7, 7, 7, 7, 1}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes %v, want %v", sizes, want)
	}
	if got := f.storedIDs(); !slices.Equal(got, ids(msgs)) {
		t.Errorf("stored %v, want %v", got, ids(msgs))
	}
}

// TestBatchLimitOption: WithMaxBatchBytes goes to NewMessageBatch, below the
// limit the link announces.
func TestBatchLimitOption(t *testing.T) {
	f := newFakeSender()
	f.maxBatch = 1 << 20
	limit := batchLimitFor(t, WithBinding(Structured), event(0, "", 100), 3)
	p := newTestPublisher(t, f, WithMaxBatchBytes(limit))
	msgs := make([]adapters.Message, 9)
	for i := range msgs {
		msgs[i] = event(i, "", 100)
	}
	requireAllSent(t, msgs, p.Publish(t.Context(), msgs))
	if n := len(f.sentBatches()); n != 3 {
		t.Errorf("%d batches, want 3 of 3 messages", n)
	}
}

func TestOversizeIsPermanentAndHoldsBackItsKey(t *testing.T) {
	f := newFakeSender()
	f.maxBatch = 2048
	f.maxMessage = 8 << 10
	p := newTestPublisher(t, f)
	msgs := []adapters.Message{
		event(1, "k", 100),
		event(2, "k", 9<<10), // larger than a batch and than a single message
		event(3, "k", 100),
		event(4, "j", 100),
	}
	res := p.Publish(t.Context(), msgs)
	err := res[1].Err
	if !errors.Is(err, adapters.ErrPermanent) || !errors.Is(err, ErrTooLarge) || errors.Is(err, adapters.ErrUnavailable) {
		t.Fatalf("oversize message: err = %v, want permanent ErrTooLarge, not unavailable", err)
	}
	for _, limit := range []string{"256 KB", "1 MB", "100 MB"} {
		if !strings.Contains(err.Error(), limit) {
			t.Errorf("error %q does not name the %s limit", err, limit)
		}
	}
	// Its successor with the same key is held back: the relay decides
	// whether it waits for the dead letter. It was not refused itself.
	if err := res[2].Err; !errors.Is(err, ErrEarlierFailed) || errors.Is(err, adapters.ErrPermanent) ||
		errors.Is(err, adapters.ErrUnavailable) || !strings.Contains(err.Error(), "too large") {
		t.Errorf("successor: err = %v, want ErrEarlierFailed naming the cause, neither permanent nor unavailable", err)
	}
	if res[0].Err != nil || res[3].Err != nil {
		t.Errorf("predecessor and other key: %v, %v", res[0].Err, res[3].Err)
	}
	if got, want := f.storedIDs(), []string{msgs[0].ID, msgs[3].ID}; !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}

// TestInvalidEventHoldsBackItsKey: an event refused before any send (an id
// Service Bus cannot carry) holds back the later events of its key too.
func TestInvalidEventHoldsBackItsKey(t *testing.T) {
	f := newFakeSender()
	p := newTestPublisher(t, f)
	bad := event(1, "k", 100)
	bad.ID = strings.Repeat("x", 129)
	msgs := []adapters.Message{bad, event(2, "k", 100), event(3, "", 100)}
	res := p.Publish(t.Context(), msgs)
	if !errors.Is(res[0].Err, ErrInvalidID) || !errors.Is(res[0].Err, adapters.ErrPermanent) {
		t.Errorf("invalid id: err = %v, want permanent ErrInvalidID", res[0].Err)
	}
	if err := res[1].Err; !errors.Is(err, ErrEarlierFailed) || errors.Is(err, adapters.ErrPermanent) {
		t.Errorf("successor: err = %v, want ErrEarlierFailed, not permanent", err)
	}
	if got, want := f.storedIDs(), []string{msgs[2].ID}; !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}

// TestSendTimeout: a send the service never answers is cut off after
// WithSendTimeout, with an error marked unavailable that does not look like
// the caller's deadline; the rest of the Publish fails at once, and all of
// it within MaxPublishTime.
func TestSendTimeout(t *testing.T) {
	f := newFakeSender()
	f.maxBatch = batchLimitFor(t, WithBinding(Structured), event(0, "", 100), 2)
	f.fail = func(ctx context.Context, _ int, _ []*azservicebus.Message) error {
		<-ctx.Done() // a service that never answers
		return ctx.Err()
	}
	p := newTestPublisher(t, f, WithSendTimeout(200*time.Millisecond))
	msgs := []adapters.Message{event(1, "k", 100), event(2, "", 100), event(3, "k", 100), event(4, "", 100)}
	start := time.Now()
	res := p.Publish(t.Context(), msgs)
	took := time.Since(start)
	for i, r := range res {
		if !errors.Is(r.Err, ErrSendTimeout) || !errors.Is(r.Err, adapters.ErrUnavailable) ||
			errors.Is(r.Err, context.DeadlineExceeded) || errors.Is(r.Err, adapters.ErrPermanent) {
			t.Errorf("message %d: err = %v, want ErrSendTimeout marked unavailable, not the caller's deadline", i, r.Err)
		}
	}
	if n := f.attemptCount(); n != 1 {
		t.Errorf("%d send attempts, want 1: the rest fails at once", n)
	}
	if bound := p.MaxPublishTime(len(msgs)); took > bound {
		t.Errorf("Publish took %s, MaxPublishTime = %s", took, bound)
	}
	if d := p.MaxPublishTime(5) - p.MaxPublishTime(4); d != 2*200*time.Millisecond {
		t.Errorf("one more message adds %s to the bound, want two send timeouts", d)
	}
}

// TestLargerThanBatchIsSentAlone: a Premium entity can take a message larger
// than its batch limit; the Publisher sends it on its own, in order.
func TestLargerThanBatchIsSentAlone(t *testing.T) {
	f := newFakeSender()
	f.maxBatch = 2048
	f.maxMessage = 8 << 10
	p := newTestPublisher(t, f)
	msgs := []adapters.Message{event(1, "k", 100), event(2, "k", 4<<10), event(3, "k", 100)}
	requireAllSent(t, msgs, p.Publish(t.Context(), msgs))
	var sizes []int
	for _, b := range f.sentBatches() {
		sizes = append(sizes, len(b))
	}
	if want := []int{1, 1, 1}; !slices.Equal(sizes, want) {
		t.Errorf("sends of %v messages, want %v (the big one alone, order kept)", sizes, want)
	}
	if got := f.storedIDs(); !slices.Equal(got, ids(msgs)) {
		t.Errorf("stored %v, want %v", got, ids(msgs))
	}
}

// TestPartialFailureHoldsBackKeys: a failed batch fails its messages with a
// transient error; later messages with one of their keys are held back, the
// others still go.
func TestPartialFailureHoldsBackKeys(t *testing.T) {
	f := newFakeSender()
	f.maxBatch = batchLimitFor(t, WithBinding(Structured), event(0, "A", 100), 3)
	busy := &amqp.Error{Condition: "com.microsoft:server-busy", Description: "throttled"}
	f.fail = func(_ context.Context, n int, _ []*azservicebus.Message) error {
		if n == 1 {
			return busy
		}
		return nil
	}
	p := newTestPublisher(t, f)
	msgs := []adapters.Message{
		event(1, "A", 100), event(2, "B", 100), event(3, "", 100), // batch 1: fails
		event(4, "A", 100), event(5, "C", 100), event(6, "", 100), // A held back
		event(7, "B", 100), event(8, "C", 100), // B held back
	}
	res := p.Publish(t.Context(), msgs)
	for i := range 3 {
		err := res[i].Err
		if err == nil || errors.Is(err, adapters.ErrPermanent) || !errors.Is(err, busy) || !errors.Is(err, adapters.ErrUnavailable) {
			t.Errorf("message %d in the failed batch: err = %v, want the busy server's error, marked unavailable", i, err)
		}
	}
	for _, i := range []int{3, 6} {
		err := res[i].Err
		if !errors.Is(err, ErrEarlierFailed) || !errors.Is(err, busy) || errors.Is(err, adapters.ErrPermanent) ||
			!errors.Is(err, adapters.ErrUnavailable) {
			t.Errorf("message %d (key %q): err = %v, want ErrEarlierFailed wrapping the cause, unavailable as it is",
				i, msgs[i].PartitionKey, err)
		}
	}
	for _, i := range []int{4, 5, 7} {
		if res[i].Err != nil {
			t.Errorf("message %d (key %q): %v", i, msgs[i].PartitionKey, res[i].Err)
		}
	}
	if got, want := f.storedIDs(), []string{msgs[4].ID, msgs[5].ID, msgs[7].ID}; !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}

// TestEntityFailureStopsThePublish: bad credentials fail every message after
// one attempt instead of one retry cycle per batch, and are logged as an
// error that names the fix.
func TestEntityFailureStopsThePublish(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		hint string
	}{
		{"unauthorized", &azservicebus.Error{Code: azservicebus.CodeUnauthorizedAccess}, "Data Sender"},
		{"entity missing", &amqp.Error{Condition: amqp.ErrCondNotFound}, "does not exist in the namespace"},
		{"entity disabled", &amqp.Error{Condition: "com.microsoft:entity-disabled"}, "disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSender()
			f.maxBatch = batchLimitFor(t, WithBinding(Structured), event(0, "", 100), 2)
			f.fail = func(context.Context, int, []*azservicebus.Message) error { return tc.err }
			var logs bytes.Buffer
			p := newTestPublisher(t, f, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			msgs := []adapters.Message{event(1, "", 100), event(2, "", 100), event(3, "x", 100), event(4, "", 100)}
			res := p.Publish(t.Context(), msgs)
			for i, r := range res {
				if !errors.Is(r.Err, tc.err) || errors.Is(r.Err, adapters.ErrPermanent) || !errors.Is(r.Err, adapters.ErrUnavailable) {
					t.Errorf("message %d: err = %v, want one wrapping %v and adapters.ErrUnavailable, not permanent", i, r.Err, tc.err)
				}
			}
			if n := f.attemptCount(); n != 1 {
				t.Errorf("%d send attempts, want 1", n)
			}
			if !strings.Contains(res[0].Err.Error(), tc.hint) {
				t.Errorf("error %q does not say %q", res[0].Err, tc.hint)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), tc.hint) {
				t.Errorf("log lacks an error naming %q:\n%s", tc.hint, logs.String())
			}
		})
	}
}

func TestCancelledDuringPublish(t *testing.T) {
	f := newFakeSender()
	f.maxBatch = batchLimitFor(t, WithBinding(Structured), event(0, "", 100), 2)
	ctx, cancel := context.WithCancel(t.Context())
	f.fail = func(ctx context.Context, n int, _ []*azservicebus.Message) error {
		if n == 1 {
			cancel()
			return &azservicebus.Error{Code: azservicebus.CodeConnectionLost} // does not wrap ctx's error
		}
		return nil
	}
	p := newTestPublisher(t, f)
	msgs := []adapters.Message{event(1, "", 100), event(2, "", 100), event(3, "", 100), event(4, "", 100)}
	for i, r := range p.Publish(ctx, msgs) {
		// The lost connection came with the caller giving up: the caller's
		// doing wins, and the destination is not blamed.
		if !errors.Is(r.Err, context.Canceled) || errors.Is(r.Err, adapters.ErrUnavailable) {
			t.Errorf("message %d: err = %v, want one wrapping context.Canceled, not unavailable", i, r.Err)
		}
	}
	if n := f.attemptCount(); n != 1 {
		t.Errorf("%d send attempts, want 1", n)
	}
}

// TestCloseCutsSendShort: Close does not wait for a slow broker; the send in
// progress fails with ErrClosed, and so does every later Publish.
func TestCloseCutsSendShort(t *testing.T) {
	f := newFakeSender()
	started := make(chan struct{})
	f.fail = func(ctx context.Context, n int, _ []*azservicebus.Message) error {
		if n == 1 {
			close(started)
		}
		<-ctx.Done() // a broker that never answers
		return ctx.Err()
	}
	p := newTestPublisher(t, f)
	msgs := []adapters.Message{event(1, "", 100), event(2, "k", 100)}

	var res []adapters.Result
	var wg sync.WaitGroup
	wg.Go(func() { res = p.Publish(context.Background(), msgs) })
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("send never started")
	}
	closed := make(chan error)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the hung send")
	}
	wg.Wait()
	for i, r := range res {
		if !errors.Is(r.Err, ErrClosed) || errors.Is(r.Err, adapters.ErrUnavailable) {
			t.Errorf("message %d: err = %v, want ErrClosed, not unavailable", i, r.Err)
		}
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for i, r := range p.Publish(t.Context(), msgs) {
		if !errors.Is(r.Err, ErrClosed) {
			t.Errorf("after Close, message %d: err = %v, want ErrClosed", i, r.Err)
		}
	}
	if !f.closed {
		t.Error("sender not closed")
	}
}

func TestEmptyPublish(t *testing.T) {
	f := newFakeSender()
	p := newTestPublisher(t, f)
	if res := p.Publish(t.Context(), nil); len(res) != 0 {
		t.Errorf("%d results for no messages", len(res))
	}
	if n := f.attemptCount(); n != 0 {
		t.Errorf("%d sends for no messages", n)
	}
}

// TestSessionsCarryTheKey: on a session-enabled entity every message needs a
// SessionId; keyed events get their key, others their own id.
func TestSessionsCarryTheKey(t *testing.T) {
	f := newFakeSender()
	f.sessions = true
	p := newTestPublisher(t, f, WithSessions(true))
	msgs := []adapters.Message{event(1, "acct-1", 100), event(2, "", 100), event(3, "acct-1", 100)}
	requireAllSent(t, msgs, p.Publish(t.Context(), msgs))
	var got []string
	for _, b := range f.sentBatches() {
		for _, m := range b {
			got = append(got, *m.SessionID)
		}
	}
	if want := []string{"acct-1", msgs[1].ID, "acct-1"}; !slices.Equal(got, want) {
		t.Errorf("session ids %v, want %v", got, want)
	}
}

// TestWithoutSessionsOnSessionEntity: the mismatch is a configuration fault;
// the events are retried, not dead-lettered.
func TestWithoutSessionsOnSessionEntity(t *testing.T) {
	f := newFakeSender()
	f.sessions = true
	p := newTestPublisher(t, f)
	for i, r := range p.Publish(t.Context(), []adapters.Message{event(1, "a", 10), event(2, "", 10)}) {
		// not-allowed is left to the relay's own rule: not marked unavailable.
		if r.Err == nil || errors.Is(r.Err, adapters.ErrPermanent) || errors.Is(r.Err, adapters.ErrUnavailable) {
			t.Errorf("message %d: err = %v, want a transient error, not marked unavailable", i, r.Err)
		}
	}
}

// TestPartitionedBatchesNeverMixPartitions: a partitioned entity refuses a
// batch spanning partitions, so each batch holds one partition key, and a
// key's events keep their order.
func TestPartitionedBatchesNeverMixPartitions(t *testing.T) {
	for _, sessions := range []bool{false, true} {
		t.Run(fmt.Sprintf("sessions=%v", sessions), func(t *testing.T) {
			f := newFakeSender()
			f.partitioned, f.sessions = true, sessions
			p := newTestPublisher(t, f, WithPartitionedEntity(true), WithSessions(sessions))
			keys := []string{"a", "b", "a", "", "c", "b", "a", "", "c"}
			msgs := make([]adapters.Message, len(keys))
			for i, k := range keys {
				msgs[i] = event(i, k, 50)
			}
			requireAllSent(t, msgs, p.Publish(t.Context(), msgs))
			order := map[string][]string{}
			for _, b := range f.sentBatches() {
				for _, m := range b {
					if *m.PartitionKey != *b[0].PartitionKey {
						t.Errorf("batch mixes partitions %q and %q", *b[0].PartitionKey, *m.PartitionKey)
					}
					order[*m.PartitionKey] = append(order[*m.PartitionKey], *m.MessageID)
				}
			}
			for _, k := range []string{"a", "b", "c"} {
				var want []string
				for _, m := range msgs {
					if m.PartitionKey == k {
						want = append(want, m.ID)
					}
				}
				if !slices.Equal(order[k], want) {
					t.Errorf("key %q sent as %v, want %v", k, order[k], want)
				}
			}
			if n := len(f.sentBatches()); n != 5 {
				t.Errorf("%d sends, want 5 (a, b, c, and each keyless event alone)", n)
			}
		})
	}
}

func TestProbeNamesTheFix(t *testing.T) {
	f := newFakeSender()
	p := newTestPublisher(t, f)
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	if err := p.probe(t.Context()); err == nil || !strings.Contains(err.Error(), "fake.servicebus.test/events") {
		t.Errorf("probe of a closed sender: %v, want an error naming the namespace and entity", err)
	}

	bad := &failingBatchSender{fakeSender: newFakeSender(), err: &azservicebus.Error{Code: azservicebus.CodeUnauthorizedAccess}}
	cfg, _ := buildConfig(nil)
	q := newPublisher[*fakeBatch](bad, "ns", "orders", cfg)
	defer func() { _ = q.Close() }()
	err := q.probe(t.Context())
	if err == nil || !strings.Contains(err.Error(), "Azure Service Bus Data Sender") {
		t.Errorf("probe with bad credentials: %v, want the role named", err)
	}
}

// failingBatchSender fails NewMessageBatch, which is where the SDK opens the
// link and so where authorisation fails.
type failingBatchSender struct {
	*fakeSender
	err error
}

func (s *failingBatchSender) NewMessageBatch(context.Context, *azservicebus.MessageBatchOptions) (*fakeBatch, error) {
	return nil, s.err
}

func TestOpeningABatchFails(t *testing.T) {
	s := &failingBatchSender{fakeSender: newFakeSender(), err: &azservicebus.Error{Code: azservicebus.CodeConnectionLost}}
	cfg, _ := buildConfig([]Option{WithLogger(slog.New(slog.DiscardHandler))})
	p := newPublisher[*fakeBatch](s, "ns", "orders", cfg)
	defer func() { _ = p.Close() }()
	res := p.Publish(t.Context(), []adapters.Message{event(1, "k", 10), event(2, "", 10)})
	for i, r := range res {
		if !errors.Is(r.Err, s.err) || errors.Is(r.Err, adapters.ErrPermanent) {
			t.Errorf("message %d: err = %v, want transient wrapping %v", i, r.Err, s.err)
		}
	}
}

func TestErrorClassification(t *testing.T) {
	for _, tc := range []struct {
		err        error
		entityWide bool
		operator   bool
	}{
		{&azservicebus.Error{Code: azservicebus.CodeUnauthorizedAccess}, true, true},
		{&azservicebus.Error{Code: azservicebus.CodeNotFound}, true, true},
		{&azservicebus.Error{Code: azservicebus.CodeConnectionLost}, true, false},
		{&azservicebus.Error{Code: azservicebus.CodeTimeout}, false, false},
		{&amqp.Error{Condition: amqp.ErrCondResourceLimitExceeded}, true, false},
		{&amqp.Error{Condition: "com.microsoft:server-busy"}, false, false},
		{&amqp.Error{Condition: amqp.ErrCondMessageSizeExceeded}, false, false},
		{fmt.Errorf("send: %w", context.DeadlineExceeded), true, false},
		{&amqp.ConnError{}, true, false},
		{errors.New("something else"), false, false},
	} {
		if got := affectsEntity(tc.err); got != tc.entityWide {
			t.Errorf("affectsEntity(%v) = %v", tc.err, got)
		}
		if got := needsOperator(tc.err); got != tc.operator {
			t.Errorf("needsOperator(%v) = %v", tc.err, got)
		}
	}
}

func TestDestinationWide(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&azservicebus.Error{Code: azservicebus.CodeUnauthorizedAccess}, true},
		{&azservicebus.Error{Code: azservicebus.CodeNotFound}, true},
		{&azservicebus.Error{Code: azservicebus.CodeConnectionLost}, true},
		{&azservicebus.Error{Code: azservicebus.CodeTimeout}, true},
		{&amqp.Error{Condition: amqp.ErrCondUnauthorizedAccess}, true},
		{&amqp.Error{Condition: amqp.ErrCondNotFound}, true},
		{&amqp.Error{Condition: amqp.ErrCondResourceLimitExceeded}, true},
		{&amqp.Error{Condition: "com.microsoft:entity-disabled"}, true},
		{&amqp.Error{Condition: "com.microsoft:server-busy"}, true},
		{&amqp.Error{Condition: "com.microsoft:timeout"}, true},
		{&amqp.ConnError{}, true},
		{&amqp.ConnError{RemoteErr: &amqp.Error{Condition: amqp.ErrCondFramingError}}, true},
		{&amqp.SessionError{}, true},
		{&amqp.LinkError{}, true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("send: %w", ErrSendTimeout), true},
		{nonRetriableCredErr{}, true},
		// The messages', the caller's or our own.
		{&amqp.Error{Condition: amqp.ErrCondMessageSizeExceeded}, false},
		{&amqp.LinkError{RemoteErr: &amqp.Error{Condition: amqp.ErrCondMessageSizeExceeded}}, false},
		{&amqp.LinkError{RemoteErr: &amqp.Error{Condition: amqp.ErrCondNotAllowed}}, false},
		{azservicebus.ErrMessageTooLarge, false},
		{&azservicebus.Error{Code: azservicebus.CodeClosed}, false},
		{fmt.Errorf("%w: send cut short: %w", ErrClosed, &amqp.ConnError{}), false},
		{fmt.Errorf("send: %w", context.DeadlineExceeded), false},
		{context.Canceled, false},
		{errors.New("something else"), false},
	} {
		if got := destinationWide(tc.err); got != tc.want {
			t.Errorf("destinationWide(%T %v) = %v, want %v", tc.err, tc.err, got, tc.want)
		}
	}
}

// nonRetriableCredErr is what azidentity's credentials fail with for good.
type nonRetriableCredErr struct{}

func (nonRetriableCredErr) Error() string { return "ClientSecretCredential: authentication failed" }
func (nonRetriableCredErr) NonRetriable() {}

func TestEndpointOf(t *testing.T) {
	for in, want := range map[string]string{
		"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=secret": "ns.servicebus.windows.net",
		"SharedAccessKey=secret;endpoint=sb://127.0.0.1:5672;UseDevelopmentEmulator=true":       "127.0.0.1:5672",
		"SharedAccessKey=secret": "",
	} {
		if got := endpointOf(in); got != want {
			t.Errorf("endpointOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOptions(t *testing.T) {
	if _, err := buildConfig([]Option{WithLogger(nil)}); err == nil {
		t.Error("WithLogger(nil) accepted")
	}
	if _, err := buildConfig([]Option{WithBinding(Binding(7))}); err == nil {
		t.Error("WithBinding(7) accepted")
	}
	cfg, err := buildConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.binding != Structured || cfg.sessions || cfg.partitioned || cfg.clientOptions.RetryOptions != defaultRetryOptions() {
		t.Errorf("defaults: %+v", cfg)
	}
	for _, s := range []string{"structured", "binary"} {
		b, err := ParseBinding(s)
		if err != nil || b.String() != s {
			t.Errorf("ParseBinding(%q) = %v, %v", s, b, err)
		}
	}
	if _, err := ParseBinding("json"); err == nil {
		t.Error(`ParseBinding("json") accepted`)
	}
}
