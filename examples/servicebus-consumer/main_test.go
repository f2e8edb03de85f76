package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	sbadapter "github.com/heraldhq/herald/adapters/servicebus"
	"github.com/heraldhq/herald/examples/internal/heraldtest"
	"github.com/heraldhq/herald/examples/internal/provision"
	"github.com/heraldhq/herald/internal/testservicebus"
	"github.com/heraldhq/herald/pkg/event"
)

// Events go through Herald end to end (outbox.Write, the relay, the Service
// Bus adapter with sessions, the real azservicebus client, the local Service
// Bus peer of .ci/servicebus.sh) into the example. The side effect of a
// quarter of them fails on its first try, so their messages are abandoned
// and must come back; then all of them are written and relayed a second
// time, to a queue without duplicate detection, so that each reaches the
// consumer twice. Each must be provisioned exactly once, and each key's
// events in the order written.
func TestProvisionsEachEventOnceThroughServiceBus(t *testing.T) {
	const n = 20
	queue := testservicebus.Name(t, testservicebus.SessionPlainQueue)
	connStr := testservicebus.ConnectionString()
	pub, err := sbadapter.NewFromConnectionString(t.Context(), connStr, queue,
		sbadapter.WithSessions(true), sbadapter.WithLogger(heraldtest.Quiet()))
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
		ConnectionString: connStr,
		Queue:            queue,
		Sessions:         true,
		Name:             "provisioner",
		DBPath:           filepath.Join(t.TempDir(), "consumer.db"),
		Idle:             200 * time.Millisecond,
	}
	db := heraldtest.Run(t, cfg.DBPath, func(ctx context.Context) error { return run(ctx, cfg, flaky.Apply) })

	ob.WaitDelivered(relay, n)
	waitQueueEmpty(t, queue, events)
	heraldtest.CheckExactlyOnce(t, db, events, flaky, failOnce)

	ob.Write(events...) // this queue has no duplicate detection
	ob.WaitDelivered(relay, 2*n)
	waitQueueEmpty(t, queue, events)
	heraldtest.CheckExactlyOnce(t, db, events, flaky, failOnce)
}

// waitQueueEmpty waits until every message was completed, that is, the
// consumer was done with each. A session queue is read a session at a time,
// peeking too, so each session the events went to is looked into; one the
// consumer holds is not done yet.
func waitQueueEmpty(t *testing.T, queue string, events []event.Event) {
	t.Helper()
	sessions := map[string]bool{}
	for _, ev := range events {
		key := ev.PartitionKey
		if key == "" {
			key = ev.ID
		}
		sessions[key] = true
	}
	client := testservicebus.Client(t)
	heraldtest.Eventually(t, 30*time.Second, "the consumer to complete every message", func() error {
		for id := range sessions {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			s, err := client.AcceptSessionForQueue(ctx, queue, id, nil)
			if err != nil {
				cancel()
				return fmt.Errorf("session %s: %w", id, err)
			}
			msgs, err := s.PeekMessages(ctx, 1, nil)
			_ = s.Close(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("peek session %s: %w", id, err)
			}
			if len(msgs) > 0 {
				return fmt.Errorf("session %s still holds %s", id, msgs[0].MessageID)
			}
			delete(sessions, id) // done with: nothing is sent to it again
		}
		return nil
	})
}
