package servicebus

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/adaptertest"
	"github.com/heraldhq/herald/internal/testservicebus"
)

// The opt-in end-to-end tests: the real client against a real namespace (or
// the official emulator, where Docker runs it). They run only when
// AZURE_SERVICEBUS_CONNECTION_STRING and AZURE_SERVICEBUS_QUEUE are set, and
// are skipped otherwise, also in CI, which has neither.
//
//	AZURE_SERVICEBUS_CONNECTION_STRING  a policy with Send and Listen on the queue
//	AZURE_SERVICEBUS_QUEUE              a queue without sessions, used by nothing else:
//	                                    each subtest first drains it
//	AZURE_SERVICEBUS_MAX_MESSAGE_BYTES  the entity's message size limit (default 262144,
//	                                    Standard; 1048576 for a Premium default)
//	AZURE_SERVICEBUS_DUPLICATE_DETECTION=1  the queue has duplicate detection on

type liveEnv struct {
	connStr    string
	queue      string
	maxMessage int
}

func liveEnvOrSkip(t *testing.T) liveEnv {
	t.Helper()
	env := liveEnv{
		connStr:    os.Getenv("AZURE_SERVICEBUS_CONNECTION_STRING"),
		queue:      os.Getenv("AZURE_SERVICEBUS_QUEUE"),
		maxMessage: 256 << 10,
	}
	if env.connStr == "" || env.queue == "" {
		t.Skip("set AZURE_SERVICEBUS_CONNECTION_STRING and AZURE_SERVICEBUS_QUEUE to run against Service Bus")
	}
	if s := os.Getenv("AZURE_SERVICEBUS_MAX_MESSAGE_BYTES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("AZURE_SERVICEBUS_MAX_MESSAGE_BYTES=%q: want a positive number", s)
		}
		env.maxMessage = n
	}
	return env
}

func TestConformanceLive(t *testing.T) {
	env := liveEnvOrSkip(t)
	adaptertest.Run(t, adaptertest.Harness{
		Open: func(t *testing.T) (adapters.Publisher, adaptertest.Destination) {
			dest := openQueueReader(t, env)
			dest.drain(t)
			p, err := NewFromConnectionString(t.Context(), env.connStr, env.queue, quiet)
			if err != nil {
				t.Fatal(err)
			}
			return p, dest
		},
		// Through a local TCP proxy that the test then shuts: the client
		// keeps the namespace's host name for TLS (CustomEndpoint only
		// changes where it dials).
		OpenDown: func(t *testing.T) adapters.Publisher {
			proxy := testservicebus.ProxyTo(t, upstreamOf(t, env.connStr))
			p, err := NewFromConnectionString(t.Context(), env.connStr, env.queue, quiet,
				WithClientOptions(azservicebus.ClientOptions{CustomEndpoint: proxy.Addr()}))
			if err != nil {
				t.Fatal(err)
			}
			proxy.Stop()
			return p
		},
		MaxPayload:     env.maxMessage,
		ReceiveTimeout: time.Minute,
		SettleTime:     2 * time.Second,
		// Service Bus drops a duplicate without saying so: see
		// TestDuplicateDetectionLive for what can be checked instead.
		Dedupe: false,
	})
}

// TestDuplicateDetectionLive publishes events twice, as a relay does after a
// crash, and expects the queue to hold each once.
func TestDuplicateDetectionLive(t *testing.T) {
	env := liveEnvOrSkip(t)
	if os.Getenv("AZURE_SERVICEBUS_DUPLICATE_DETECTION") != "1" {
		t.Skip("set AZURE_SERVICEBUS_DUPLICATE_DETECTION=1 when the queue has duplicate detection on")
	}
	dest := openQueueReader(t, env)
	dest.drain(t)
	p, err := NewFromConnectionString(t.Context(), env.connStr, env.queue, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	msgs := []adapters.Message{
		{ID: run + "-1", Type: "t", PartitionKey: "k", Payload: []byte(`{"n":1}`)},
		{ID: run + "-2", Type: "t", Payload: []byte(`{"n":2}`)},
	}
	for attempt := range 2 {
		for i, r := range p.Publish(t.Context(), msgs) {
			if r.Err != nil {
				t.Fatalf("attempt %d, message %d: %v", attempt+1, i, r.Err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := dest.Receive(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != msgs[0].ID || got[1].ID != msgs[1].ID {
		t.Errorf("queue holds %v, want each of %s, %s once", got, msgs[0].ID, msgs[1].ID)
	}
}

// queueReader reads the test queue, deleting what it reads.
type queueReader struct {
	client   *azservicebus.Client
	receiver *azservicebus.Receiver
}

func openQueueReader(t *testing.T, env liveEnv) *queueReader {
	t.Helper()
	client, err := azservicebus.NewClientFromConnectionString(env.connStr, nil)
	if err != nil {
		t.Fatal(err)
	}
	receiver, err := client.NewReceiverForQueue(env.queue,
		&azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModeReceiveAndDelete})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_ = receiver.Close(ctx)
		_ = client.Close(ctx)
	})
	return &queueReader{client: client, receiver: receiver}
}

// drain empties the queue of what earlier subtests or runs left.
func (q *queueReader) drain(t *testing.T) {
	t.Helper()
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		msgs, err := q.receiver.ReceiveMessages(ctx, 100, nil)
		cancel()
		if len(msgs) == 0 {
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("drain: %v", err)
			}
			return
		}
	}
}

// Receive implements adaptertest.Destination.
func (q *queueReader) Receive(ctx context.Context, max int) ([]adaptertest.Received, error) {
	var got []adaptertest.Received
	for len(got) < max && ctx.Err() == nil {
		msgs, err := q.receiver.ReceiveMessages(ctx, max-len(got), nil)
		for _, m := range msgs {
			got = append(got, adaptertest.Received{ID: m.MessageID, Payload: m.Body})
		}
		// ctx ending is how the suite says "enough", not a failure.
		if err != nil && ctx.Err() == nil {
			return got, err
		}
	}
	return got, nil
}

// upstreamOf is the host:port the client dials for a connection string:
// 5671 (AMQP over TLS), or the emulator's plain AMQP port.
func upstreamOf(t *testing.T, connStr string) string {
	t.Helper()
	host := endpointOf(connStr)
	if host == "" {
		t.Fatal("connection string has no Endpoint")
	}
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if strings.Contains(strings.ToLower(connStr), "usedevelopmentemulator=true") {
		return net.JoinHostPort(host, "5672")
	}
	return net.JoinHostPort(host, "5671")
}
