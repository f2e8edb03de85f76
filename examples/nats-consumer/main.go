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
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/examples/internal/provision"
	"github.com/heraldhq/herald/pkg/consumer"
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
	err := run(ctx, cfg, provision.Provision)
	stop()
	if err != nil {
		slog.Error("nats-consumer stopped", "error", err)
		os.Exit(1)
	}
}

// run consumes the stream until ctx is cancelled, running apply at most once
// per event id.
func run(ctx context.Context, cfg config, apply provision.Func) error {
	db, ledger, err := provision.Open(ctx, cfg.DBPath, cfg.Durable)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()

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
func handle(ctx context.Context, ledger *consumer.Ledger, apply provision.Func, msg jetstream.Msg, retryDelay time.Duration) {
	log := slog.With("subject", msg.Subject())
	if md, err := msg.Metadata(); err == nil {
		log = log.With("stream_seq", md.Sequence.Stream, "delivery", md.NumDelivered)
	}
	ev, outcome, err := ledger.Handle(ctx, msg.Data(), apply)
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
