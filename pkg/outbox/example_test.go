package outbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// A producer writes its event in the same transaction as its business change.
func ExampleWrite() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "outbox-example-")
	defer func() { _ = os.RemoveAll(dir) }()
	db, _ := outbox.OpenSQLite(filepath.Join(dir, "app.db"))
	if _, err := outbox.Migrate(ctx, db); err != nil {
		fmt.Println(err)
		return
	}
	db.Exec(`CREATE TABLE products (id TEXT PRIMARY KEY, name TEXT)`)

	err := db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`INSERT INTO products VALUES ('p1', 'Orders')`).Error; err != nil {
			return err
		}
		ev, err := event.New("io.herald.shop.product.created", "/shop", map[string]string{"id": "p1", "name": "Orders"},
			event.WithSubject("products/p1"), event.WithPartitionKey("p1"))
		if err != nil {
			return err
		}
		return outbox.Write(ctx, tx, ev)
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	store, _ := outbox.NewStore(db)
	rows, _ := store.List(ctx, outbox.StatePending, 10)
	fmt.Println(len(rows), rows[0].EventType, rows[0].PartitionKey)
	// Output: 1 io.herald.shop.product.created p1
}

// A route table sends some events to a second destination as well. Writers
// write each event once; the main relay fans it out before it publishes,
// and each destination's relay then reads only its own rows.
func ExampleStore_Route() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "outbox-example-")
	defer func() { _ = os.RemoveAll(dir) }()
	db, _ := outbox.OpenSQLite(filepath.Join(dir, "app.db"))
	if _, err := outbox.Migrate(ctx, db); err != nil {
		fmt.Println(err)
		return
	}
	routes := outbox.Routes{{Destination: "partner", Types: []string{"io.herald.shop.order.*"}}}
	order, _ := event.New("io.herald.shop.order.placed", "/shop", map[string]string{"id": "o1"})
	product, _ := event.New("io.herald.shop.product.created", "/shop", map[string]string{"id": "p1"})
	if err := outbox.Write(ctx, db, order, product); err != nil {
		fmt.Println(err)
		return
	}

	store, _ := outbox.NewStore(db)
	if _, err := store.Route(ctx, outbox.AllBuckets(), routes, 100); err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range []*outbox.Store{store, store.ForDestination("partner")} {
		rows, _ := s.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 10})
		for _, r := range rows {
			fmt.Println(r.Destination, r.EventType)
		}
	}
	// Output:
	// main io.herald.shop.order.placed
	// main io.herald.shop.product.created
	// partner io.herald.shop.order.placed
}

// A relay's cycle at its smallest: join the destination, lease a fair share
// of its buckets, read their pending rows in seq order, publish them, record
// what the broker said, and hand the buckets back on the way out.
func ExampleStore_Lease() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "outbox-example-")
	defer func() { _ = os.RemoveAll(dir) }()
	db, _ := outbox.OpenSQLite(filepath.Join(dir, "app.db"))
	if _, err := outbox.Migrate(ctx, db); err != nil {
		fmt.Println(err)
		return
	}
	for i := range 3 {
		ev, _ := event.New("io.herald.shop.order.placed", "/shop", map[string]int{"n": i}, event.WithPartitionKey("o1"))
		if err := outbox.Write(ctx, db, ev); err != nil {
			fmt.Println(err)
			return
		}
	}

	store, _ := outbox.NewStore(db)
	relays, err := store.Join(ctx, "relay-1", time.Minute)
	if err != nil {
		fmt.Println(err)
		return
	}
	share := (outbox.Buckets + relays - 1) / relays
	leases, err := store.Lease(ctx, "relay-1", share, time.Minute)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("relays:", relays, "buckets held:", len(leases.Held))
	rows, err := store.Read(ctx, outbox.ReadQuery{Buckets: leases.Held, Limit: 100})
	if err != nil {
		fmt.Println(err)
		return
	}
	var outcomes []outbox.Outcome
	for _, r := range rows {
		fmt.Println("publish", r.Seq, r.PartitionKey) // a relay hands the batch to its adapter here
		outcomes = append(outcomes, outbox.Outcome{Seq: r.Seq})
	}
	if err := store.Record(ctx, outcomes); err != nil {
		fmt.Println(err)
		return
	}
	if err := store.Leave(ctx, "relay-1"); err != nil {
		fmt.Println(err)
		return
	}
	st, _ := store.Stats(ctx)
	fmt.Println("pending:", st.Pending)
	// Output:
	// relays: 1 buckets held: 64
	// publish 1 o1
	// publish 2 o1
	// publish 3 o1
	// pending: 0
}
