package servicebus

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/adaptertest"
)

// TestConformanceOverSeam runs the shared suite against the Publisher's own
// logic over fakeSender, an in-memory entity with the service's batch and
// size rules. It proves that batching, oversize handling, ordering, context
// and Close behave as the relay needs, given a sender that behaves as
// modelled; it does not prove that Service Bus behaves that way (see
// docs/adapters/servicebus.md for what is proven against what).
//
// BrokerDown, in contrast, uses the real SDK client against a port where
// nothing listens. Duplicates is skipped: Service Bus drops a duplicate
// silently and never reports it, so Result.Duplicate cannot be set.
func TestConformanceOverSeam(t *testing.T) {
	const maxMessage = 32 << 10
	adaptertest.Run(t, adaptertest.Harness{
		Open: func(t *testing.T) (adapters.Publisher, adaptertest.Destination) {
			f := newFakeSender()
			f.maxBatch = 8 << 10 // so that the suite's half-limit payload is sent on its own
			f.maxMessage = maxMessage
			f.dedupe = true
			// The stand-in's entity takes maxMessage: declared, as for a real one.
			return newTestPublisher(t, f, WithMaxMessageSize(maxMessage)), f
		},
		OpenDown: func(t *testing.T) adapters.Publisher {
			return openUnreachable(t, azservicebus.RetryOptions{MaxRetries: -1})
		},
		MaxPayload: maxMessage,
		SettleTime: 100 * time.Millisecond, // the fake stores synchronously
	})
}

// openUnreachable returns a Publisher with a real SDK client for a namespace
// at a local port where nothing listens. It skips the constructor's probe,
// which would fail: this is a Publisher whose broker went away after it was
// made.
func openUnreachable(t *testing.T, retry azservicebus.RetryOptions) *Publisher {
	t.Helper()
	cfg, err := buildConfig([]Option{
		WithLogger(slog.New(slog.DiscardHandler)),
		WithClientOptions(azservicebus.ClientOptions{RetryOptions: retry}),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := deadAddr(t)
	client, err := azservicebus.NewClientFromConnectionString(
		"Endpoint=sb://"+addr+";SharedAccessKeyName=test;SharedAccessKey=test;UseDevelopmentEmulator=true",
		&cfg.clientOptions)
	if err != nil {
		t.Fatal(err)
	}
	s, err := client.NewSender("events", nil)
	if err != nil {
		t.Fatal(err)
	}
	core := newPublisher[*azservicebus.MessageBatch](s, addr, "events", cfg)
	core.closeClient = client.Close
	p := &Publisher{core: core, client: client}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// deadAddr returns a local address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
