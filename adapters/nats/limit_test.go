package nats_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/nats"
)

// MaxMessageBytes is exact for the Structured binding: an event of that
// size is published, one byte more is refused as too large. In the Binary
// binding it stays within what the server takes.
func TestMaxMessageBytesIsTheServersLimit(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	serverMax := maxPayload(t, srv.ClientURL())
	for _, tt := range []struct {
		binding nats.Binding
		exact   bool
	}{{nats.Structured, true}, {nats.Binary, false}} {
		t.Run(tt.binding.String(), func(t *testing.T) {
			iso := newIsolated(t, srv.ClientURL())
			p := iso.connect(t, srv.ClientURL(), nats.WithBinding(tt.binding))
			n := p.MaxMessageBytes()
			if want := nats.PayloadLimit(int64(serverMax), tt.binding); n != want || n <= 0 || n >= serverMax {
				t.Fatalf("MaxMessageBytes() = %d, want PayloadLimit = %d, below the server's %d", n, want, serverMax)
			}
			// A writer that does not publish learns the same from the server.
			if at, err := nats.MaxMessageBytesAt(t.Context(), srv.ClientURL(), nats.WithBinding(tt.binding)); err != nil || at != n {
				t.Errorf("MaxMessageBytesAt = %d, %v; want %d, the connected Publisher's", at, err, n)
			}
			publish := func(size int) error {
				id := uuid.NewString()
				msg := adapters.Message{ID: id, Type: "com.example.limit", PartitionKey: "k",
					TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
				head := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/limit","type":%q,"subject":"data_products/%s",`+
					`"time":"2026-11-01T10:00:00.123456789Z","datacontenttype":"application/json","partitionkey":%q,"traceparent":%q,"data":{"pad":"`,
					id, msg.Type, id, msg.PartitionKey, msg.TraceParent)
				msg.Payload = []byte(head + strings.Repeat("x", size-len(head)-3) + `"}}`)
				return p.Publish(context.Background(), []adapters.Message{msg})[0].Err
			}
			if err := publish(n); err != nil {
				t.Fatalf("an event of MaxMessageBytes() = %d bytes: %v", n, err)
			}
			if !tt.exact {
				return
			}
			if err := publish(n + 1); !errors.Is(err, nats.ErrTooLarge) {
				t.Errorf("an event of %d bytes, one over MaxMessageBytes(): %v, want ErrTooLarge", n+1, err)
			}
		})
	}
}

func TestMaxMessageBytesAtUnreachableServer(t *testing.T) {
	if _, err := nats.MaxMessageBytesAt(t.Context(), "nats://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("MaxMessageBytesAt an unreachable server: %v, want an error naming it", err)
	}
}
