package servicebus

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/heraldhq/herald/adapters"
)

// MaxMessageBytes is the declared entity size less the envelope allowance,
// and the allowance holds in both bindings: an event of exactly that size,
// every attribute set, fits an entity of the declared size as the SDK
// encodes it.
func TestMaxMessageBytesFitsTheEntity(t *testing.T) {
	if _, err := buildConfig([]Option{WithMaxMessageSize(0)}); err == nil || !strings.Contains(err.Error(), "WithMaxMessageSize") {
		t.Errorf("WithMaxMessageSize(0): %v, want an error naming the option", err)
	}
	if got, want := newTestPublisher(t, newFakeSender()).MaxMessageBytes(), DefaultMaxMessageSize-EnvelopeAllowance; got != want {
		t.Errorf("default MaxMessageBytes = %d, want %d", got, want)
	}
	const entity = 64 << 10
	for _, binding := range []Binding{Structured, Binary} {
		t.Run(binding.String(), func(t *testing.T) {
			f := newFakeSender()
			f.maxBatch, f.maxMessage = 8<<10, entity // sent on its own, against the entity's limit
			p := newTestPublisher(t, f, WithMaxMessageSize(entity), WithBinding(binding), WithSessions(true))
			f.sessions = true
			n := p.MaxMessageBytes()
			if n != entity-EnvelopeAllowance {
				t.Fatalf("MaxMessageBytes = %d, want %d", n, entity-EnvelopeAllowance)
			}
			id, key := "0af76519-16cd-43dd-8448-eb211c80319c", "data_products/10000000-0000-4000-8000-000000000001"
			head := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/herald","type":"io.herald.portal.data_product.updated",`+
				`"subject":%q,"time":"2026-11-01T10:00:00.123456789Z","datacontenttype":"application/json",`+
				`"dataschema":"https://schemas.example.com/io.herald.portal.data_product.updated/v1.json","partitionkey":%q,`+
				`"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","data":{"pad":"`, id, key, key)
			payload := head + strings.Repeat("x", n-len(head)-3) + `"}}`
			res := p.Publish(context.Background(), []adapters.Message{{ID: id, Type: "io.herald.portal.data_product.updated",
				PartitionKey: key, Payload: []byte(payload)}})
			if err := res[0].Err; err != nil {
				t.Fatalf("an event of MaxMessageBytes = %d bytes: %v", n, err)
			}
		})
	}
}
