// Command nats-consumer provisions infrastructure from Herald's events on a
// NATS JetStream stream: each event exactly once, although JetStream
// delivers at least once.
//
// It reads the stream with a durable pull consumer and explicit acks. Each
// message is parsed as a CloudEvent and handed to a consumer.Ledger, which
// runs the side effect at most once per event id, in the transaction that
// records the id, in this consumer's own SQLite database. The message is
// acked once Process returns nil (applied, a duplicate, or stale), and naked
// with a delay when it fails, so that JetStream delivers it again. A message
// that is never acked, because the process died, comes back after AckWait.
//
// How to run it against Herald: README.md.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	_ "github.com/glebarez/go-sqlite" // the "sqlite" database/sql driver, pure Go
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/consumer"
	"github.com/heraldhq/herald/pkg/enricher"
)

type config struct {
	NATSURL    string
	Stream     string
	Durable    string
	DBPath     string
	AckWait    time.Duration
	RetryDelay time.Duration
	MaxDeliver int
}

func main() {
	var cfg config
	flag.StringVar(&cfg.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	flag.StringVar(&cfg.Stream, "stream", "HERALD", "the JetStream stream Herald publishes to")
	flag.StringVar(&cfg.Durable, "durable", "provisioner", "durable consumer name; also this consumer's name in the ledger")
	flag.StringVar(&cfg.DBPath, "db", "consumer.db", "SQLite file holding the ledger and the provisioned table")
	flag.DurationVar(&cfg.AckWait, "ack-wait", 30*time.Second, "how long JetStream waits for an ack before delivering a message again")
	flag.DurationVar(&cfg.RetryDelay, "retry-delay", 5*time.Second, "how long a failed event waits before JetStream delivers it again")
	flag.IntVar(&cfg.MaxDeliver, "max-deliver", 20, "deliveries after which JetStream gives up on a message (-1: never)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, provision)
	stop()
	if err != nil {
		slog.Error("nats-consumer stopped", "error", err)
		os.Exit(1)
	}
}

// applyFunc is the side effect of one event, run by the ledger inside its
// transaction.
type applyFunc func(ctx context.Context, tx *sql.Tx, ev consumer.Event) error

// run consumes the stream until ctx is cancelled, running apply at most once
// per event id.
func run(ctx context.Context, cfg config, apply applyFunc) error {
	db, err := openDB(ctx, cfg.DBPath)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	ledger, err := consumer.NewLedger(db, consumer.SQLite, cfg.Durable)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if err := ledger.Migrate(ctx); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}

	nc, err := nats.Connect(cfg.NATSURL, nats.Name("herald-example-"+cfg.Durable))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", cfg.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// Durable: the server remembers what this consumer acked across
	// restarts. Explicit acks: a message counts as done only when acked.
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream %s not found: Herald creates it when its relay starts: %w", cfg.Stream, err)
		}
		return fmt.Errorf("consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
	}
	// Pull a few messages at a time: a message waiting in the client's
	// buffer is already counting down its AckWait.
	msgs, err := cons.Messages(jetstream.PullMaxMessages(10))
	if err != nil {
		return fmt.Errorf("consume %s: %w", cfg.Durable, err)
	}
	defer msgs.Stop()
	slog.Info("consuming", "stream", cfg.Stream, "durable", cfg.Durable, "db", cfg.DBPath)
	for {
		msg, err := msgs.Next(jetstream.NextContext(ctx))
		if ctx.Err() != nil {
			return nil // shutting down
		}
		if err != nil {
			return fmt.Errorf("next message: %w", err)
		}
		// The message in hand is finished even if a shutdown begins: it is
		// one short transaction and an ack.
		handle(context.WithoutCancel(ctx), ledger, apply, msg, cfg.RetryDelay)
	}
}

