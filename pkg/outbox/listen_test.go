package outbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/outbox"
)

func TestListenWakesOnCommitNotBefore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	db := testdb.Migrated(t, "postgres")
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
