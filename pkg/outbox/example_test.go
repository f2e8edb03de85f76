package outbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
