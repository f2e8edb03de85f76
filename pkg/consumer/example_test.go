package consumer_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/glebarez/go-sqlite" // a pure-Go SQLite driver, registered as "sqlite"

	"github.com/heraldhq/herald/pkg/consumer"
	"github.com/heraldhq/herald/pkg/enricher"
)

// Two events about one data product, as a broker or webhook delivers them:
// the body is the whole CloudEvent.
const (
	createdBody = `{"specversion":"1.0","id":"0195f3a4-8b2c-7d3e-9f40-000000000001",` +
		`"source":"/portal","type":"io.herald.portal.data_product.created",` +
		`"subject":"data_products/0195f3a4-8b2c-7d3e-9f40-a1b2c3d4e5f6","time":"2026-03-01T09:00:00.000001Z",` +
		`"datacontenttype":"application/json","partitionkey":"0195f3a4-8b2c-7d3e-9f40-a1b2c3d4e5f6",` +
		`"data":{"id":"0195f3a4-8b2c-7d3e-9f40-a1b2c3d4e5f6","name":"Sales","namespace":"sales",` +
		`"status":"pending","settings":{},"team_members":[]}}`
	updatedBody = `{"specversion":"1.0","id":"0195f3a4-8b2c-7d3e-9f40-000000000002",` +
		`"source":"/portal","type":"io.herald.portal.data_product.updated",` +
		`"subject":"data_products/0195f3a4-8b2c-7d3e-9f40-a1b2c3d4e5f6","time":"2026-03-01T09:05:00Z",` +
		`"data":{"id":"0195f3a4-8b2c-7d3e-9f40-a1b2c3d4e5f6","name":"Sales","namespace":"sales",` +
		`"status":"active","settings":{},"team_members":[]}}`
)

// A consumer that keeps a table of data products in its own database. Each
// delivery is parsed, then applied through the ledger in one transaction with
// the consumer's own write. The broker delivers at least once, and an
// unordered one may deliver an older event after a newer one: the ledger
// turns both into outcomes to acknowledge.
func ExampleLedger_Process() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "consumer-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = db.Close() }()
	if _, err := db.ExecContext(ctx, `CREATE TABLE data_products (id TEXT PRIMARY KEY, namespace TEXT, status TEXT)`); err != nil {
		fmt.Println(err)
		return
	}

	ledger, err := consumer.NewLedger(db, consumer.SQLite, "catalogue-sync")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := ledger.Migrate(ctx); err != nil {
		fmt.Println(err)
		return
	}

	handle := func(body string) {
		ev, err := consumer.Parse([]byte(body))
		if err != nil {
			fmt.Println("not an event, dead-letter it:", err)
			return
		}
		outcome, err := ledger.Process(ctx, ev, func(ctx context.Context, tx *sql.Tx) error {
			data, known, err := ev.Decode()
			if err != nil || !known {
				return err // an event type this consumer does not know: nothing to do
			}
			switch dp := data.(type) {
			case enricher.DataProduct:
				_, err = tx.ExecContext(ctx, `INSERT INTO data_products (id, namespace, status) VALUES (?, ?, ?)
					ON CONFLICT (id) DO UPDATE SET namespace = excluded.namespace, status = excluded.status`,
					dp.ID, dp.Namespace, dp.Status)
			case enricher.DeletedDataProduct: // data_product.deleted
				_, err = tx.ExecContext(ctx, `DELETE FROM data_products WHERE id = ?`, dp.ID)
			case enricher.DeletedEntity: // created or updated, processed after the deletion
				_, err = tx.ExecContext(ctx, `DELETE FROM data_products WHERE id = ?`, dp.ID)
			}
			return err
		})
		if err != nil {
			fmt.Println("do not ack, the broker redelivers:", err)
			return
		}
		fmt.Printf("%s %s: ack\n", ev.Type, outcome)
	}

	handle(createdBody)
	handle(updatedBody)
	handle(updatedBody) // redelivered: the same id
	// The audit record behind the first event enriched again: a new id, but
	// the old time, older than the state already applied.
	handle(strings.Replace(createdBody, "000000000001", "000000000003", 1))

	var status string
	if err := db.QueryRowContext(ctx, `SELECT status FROM data_products`).Scan(&status); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("status:", status)
	// Output:
	// io.herald.portal.data_product.created applied: ack
	// io.herald.portal.data_product.updated applied: ack
	// io.herald.portal.data_product.updated duplicate: ack
	// io.herald.portal.data_product.created stale: ack
	// status: active
}

// Decode returns the catalogue's Go type for the event's type, and reports
// an event type this build does not know instead of failing on it.
func ExampleEvent_Decode() {
	for _, body := range []string{
		`{"specversion":"1.0","id":"1","source":"/portal","type":"io.herald.portal.team_member.added",` +
			`"data":{"data_product":{"id":"d1","name":"Sales"},"user":{"id":"u1","email":"ann@example.com"},"role":"Owner",` +
			`"a_field_from_a_newer_herald":true}}`,
		`{"specversion":"1.0","id":"2","source":"/portal","type":"io.herald.portal.data_product.teleported","data":{}}`,
	} {
		ev, err := consumer.Parse([]byte(body))
		if err != nil {
			fmt.Println(err)
			continue
		}
		data, known, err := ev.Decode()
		switch {
		case err != nil:
			fmt.Println(err)
		case !known:
			fmt.Printf("%s: not in this build's catalogue, ignored\n", ev.Type)
		default:
			tm := data.(enricher.TeamMemberChange)
			fmt.Printf("%s: %s is %s of %s\n", ev.Type, tm.User.Email, tm.Role, tm.DataProduct.Name)
		}
	}
	// Output:
	// io.herald.portal.team_member.added: ann@example.com is Owner of Sales
	// io.herald.portal.data_product.teleported: not in this build's catalogue, ignored
}
