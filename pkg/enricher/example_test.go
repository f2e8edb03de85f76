package enricher_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/outbox"
)

// openSample opens a throw-away SQLite database holding the portal sample
// and the outbox table, as a portal that runs Herald in-process would have.
func openSample(ctx context.Context) (db *gorm.DB, closeDB func(), err error) {
	dir, err := os.MkdirTemp("", "herald-example")
	if err != nil {
		return nil, nil, err
	}
	closeDB = func() { _ = os.RemoveAll(dir) }
	dsn := "file:" + filepath.Join(dir, "portal.db") + "?_pragma=busy_timeout(5000)"
	db, err = gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		closeDB()
		return nil, nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		closeDB()
		return nil, nil, err
	}
	closeDB = func() { _ = sqlDB.Close(); _ = os.RemoveAll(dir) }
	if err := portalsample.Load(ctx, db); err != nil {
		closeDB()
		return nil, nil, err
	}
	if _, err := outbox.Migrate(ctx, db); err != nil {
		closeDB()
		return nil, nil, err
	}
	return db, closeDB, nil
}

// Record turns each audit record into events and stores them in the outbox
// in the same transaction, so they commit or roll back together. Actions
// without a rule are reported, never dropped in silence; actions the rules
// ignore on purpose yield no events and no error.
func ExampleEnricher_Record() {
	ctx := context.Background()
	db, closeDB, err := openSample(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer closeDB()

	recs, err := portalsample.AuditRecords(ctx, db)
	if err != nil {
		fmt.Println(err)
		return
	}
	e := enricher.New()
	for _, rec := range recs {
		err := db.Transaction(func(tx *gorm.DB) error {
			evs, err := e.Record(ctx, tx, rec)
			for _, ev := range evs {
				fmt.Printf("%-28s → %s\n", rec.Name, strings.TrimPrefix(ev.Type, enricher.TypePrefix))
			}
			return err
		})
		switch {
		case errors.Is(err, enricher.ErrUnmapped):
			fmt.Println("  no rule for:", rec.Name)
		case err != nil:
			fmt.Println(err)
			return
		}
	}
	// Output:
	// data_product_created         → data_product.created
	// data_product_role_assignment_created → team_member.added
	// dataset_created              → output_port.created
	// data_output_created          → technical_asset.created
	// data_output_dataset_link_approved → port_asset.linked
	// data_product_created         → data_product.created
	// data_product_dataset_link_requested → input_port.requested
	// data_product_dataset_link_approved → input_port.approved
	// data_product_setting_updated → data_product.updated
	// data_product_dataset_link_revoked → input_port.revoked
	// data_product_created         → data_product.created
	// data_product_removed         → data_product.deleted
	// data_product_role_assignment_removed → team_member.removed
}

// Events shows what a consumer receives: the entity as the portal holds it
// when the record is processed (here with the team change at 10:11, after
// the setting change at 10:07), as of when Herald read it, with the actor
// and the audit row that caused the event. The clock is set to the day
// after, when the record is processed late.
func ExampleEnricher_Events() {
	ctx := context.Background()
	db, closeDB, err := openSample(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer closeDB()

	recs, err := portalsample.AuditRecords(ctx, db)
	if err != nil {
		fmt.Println(err)
		return
	}
	settingUpdated := recs[8]
	readAt := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	evs, err := enricher.New(enricher.WithClock(func() time.Time { return readAt })).Events(ctx, db, settingUpdated)
	if err != nil {
		fmt.Println(err)
		return
	}
	ev := evs[0]
	fmt.Println("type:        ", ev.Type)
	fmt.Println("subject:     ", ev.Subject)
	fmt.Println("time:        ", ev.Time)
	fmt.Println("partitionkey:", ev.PartitionKey)
	fmt.Println("dataschema:  ", ev.DataSchema)
	var data bytes.Buffer
	if err := json.Indent(&data, ev.Data, "", "  "); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(data.String())
	// Output:
	// type:         io.herald.portal.data_product.updated
	// subject:      data_products/10000000-0000-4000-8000-000000000001
	// time:         2026-11-01 10:07:00 +0000 UTC
	// partitionkey: 10000000-0000-4000-8000-000000000001
	// dataschema:   https://heraldhq.github.io/herald/schemas/io.herald.portal.data_product.updated/v1.json
	// {
	//   "id": "10000000-0000-4000-8000-000000000001",
	//   "name": "Orders",
	//   "namespace": "sales-orders",
	//   "description": "Order facts",
	//   "status": "active",
	//   "domain": {
	//     "id": "00000000-0000-4000-8000-0000000000d1",
	//     "name": "Sales"
	//   },
	//   "type": {
	//     "id": "00000000-0000-4000-8000-0000000000a1",
	//     "name": "Source-aligned"
	//   },
	//   "settings": {
	//     "retention_days": "30"
	//   },
	//   "team_members": [
	//     {
	//       "user": {
	//         "id": "00000000-0000-4000-8000-000000000001",
	//         "email": "ana@example.com"
	//       },
	//       "role": "Owner"
	//     },
	//     {
	//       "user": {
	//         "id": "00000000-0000-4000-8000-000000000002",
	//         "email": "bo@example.com"
	//       },
	//       "role": "Member"
	//     }
	//   ],
	//   "as_of": "2026-11-02T08:00:00Z",
	//   "actor_id": "00000000-0000-4000-8000-000000000001",
	//   "audit_record_id": "d1e2f3a4-b5c6-47d8-a9e0-f1a2b3c4d509"
	// }
}
