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

// A route table sends some events to a second destination as well; each
// destination's relay claims only its own rows.
func ExampleWriteRouted() {
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
	if err := outbox.WriteRouted(ctx, db, routes, order, product); err != nil {
		fmt.Println(err)
		return
	}

	store, _ := outbox.NewStore(db)
	for _, s := range []*outbox.Store{store, store.ForDestination("partner")} {
		rows, _ := s.Claim(ctx, "relay-"+s.Destination(), 10, time.Minute)
		for _, r := range rows {
			fmt.Println(r.Destination, r.EventType)
		}
	}
	// Output:
	// main io.herald.shop.order.placed
	// main io.herald.shop.product.created
	// partner io.herald.shop.order.placed
}
