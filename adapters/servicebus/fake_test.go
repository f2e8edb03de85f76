package servicebus

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"

	"github.com/heraldhq/herald/adapters/adaptertest"
)

// sdkModule and sdkVersion name the SDK release whose conversion of a
// *azservicebus.Message into an AMQP message (Message.toAMQPMessage, which is
// unexported) toAMQP below restates, and whose batch size accounting
// fakeBatch restates. TestSDKVersionIsTheOneRestated fails when go.mod moves
// to another release, so that both get re-read against the new one rather
// than silently drift from what the SDK does.
const (
	sdkModule  = "github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	sdkVersion = "v1.11.0"
)

func TestSDKVersionIsTheOneRestated(t *testing.T) {
	// Test binaries carry no dependency versions in their build info, so
	// read the requirement from go.mod.
	gomod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(gomod)) {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != sdkModule && (fields[0] != "require" || len(fields) < 3 || fields[1] != sdkModule) {
			continue
		}
		version := fields[1]
		if fields[0] == "require" {
			version = fields[2]
		}
		if version != sdkVersion {
			t.Fatalf("go.mod requires %s %s, but toAMQP and fakeBatch restate %s: re-read Message.toAMQPMessage and "+
				"MessageBatch.addAMQPMessage in the new release, update them, then sdkVersion", sdkModule, version, sdkVersion)
		}
		return
	}
	t.Fatalf("go.mod does not require %s", sdkModule)
}

// toAMQP is the AMQP message the SDK puts on the wire for m (inside a batch,
// each message is this, marshalled). It covers the fields toMessage sets and
// refuses the others, so the wire tests cannot pass on a field it ignores.
func toAMQP(m *azservicebus.Message) (*amqp.Message, error) {
	if m.TimeToLive != nil || m.CorrelationID != nil || m.To != nil || m.ReplyTo != nil ||
		m.ReplyToSessionID != nil || m.ScheduledEnqueueTime != nil {
		return nil, fmt.Errorf("toAMQP: message sets a field it does not restate: %+v", m)
	}
	am := &amqp.Message{
		Data: [][]byte{m.Body},
		Properties: &amqp.MessageProperties{
			ContentType: m.ContentType,
			Subject:     m.Subject,
			GroupID:     m.SessionID,
		},
		Annotations: amqp.Annotations{},
	}
	if m.MessageID != nil {
		am.Properties.MessageID = *m.MessageID
	}
	if len(m.ApplicationProperties) > 0 {
		am.ApplicationProperties = make(map[string]any, len(m.ApplicationProperties))
		for k, v := range m.ApplicationProperties {
			am.ApplicationProperties[k] = v
		}
	}
	if m.PartitionKey != nil {
		am.Annotations["x-opt-partition-key"] = *m.PartitionKey
	}
	return am, nil
}

// fakeBatch enforces a byte limit the way the SDK's MessageBatch does: the
// first message's properties, without a body, form the batch envelope, and
// each message then costs its marshalled size plus the binary-section
// overhead (5 bytes below 256, 8 from there).
type fakeBatch struct {
	max  uint64
	size uint64
	msgs []*azservicebus.Message
}

func (b *fakeBatch) AddMessage(m *azservicebus.Message, _ *azservicebus.AddMessageOptions) error {
	am, err := toAMQP(m)
	if err != nil {
		return err
	}
	bin, err := am.MarshalBinary()
	if err != nil {
		return err
	}
	base := b.size
	if len(b.msgs) == 0 {
		envelope := *am
		envelope.Data = nil
		env, err := envelope.MarshalBinary()
		if err != nil {
			return err
		}
		base = uint64(len(env))
	}
	cost := uint64(len(bin)) + 5
	if len(bin) >= 256 {
		cost = uint64(len(bin)) + 8
	}
	if base+cost > b.max {
		return azservicebus.ErrMessageTooLarge
	}
	b.size = base + cost
	b.msgs = append(b.msgs, m)
	return nil
}

func (b *fakeBatch) NumMessages() int32 { return int32(len(b.msgs)) }

// encodedSize is what one message weighs on its own, for SendMessage.
func encodedSize(m *azservicebus.Message) (int, error) {
	am, err := toAMQP(m)
	if err != nil {
		return 0, err
	}
	bin, err := am.MarshalBinary()
	return len(bin), err
}

