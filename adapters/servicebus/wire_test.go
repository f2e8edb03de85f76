package servicebus

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"maps"
	"os"
	"testing"
	"time"

	"github.com/Azure/go-amqp"

	"github.com/heraldhq/herald/adapters"
)

// amqpBrokerURL is the machine's RabbitMQ, whose AMQP 1.0 plugin .ci/amqp.sh
// turns on. Service Bus speaks AMQP 1.0 too, but no faithful emulator runs
// here, so these tests prove the wire mapping against this real AMQP 1.0
// peer: what toMessage produces, as the SDK would encode it, survives a
// broker round trip with every property the adapter relies on.
const amqpBrokerURL = "amqp://127.0.0.1:5672"

// dialBroker connects with SASL PLAIN guest/guest, or skips the test when
// the broker is not there (fails when HERALD_REQUIRE_SERVICES=1).
func dialBroker(t *testing.T) *amqp.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := amqp.Dial(ctx, amqpBrokerURL, &amqp.ConnOptions{SASLType: amqp.SASLTypePlain("guest", "guest")})
	if err != nil {
		msg := "RabbitMQ with AMQP 1.0 (run .ci/amqp.sh) not reachable at " + amqpBrokerURL + ": " + err.Error()
		if os.Getenv("HERALD_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Closing the connection ends its links too; RabbitMQ 3.x may not
	// answer a receiver's own detach, so links are not closed one by one.
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// testQueue returns a fresh queue address. RabbitMQ declares the queue when a
// link attaches to /queue/<name>; .ci/amqp.sh's policy deletes herald.sb.*
// queues a minute after their last use, since AMQP 1.0 cannot.
func testQueue(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "/queue/herald.sb." + hex.EncodeToString(b)
}

// wireCase is one event, the options it is mapped with, and what a receiver
// must find on the wire.
type wireCase struct {
	name         string
	msg          adapters.Message
	opts         []Option
	messageID    string
	groupID      *string // SessionId
	partitionKey *string // x-opt-partition-key annotation
	contentType  string
	subject      string
	properties   map[string]any
	body         []byte
}

func wireCases() []wireCase {
	stored := storedMessage()
	octets := adapters.Message{
		ID:   "0190b6a8-0000-7000-8000-000000000001",
		Type: "io.herald.blob.stored",
		Payload: []byte(`{"specversion":"1.0","id":"0190b6a8-0000-7000-8000-000000000001","source":"/blobs",` +
			`"type":"io.herald.blob.stored","datacontenttype":"application/octet-stream","data_base64":"AAEC/w=="}`),
	}
	return []wireCase{
		{
			name:        "structured",
			msg:         stored,
			messageID:   stored.ID,
			contentType: "application/cloudevents+json",
			subject:     stored.Type,
			body:        []byte(storedEvent),
		},
		{
			name:        "structured with sessions",
			msg:         stored,
			opts:        []Option{WithSessions(true)},
			messageID:   stored.ID,
			groupID:     new("acct-7"),
			contentType: "application/cloudevents+json",
			subject:     stored.Type,
			body:        []byte(storedEvent),
		},
		{
			name:         "binary, sessions, partitioned",
			msg:          stored,
			opts:         []Option{WithBinding(Binary), WithSessions(true), WithPartitionedEntity(true)},
			messageID:    stored.ID,
			groupID:      new("acct-7"),
			partitionKey: new("acct-7"),
			contentType:  "application/json",
			subject:      stored.Type,
			properties: map[string]any{
				"cloudEvents:specversion":  "1.0",
				"cloudEvents:id":           stored.ID,
				"cloudEvents:source":       "/portal",
				"cloudEvents:type":         stored.Type,
				"cloudEvents:subject":      "orders/42",
				"cloudEvents:time":         "2024-07-01T12:34:56.123456789Z",
				"cloudEvents:dataschema":   "https://example.com/order.json",
				"cloudEvents:partitionkey": "acct-7",
				"cloudEvents:traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				"cloudEvents:retries":      int64(3),
				"cloudEvents:replayed":     false,
			},
			body: []byte(`{"z" : 1,"a":"h\u00e9llo ✓","n":1.50}`),
		},
		{
			name:        "binary octets, keyless with sessions",
			msg:         octets,
			opts:        []Option{WithBinding(Binary), WithSessions(true)},
			messageID:   octets.ID,
			groupID:     new(octets.ID),
			contentType: "application/octet-stream",
			subject:     octets.Type,
			properties: map[string]any{
				"cloudEvents:specversion": "1.0",
				"cloudEvents:id":          octets.ID,
				"cloudEvents:source":      "/blobs",
				"cloudEvents:type":        octets.Type,
			},
			body: []byte{0, 1, 2, 0xff},
		},
	}
}

// TestWireMappingThroughAMQPBroker sends each case's message as the SDK
// would encode it through RabbitMQ's AMQP 1.0 and checks what arrives.
func TestWireMappingThroughAMQPBroker(t *testing.T) {
	conn := dialBroker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	session, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	queue := testQueue(t)
	snd, err := session.NewSender(ctx, queue, nil)
	if err != nil {
		t.Fatalf("attach sender to %s: %v", queue, err)
	}
	rcv, err := session.NewReceiver(ctx, queue, nil)
	if err != nil {
		t.Fatalf("attach receiver to %s: %v", queue, err)
	}

	cases := wireCases()
	for _, tc := range cases {
		cfg, err := buildConfig(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		sbm, err := cfg.toMessage(tc.msg)
		if err != nil {
			t.Fatalf("%s: toMessage: %v", tc.name, err)
		}
		am, err := toAMQP(sbm)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := snd.Send(ctx, am, nil); err != nil {
			t.Fatalf("%s: send: %v", tc.name, err)
		}
	}
	for _, tc := range cases {
		got, err := rcv.Receive(ctx, nil)
		if err != nil {
			t.Fatalf("%s: receive: %v", tc.name, err)
		}
		if err := rcv.AcceptMessage(ctx, got); err != nil {
			t.Fatalf("%s: accept: %v", tc.name, err)
		}
		t.Run(tc.name, func(t *testing.T) { checkWire(t, tc, got) })
	}
}

func checkWire(t *testing.T, tc wireCase, got *amqp.Message) {
	t.Helper()
	if got.Properties == nil {
		t.Fatal("no properties section")
	}
	p := got.Properties
	if id, ok := p.MessageID.(string); !ok || id != tc.messageID {
		t.Errorf("message-id %#v, want string %q", p.MessageID, tc.messageID)
	}
	if deref(p.GroupID) != deref(tc.groupID) {
		t.Errorf("group-id (SessionId) %q, want %q", deref(p.GroupID), deref(tc.groupID))
	}
	if deref(p.ContentType) != tc.contentType {
		t.Errorf("content-type %q, want %q", deref(p.ContentType), tc.contentType)
	}
	if deref(p.Subject) != tc.subject {
		t.Errorf("subject %q, want %q", deref(p.Subject), tc.subject)
	}
	pk, hasPK := got.Annotations["x-opt-partition-key"]
	switch {
	case tc.partitionKey == nil && hasPK:
		t.Errorf("x-opt-partition-key %v, want none", pk)
	case tc.partitionKey != nil && pk != *tc.partitionKey:
		t.Errorf("x-opt-partition-key %#v, want %q", pk, *tc.partitionKey)
	}
	if !maps.Equal(got.ApplicationProperties, tc.properties) && len(got.ApplicationProperties)+len(tc.properties) > 0 {
		t.Errorf("application-properties\n got  %#v\n want %#v", got.ApplicationProperties, tc.properties)
	}
	if len(got.Data) != 1 || !bytes.Equal(got.Data[0], tc.body) {
		t.Errorf("body %q, want one data section %q", got.Data, tc.body)
	}
}