// handle processes one message and acknowledges it: ack when the ledger is
// done with the event, nak (deliver again later) when it failed.
func handle(ctx context.Context, ledger *consumer.Ledger, apply applyFunc, msg jetstream.Msg, retryDelay time.Duration) {
	log := slog.With("subject", msg.Subject())
	if md, err := msg.Metadata(); err == nil {
		log = log.With("stream_seq", md.Sequence.Stream, "delivery", md.NumDelivered)
	}
	ev, outcome, err := process(ctx, ledger, apply, msg.Data())
	log = log.With("event_id", ev.ID, "type", ev.Type)
	switch {
	case errors.Is(err, consumer.ErrInvalid):
		// Not a CloudEvent, or one the ledger cannot store: delivering it
		// again cannot help. (Herald publishes structured CloudEvents
		// unless nats.binding is binary, which this consumer does not
		// read.)
		log.Error("invalid event; terminating the message", "error", err)
		if err := msg.Term(); err != nil {
			log.Warn("term failed", "error", err)
		}
	case err != nil:
		// Nothing was recorded: the next delivery runs the side effect again.
		log.Warn("event failed; JetStream will deliver it again", "error", err, "retry_in", retryDelay)
		if err := msg.NakWithDelay(retryDelay); err != nil {
			log.Warn("nak failed; the message comes back after AckWait", "error", err)
		}
	default:
		// Applied, Duplicate and Stale all mean the event is done with. If
		// the ack is lost, JetStream delivers the event again after AckWait
		// and the ledger answers Duplicate.
		if err := msg.Ack(); err != nil {
			log.Warn("ack failed", "error", err)
			return
		}
		log.Info("event done", "outcome", outcome)
	}
}

// process parses a message body and lets the ledger run apply for it.
func process(ctx context.Context, ledger *consumer.Ledger, apply applyFunc, body []byte) (consumer.Event, consumer.Outcome, error) {
	ev, err := consumer.Parse(body)
	if err != nil {
		return ev, 0, err
	}
	outcome, err := ledger.Process(ctx, ev, func(ctx context.Context, tx *sql.Tx) error {
		return apply(ctx, tx, ev)
	})
	return ev, outcome, err
}

// openDB opens this consumer's own database and creates the provisioned
// table; the ledger adds its tables next to it. With PostgreSQL or MySQL,
// open it with their driver and pass consumer.Postgres or consumer.MySQL to
// NewLedger.
func openDB(ctx context.Context, path string) (*sql.DB, error) {
	// WAL and a busy timeout make concurrent transactions queue instead of
	// failing; IMMEDIATE takes the write lock at BEGIN, so that a
	// transaction never fails half way for want of it.
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := db.ExecContext(ctx, provisionedTable); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// provisionedTable records what this consumer provisioned. event_id is
// deliberately not UNIQUE: the ledger alone keeps it to one row per event,
// and the example's test counts the rows to prove it.
const provisionedTable = `CREATE TABLE IF NOT EXISTS provisioned (
  event_id        TEXT NOT NULL,
  data_product_id TEXT NOT NULL,
  namespace       TEXT NOT NULL,
  provisioned_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)`

// provision is the side effect: here a row in the consumer's own database;
// in real life a bucket, a database schema or a topic named after the data
// product. It runs in the ledger's transaction, so the row exists if and
// only if the event id is recorded. A side effect outside the database must
// be idempotent itself (create if absent) and return its error, so that the
// retry runs it again.
func provision(ctx context.Context, tx *sql.Tx, ev consumer.Event) error {
	if ev.Type != "io.herald.portal.data_product.created" {
		return nil // not for us: recorded as done, and acked
	}
	data, known, err := ev.Decode()
	if err != nil || !known {
		// An error (data that does not fit its type) fails the event, so it
		// is retried until the broker dead-letters it. Not known: a data
		// version this build does not read; nothing to do.
		return err
	}
	dp, ok := data.(enricher.DataProduct)
	if !ok {
		return nil // an enricher.DeletedEntity: the product was gone before Herald saw it
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO provisioned (event_id, data_product_id, namespace) VALUES (?, ?, ?)`,
		ev.ID, dp.ID, dp.Namespace); err != nil {
		return fmt.Errorf("provision %s: %w", dp.Namespace, err)
	}
	return nil
}
