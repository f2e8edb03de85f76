package nats_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/nats"
)

// ExampleConnect publishes one event to an in-process NATS server, then
// publishes it again, as a relay would after a crash: the server recognises
// the event id and stores it only once.
func ExampleConnect() {
	dir, err := os.MkdirTemp("", "herald-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()

	srv, err := nats.StartEmbedded(nats.EmbeddedOptions{StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	ctx := context.Background()
	pub, err := nats.Connect(ctx, srv.ClientURL(),
		nats.WithStream("ORDERS", "orders.>"),
		nats.WithSubjectTemplate("orders.{type}"),
		nats.WithLogger(slog.New(slog.DiscardHandler)), // keep the example's output to what it prints
	)
	if err != nil {
		fmt.Println(err)
		return
	}

	event := adapters.Message{
		ID:           "6f1c2a9e-1b7d-4c55-9a0e-3d2f8b1e4a70",
		Type:         "order.created",
		PartitionKey: "customer-42",
		Payload:      []byte(`{"specversion":"1.0","id":"6f1c2a9e-1b7d-4c55-9a0e-3d2f8b1e4a70","type":"order.created","source":"/shop","data":{"total":12.5}}`),
	}
	for attempt := 1; attempt <= 2; attempt++ {
		res := pub.Publish(ctx, []adapters.Message{event})
		fmt.Printf("attempt %d: err=%v duplicate=%v\n", attempt, res[0].Err, res[0].Duplicate)
	}
	if err := pub.Close(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// attempt 1: err=<nil> duplicate=false
	// attempt 2: err=<nil> duplicate=true
}

// ExampleWithSubjectTemplate puts the partition key into the subject, so
// that a consumer reads one key's events in the order they were written:
// an ordered consumer filtered on that key's subjects. The relay never has
// two events of one key in flight, and one connection keeps a batch in
// order, so the stream holds each key's events in outbox order.
func ExampleWithSubjectTemplate() {
	dir, err := os.MkdirTemp("", "herald-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()
	srv, err := nats.StartEmbedded(nats.EmbeddedOptions{StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	ctx := context.Background()
	pub, err := nats.Connect(ctx, srv.ClientURL(),
		nats.WithStream("ORDERS", "orders.>"),
		nats.WithSubjectTemplate("orders.{partitionkey}.{type}"),
		nats.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = pub.Close() }()
	var events []adapters.Message
	for i, e := range []struct{ key, typ string }{
		{"acct-7", "order.created"}, {"acct-9", "order.created"}, {"acct-7", "order.paid"},
		{"acct-9", "order.cancelled"}, {"acct-7", "order.shipped"},
	} {
		events = append(events, adapters.Message{
			ID: fmt.Sprintf("evt-%d", i), Type: e.typ, PartitionKey: e.key, Payload: []byte(`{}`),
		})
	}
	for _, r := range pub.Publish(ctx, events) {
		if r.Err != nil {
			fmt.Println(r.Err)
			return
		}
	}

	// The consumer's side: everything about acct-7, in order.
	nc, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Println(err)
		return
	}
	cons, err := js.OrderedConsumer(ctx, "ORDERS", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"orders.acct-7.>"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 3 {
		msg, err := cons.Next()
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(msg.Subject())
	}
	// Output:
	// orders.acct-7.order.created
	// orders.acct-7.order.paid
	// orders.acct-7.order.shipped
}

// ExampleWithBinding publishes in the binary content mode: the event's data
// is the body and its attributes are "ce-" headers.
func ExampleWithBinding() {
	dir, err := os.MkdirTemp("", "herald-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()
	srv, err := nats.StartEmbedded(nats.EmbeddedOptions{StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	ctx := context.Background()
	pub, err := nats.Connect(ctx, srv.ClientURL(),
		nats.WithBinding(nats.Binary),
		nats.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = pub.Close() }()
	const id = "0190a6e4-3c2b-7def-8a12-3456789abcde"
	event := adapters.Message{
		ID: id, Type: "order.created", PartitionKey: "customer-42",
		Payload: []byte(`{"specversion":"1.0","id":"` + id + `","source":"/shop","type":"order.created",` +
			`"time":"2026-03-01T10:15:00Z","datacontenttype":"application/json","partitionkey":"customer-42",` +
			`"data":{"total":12.5}}`),
	}
	if r := pub.Publish(ctx, []adapters.Message{event}); r[0].Err != nil {
		fmt.Println(r[0].Err)
		return
	}

	nc, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Println(err)
		return
	}
	stream, err := js.Stream(ctx, nats.DefaultStream)
	if err != nil {
		fmt.Println(err)
		return
	}
	msg, err := stream.GetLastMsgForSubject(ctx, "herald.order.created")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, h := range []string{"ce-id", "ce-type", "ce-source", "ce-time", "ce-partitionkey", "Content-Type"} {
		fmt.Printf("%s: %s\n", h, msg.Header.Get(h))
	}
	fmt.Printf("body: %s\n", msg.Data)
	// Output:
	// ce-id: 0190a6e4-3c2b-7def-8a12-3456789abcde
	// ce-type: order.created
	// ce-source: /shop
	// ce-time: 2026-03-01T10:15:00Z
	// ce-partitionkey: customer-42
	// Content-Type: application/json
	// body: {"total":12.5}
}
