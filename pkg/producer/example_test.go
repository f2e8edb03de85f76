package producer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	natsadapter "github.com/heraldhq/herald/adapters/nats"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// A relay moves committed outbox events to JetStream until its context ends.
func ExampleRelay() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "relay-example-")
	defer func() { _ = os.RemoveAll(dir) }()

	srv, err := natsadapter.StartEmbedded(natsadapter.EmbeddedOptions{StoreDir: filepath.Join(dir, "js")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	quiet := slog.New(slog.DiscardHandler)
	pub, err := natsadapter.Connect(ctx, srv.ClientURL(), natsadapter.WithLogger(quiet))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = pub.Close() }()

	db, _ := outbox.OpenSQLite(filepath.Join(dir, "outbox.db"))
	if _, err := outbox.Migrate(ctx, db); err != nil {
		fmt.Println(err)
		return
	}
	ev, _ := event.New("io.herald.shop.product.created", "/shop", map[string]string{"id": "p1"})
	if err := outbox.Write(ctx, db, ev); err != nil {
		fmt.Println(err)
		return
	}

	store, _ := outbox.NewStore(db)
	relay := producer.New(store, pub, producer.WithPollInterval(10*time.Millisecond), producer.WithLogger(quiet))
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = relay.Run(runCtx) })
	for relay.Stats().Published < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	wg.Wait() // Run returns once the batch in flight is recorded

	st, _ := store.Stats(ctx)
	fmt.Printf("published %d, pending %d\n", relay.Stats().Published, st.Pending)
	// Output: published 1, pending 0
}
