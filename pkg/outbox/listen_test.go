package outbox_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/outbox"
)

func TestListenWakesOnCommitNotBefore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	db := testdb.Migrated(t, "postgres")
	store, _ := outbox.NewStore(db.Gorm)
	if err := store.Wait(ctx, "relay-1", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	wakes := make(chan struct{}, 100)
	var wg sync.WaitGroup
	wg.Go(func() { _ = outbox.Listen(ctx, db.DSN, func() { wakes <- struct{}{} }, nil) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	wait := func(what string) {
		t.Helper()
		select {
		case <-wakes:
		case <-time.After(30 * time.Second):
			t.Fatalf("no wake-up %s", what)
		}
	}
	wait("on connect") // a (re)connect wakes the relay: it may have missed notifications
	drain := func() {
		for len(wakes) > 0 {
			<-wakes
		}
	}
	drain()

	tx := db.Gorm.Begin()
	if err := outbox.Write(ctx, tx, newEvent(t, 1)); err != nil {
		t.Fatal(err)
	}
	// Other tests share the database's notification channel, so a wake-up
	// now proves nothing; the one that must come is the one after commit.
	if err := tx.Commit().Error; err != nil {
		t.Fatal(err)
	}
	wait("after commit")
}

// Writers ring only while a relay waits: NOTIFY serialises every committing
// transaction that calls it, so the doorbell must cost nothing while relays
// are busy. The payload names the outbox's schema, which tells this test's
// notifications from other tests' on the shared channel.
func TestDoorbellRingsOnlyWhileARelayWaits(t *testing.T) {
	ctx := context.Background()
	db := testdb.Migrated(t, "postgres")
	store, _ := outbox.NewStore(db.Gorm)
	var schema string
	if err := db.Gorm.Raw(`SELECT current_schema()`).Scan(&schema).Error; err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN "+outbox.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	rang := func(within time.Duration) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		for {
			n, err := conn.WaitForNotification(ctx)
			if errors.Is(err, context.DeadlineExceeded) {
				return false
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Payload == schema {
				return true
			}
		}
	}
	n := 0
	commit := func() {
		t.Helper()
		n++
		if err := outbox.Write(ctx, db.Gorm, newEvent(t, n)); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name  string
		setup func() error
		rings bool
	}{
		{"no relay waits", func() error { return nil }, false},
		{"a relay waits", func() error { return store.Wait(ctx, "relay-1", time.Now().Add(time.Minute)) }, true},
		{"the relay has work again", func() error { return store.StopWaiting(ctx, "relay-1") }, false},
		{"the waiting relay's row has expired", func() error { return store.Wait(ctx, "relay-1", time.Now().Add(-time.Second)) }, false},
		{"two relays wait", func() error {
			return errors.Join(store.Wait(ctx, "relay-1", time.Now().Add(time.Minute)), store.Wait(ctx, "relay-2", time.Now().Add(time.Minute)))
		}, true},
		{"one of them has work again", func() error { return store.StopWaiting(ctx, "relay-2") }, true},
		{"neither waits", func() error { return store.StopWaiting(ctx, "relay-1") }, false},
		{"a relay killed while it waited", func() error {
			// No StopWaiting: its expiry passes by itself.
			until := time.Now().Add(1500 * time.Millisecond)
			if err := store.Wait(ctx, "relay-3", until); err != nil {
				return err
			}
			time.Sleep(time.Until(until.Truncate(time.Second).Add(2 * time.Second)))
			return nil
		}, false},
	}
	for _, tc := range tests {
		if err := tc.setup(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		commit()
		within := 500 * time.Millisecond
		if tc.rings {
			within = 10 * time.Second
		}
		if got := rang(within); got != tc.rings {
			t.Errorf("%s: doorbell rang = %v, want %v", tc.name, got, tc.rings)
		}
	}
}

// The trigger runs as the writer: an application role granted INSERT on the
// outbox and nothing else must still commit, and ring for a waiting relay.
func TestWriterWithOnlyInsertRingsTheDoorbell(t *testing.T) {
	ctx := context.Background()
	db := testdb.Migrated(t, "postgres")
	store, _ := outbox.NewStore(db.Gorm)
	var schema string
	if err := db.Gorm.Raw(`SELECT current_schema()`).Scan(&schema).Error; err != nil {
		t.Fatal(err)
	}
	role := schema + "_writer"
	for _, stmt := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT USAGE ON SCHEMA " + schema + " TO " + role,
		"GRANT INSERT ON herald_outbox TO " + role,
	} {
		if err := db.Gorm.Exec(stmt).Error; err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() {
		_ = db.Gorm.Exec("DROP OWNED BY " + role).Error
		_ = db.Gorm.Exec("DROP ROLE " + role).Error
	})
	listener, err := pgx.Connect(ctx, db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = listener.Close(context.Background()) })
	if _, err := listener.Exec(ctx, "LISTEN "+outbox.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	if err := store.Wait(ctx, "relay-1", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	cfg, err := pgx.ParseConfig(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	writer, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = writer.Close(context.Background()) })
	if _, err := writer.Exec(ctx, `INSERT INTO herald_outbox (event_id, event_type, payload) VALUES ('w-1', 'io.herald.test', '{}')`); err != nil {
		t.Fatalf("a writer with INSERT alone: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		n, err := listener.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("no ring for the writer's commit: %v", err)
		}
		if n.Payload == schema {
			return
		}
	}
}