// fakeSender stands in for *azservicebus.Sender over an in-memory entity. It
// keeps the rules of the service the Publisher relies on: size limits per
// batch and per message, a batch accepted or refused whole, duplicate
// detection by MessageId, sessions required on a session entity, one
// partition per batch on a partitioned entity.
type fakeSender struct {
	maxBatch    uint64 // the batch limit the "link" announces
	maxMessage  int    // the largest single message SendMessage takes
	dedupe      bool
	sessions    bool
	partitioned bool

	// fail, when set, may fail send attempt number n (from 1) before the
	// entity sees it.
	fail func(ctx context.Context, n int, msgs []*azservicebus.Message) error

	mu       sync.Mutex
	attempts int
	batches  [][]*azservicebus.Message // accepted sends, in order
	stored   []*azservicebus.Message   // the entity, after duplicate detection
	seen     map[string]bool
	read     int // stored[:read] was returned by Receive
	closed   bool
}

func newFakeSender() *fakeSender {
	return &fakeSender{maxBatch: 4096, maxMessage: 16 << 10, seen: map[string]bool{}}
}

func (f *fakeSender) NewMessageBatch(ctx context.Context, opts *azservicebus.MessageBatchOptions) (*fakeBatch, error) {
	if err := f.usable(ctx); err != nil {
		return nil, err
	}
	max := f.maxBatch
	if opts != nil && opts.MaxBytes != 0 {
		max = opts.MaxBytes
	}
	return &fakeBatch{max: max}, nil
}

func (f *fakeSender) SendMessageBatch(ctx context.Context, b *fakeBatch, _ *azservicebus.SendMessageBatchOptions) error {
	return f.send(ctx, b.msgs)
}

func (f *fakeSender) SendMessage(ctx context.Context, m *azservicebus.Message, _ *azservicebus.SendMessageOptions) error {
	size, err := encodedSize(m)
	if err != nil {
		return err
	}
	if size > f.maxMessage {
		if err := f.usable(ctx); err != nil {
			return err
		}
		return azservicebus.ErrMessageTooLarge
	}
	return f.send(ctx, []*azservicebus.Message{m})
}

func (f *fakeSender) send(ctx context.Context, msgs []*azservicebus.Message) error {
	if err := f.usable(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	f.attempts++
	n := f.attempts
	f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(ctx, n, msgs); err != nil {
			return err
		}
	}
	if err := f.check(msgs); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, msgs)
	for _, m := range msgs {
		if f.dedupe && f.seen[*m.MessageID] {
			continue // accepted, then dropped: the service does not say so
		}
		f.seen[*m.MessageID] = true
		f.stored = append(f.stored, m)
	}
	return nil
}

// check refuses what the service would refuse for the entity's settings.
func (f *fakeSender) check(msgs []*azservicebus.Message) error {
	for _, m := range msgs {
		if f.sessions && m.SessionID == nil {
			return &amqp.Error{Condition: amqp.ErrCondNotAllowed, Description: "session-enabled entity needs a SessionId"}
		}
		if m.SessionID != nil && m.PartitionKey != nil && *m.SessionID != *m.PartitionKey {
			return &amqp.Error{Condition: amqp.ErrCondNotAllowed, Description: "PartitionKey differs from SessionId"}
		}
		if f.partitioned && partitionOfMsg(m) != partitionOfMsg(msgs[0]) {
			return &amqp.Error{Condition: amqp.ErrCondNotAllowed, Description: "batch spans partitions"}
		}
	}
	return nil
}

func partitionOfMsg(m *azservicebus.Message) string {
	switch {
	case m.PartitionKey != nil:
		return *m.PartitionKey
	case m.SessionID != nil:
		return *m.SessionID
	default:
		return *m.MessageID
	}
}

func (f *fakeSender) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return &azservicebus.Error{Code: azservicebus.CodeClosed}
	}
	return nil
}

func (f *fakeSender) Close(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeSender) sentBatches() [][]*azservicebus.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]*azservicebus.Message(nil), f.batches...)
}

func (f *fakeSender) storedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, len(f.stored))
	for i, m := range f.stored {
		ids[i] = *m.MessageID
	}
	return ids
}

func (f *fakeSender) attemptCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
}

// Receive implements adaptertest.Destination over the stored messages.
func (f *fakeSender) Receive(ctx context.Context, max int) ([]adaptertest.Received, error) {
	var got []adaptertest.Received
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		f.mu.Lock()
		for f.read < len(f.stored) && len(got) < max {
			m := f.stored[f.read]
			f.read++
			got = append(got, adaptertest.Received{ID: *m.MessageID, Payload: m.Body})
		}
		f.mu.Unlock()
		if len(got) >= max {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, nil
		case <-tick.C:
		}
	}
}

// newTestPublisher is a publisher over f with the given options, closed at
// the end of the test.
func newTestPublisher(t *testing.T, f *fakeSender, opts ...Option) *publisher[*fakeBatch] {
	t.Helper()
	cfg, err := buildConfig(append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...))
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher[*fakeBatch](f, "fake.servicebus.test", "events", cfg)
	t.Cleanup(func() { _ = p.Close() })
	return p
}
