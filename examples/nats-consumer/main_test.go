package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natsadapter "github.com/heraldhq/herald/adapters/nats"
	"github.com/heraldhq/herald/examples/internal/heraldtest"
	"github.com/heraldhq/herald/examples/internal/provision"
)

// Events go through Herald end to end (outbox.Write, the relay, the NATS
// adapter, an in-process JetStream server) into the example. The side effect
// of a quarter of them fails on its first try, so JetStream must deliver
// them again; then all of them are written and relayed a second time, after
// the stream's duplicate window, so that each reaches the consumer twice.
// Each must be provisioned exactly once.
func TestProvisionsEachEventOnceThroughJetStream(t *testing.T) {
	const n = 20
	srv, err := natsadapter.StartEmbedded(natsadapter.EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	// The stream remembers event ids for 100ms, the least JetStream
	// allows, so that the second round is stored again, as a relay's
	// re-publish later than nats.duplicate_window would be.
	pub, err := natsadapter.Connect(t.Context(), srv.ClientURL(),
		natsadapter.WithDuplicateWindow(100*time.Millisecond), natsadapter.WithLogger(heraldtest.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })

	ob := heraldtest.NewOutbox(t)
	events := heraldtest.Events(t, n)
	ob.Write(events...)
	relay := ob.Relay(pub)

	failOnce := heraldtest.IDs(events[:n/4])
	flaky := heraldtest.NewFlaky(provision.Provision, failOnce...)
	cfg := config{
		NATSURL:    srv.ClientURL(),
		Stream:     natsadapter.DefaultStream,
		Durable:    "provisioner",
		DBPath:     filepath.Join(t.TempDir(), "consumer.db"),
		AckWait:    5 * time.Second,
		RetryDelay: 50 * time.Millisecond,
		MaxDeliver: 5,
	}
	db := heraldtest.Run(t, cfg.DBPath, func(ctx context.Context) error { return run(ctx, cfg, flaky.Apply) })

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ob.WaitDelivered(relay, n)
	info := waitAllAcked(t, js, cfg, n)
	if want := uint64(n + len(failOnce)); info.Delivered.Consumer < want {
		t.Errorf("JetStream made %d deliveries, want at least %d (the failed events twice)", info.Delivered.Consumer, want)
	}
	heraldtest.CheckExactlyOnce(t, db, events, flaky, failOnce)

	time.Sleep(300 * time.Millisecond) // past the duplicate window
	ob.Write(events...)
	ob.WaitDelivered(relay, 2*n)
	if d := relay.Stats().Duplicates; d != 0 {
		t.Fatalf("JetStream dropped %d re-published events as duplicates; the test needs them delivered", d)
	}
	info = waitAllAcked(t, js, cfg, 2*n)
	if want := uint64(2*n + len(failOnce)); info.Delivered.Consumer < want {
		t.Errorf("JetStream made %d deliveries, want at least %d (each event twice, the failed ones once more)",
			info.Delivered.Consumer, want)
	}
	heraldtest.CheckExactlyOnce(t, db, events, flaky, failOnce)
}

// waitAllAcked waits until the durable consumer has acked the stream's
// first n messages and has nothing pending or awaiting an ack.
func waitAllAcked(t *testing.T, js jetstream.JetStream, cfg config, n uint64) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	heraldtest.Eventually(t, 20*time.Second, fmt.Sprintf("the consumer to ack %d messages", n), func() error {
		cons, err := js.Consumer(t.Context(), cfg.Stream, cfg.Durable)
		if err != nil {
			return err
		}
		if info, err = cons.Info(t.Context()); err != nil {
			return err
		}
		if info.AckFloor.Stream < n || info.NumAckPending > 0 || info.NumPending > 0 {
			return fmt.Errorf("ack floor %d, %d awaiting ack, %d pending",
				info.AckFloor.Stream, info.NumAckPending, info.NumPending)
		}
		return nil
	})
	return info
}
