package app_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/subscriptions"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// partnerHook is a config destination "partner" taking every event, served
// by rc.
func partnerHook(t *testing.T, rc *receiver) config.Destination {
	t.Helper()
	encoded, _ := webhooks.NewSecret()
	secret, _ := webhooks.ParseSecret(encoded)
	rc.secrets = [][]byte{secret}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	hook := config.Default().Webhook
	hook.URL, hook.Secrets, hook.AllowCIDRs = srv.URL, []string{encoded}, []string{"127.0.0.0/8"}
	return config.Destination{Name: "partner", Adapter: "webhook", Webhook: hook}
}

// A writer that is not Go, inserting one row with plain SQL as
// docs/outbox.md shows, reaches every destination the route table
// selects: routing happens in the relay, not in the writer.
func TestPlainSQLWriterReachesEveryDestination(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(d, func(t *testing.T) {
			ctx := context.Background()
			rc := newReceiver(http.StatusNoContent)
			cfg := testConfig(t)
			if d != "sqlite" {
				cfg.Database.Driver, cfg.Database.DSN = d, testdb.New(t, d).DSN
			}
			cfg.Destinations = []config.Destination{partnerHook(t, rc)}
			a, err := open(t, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := event.New("io.herald.test.port.updated", "/test", map[string]int{"n": 1}, event.WithPartitionKey("p-1"))
			if err != nil {
				t.Fatal(err)
			}
			payload, _ := ev.MarshalJSON()
			if err := a.DB.Exec(`INSERT INTO herald_outbox (event_id, event_type, partition_key, payload) VALUES (?, ?, ?, ?)`,
				ev.ID, ev.Type, ev.PartitionKey, payload).Error; err != nil {
				t.Fatal(err)
			}
			run(t, a)
			eventually(t, "main and the partner to get the event", func() bool {
				return a.Relay.Stats().Published == 1 && slices.Contains(rc.delivered(), ev.ID)
			})
			eventually(t, "the outbox to empty", func() bool {
				st, err := a.Store.Stats(ctx)
				return err == nil && st.Pending == 0
			})
		})
	}
}

// A destination added to the route table gets the events that were still
// waiting to be fanned out, and not those delivered before it was added
// (docs/outbox.md, "Destinations").
func TestAddedDestinationGetsWhatWasStillPending(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	newEvent := func(n int) event.Event {
		ev, err := event.New("io.herald.test.port.updated", "/test", map[string]int{"n": n}, event.WithPartitionKey("p-1"))
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	before, pending := newEvent(1), newEvent(2)

	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Write(ctx, a.DB, before); err != nil {
		t.Fatal(err)
	}
	stop := run(t, a)
	eventually(t, "the first event to be delivered", func() bool { return a.Relay.Stats().Published == 1 })
	stop()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// Written while no relay runs, then the partner is added.
	rc := newReceiver(http.StatusNoContent)
	cfg.Destinations = []config.Destination{partnerHook(t, rc)}
	a, err = open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Write(ctx, a.DB, pending); err != nil {
		t.Fatal(err)
	}
	run(t, a)
	eventually(t, "the partner to get the pending event", func() bool { return slices.Contains(rc.delivered(), pending.ID) })
	eventually(t, "main to deliver it", func() bool { return a.Relay.Stats().Published == 1 })
	if got := rc.delivered(); len(got) != 1 {
		t.Fatalf("partner got %v; want only %s, the event still pending when it was added", got, pending.ID)
	}
}

// Narrowing a stored endpoint's types after its events were routed to it
// never marks one delivered that was not sent: the receiver gets none of
// them, and each is a dead letter that says why.
func TestNarrowedEndpointNeverCountsUnsentEventsDelivered(t *testing.T) {
	ctx := context.Background()
	rc := newReceiver(http.StatusNoContent)
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	cfg := testConfig(t)
	cfg.Subscriptions.AllowCIDRs = []string{"127.0.0.0/8"}
	cfg.Subscriptions.RefreshInterval = 100 * time.Millisecond
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Disabled: its events are fanned out to it and wait.
	if _, err := a.Subscriptions.Add(ctx, subscriptions.Endpoint{Name: "partner", URL: srv.URL, Types: []string{"io.herald.test.*"}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Routing.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for i, typ := range []string{"io.herald.test.port.updated", "io.herald.test.thing.created", "io.herald.test.port.updated"} {
		ev, err := event.New(typ, "/test", map[string]int{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := outbox.Write(ctx, a.DB, evs...); err != nil {
		t.Fatal(err)
	}
	dest := subscriptions.Destination("partner")
	run(t, a)
	eventually(t, "main to fan the events out to the endpoint", func() bool {
		n, err := a.Store.Count(ctx, outbox.Filter{Destination: dest, State: outbox.StatePending})
		return err == nil && n == len(evs)
	})

	narrowed, enabled := []string{"io.herald.test.thing.*"}, true
	if _, _, err := a.Subscriptions.Update(ctx, "partner", subscriptions.Patch{Types: &narrowed, Enabled: &enabled}); err != nil {
		t.Fatal(err)
	}
	a.Notify()
	eventually(t, "the endpoint's events to settle", func() bool {
		n, err := a.Store.Count(ctx, outbox.Filter{Destination: dest, State: outbox.StatePending})
		return err == nil && n == 0
	})
	if got := rc.delivered(); len(got) != 1 || got[0] != evs[1].ID {
		t.Fatalf("endpoint received %v; want only %s, the one type it still takes", got, evs[1].ID)
	}
	dead, err := a.Store.ListRows(ctx, outbox.Filter{Destination: dest, State: outbox.StateDead})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 {
		t.Fatalf("dead letters of the endpoint: %d, want the 2 events it no longer takes", len(dead))
	}
	for _, row := range dead {
		if !strings.Contains(row.LastError, "no endpoint subscribes") {
			t.Errorf("dead letter %s says %q; want why it was not sent", row.EventID, row.LastError)
		}
	}
}
