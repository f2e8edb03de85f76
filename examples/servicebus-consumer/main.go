// Command servicebus-consumer provisions infrastructure from Herald's events
// on an Azure Service Bus queue: each event exactly once, although Service
// Bus delivers at least once (a lock that expires, an abandoned message, a
// re-publish outside the duplicate-detection window).
//
// With sessions (the default, for a session-enabled queue that Herald sends
// to with servicebus.sessions: true) it accepts one session at a time, that
// is one partition key, and reads it in order, one message per receive call:
// the SDK gives back what arrives after a call has returned, and a message
// given back comes again behind the ones still in hand, out of order. Each
// message is parsed as a CloudEvent and handed to a consumer.Ledger, which
// runs the side effect at most once per event id, in the transaction that
// records the id, in this consumer's own SQLite database. The message is
// completed once Process returns nil (applied, a duplicate, or stale), and
// abandoned when it fails, so that it comes back at once, before the later
// events of its key, with its delivery count raised; after the queue's
// MaxDeliveryCount Service Bus moves it to the dead-letter queue. A message
// that is not a CloudEvent is dead-lettered at once.
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

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/heraldhq/herald/examples/internal/provision"
	"github.com/heraldhq/herald/pkg/consumer"
)

type config struct {
	// ConnectionString is a shared access policy with the Listen claim.
	ConnectionString string
	Queue            string
	// Sessions reads the queue a session (a partition key) at a time; the
	// queue must have sessions enabled. Off: a plain receiver, no order.
	Sessions bool
	Name     string
	DBPath   string
	// Idle is how long a session may have nothing more before the consumer
	// lets it go and accepts the next, and how long a plain receive waits.
	Idle time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.Queue, "queue", "", "the queue Herald publishes to (required)")
	flag.BoolVar(&cfg.Sessions, "sessions", true, "read a session (a partition key) at a time, in order; the queue must have sessions enabled")
	flag.StringVar(&cfg.Name, "name", "provisioner", "this consumer's name in the ledger")
	flag.StringVar(&cfg.DBPath, "db", "consumer.db", "SQLite file holding the ledger and the provisioned table")
	flag.DurationVar(&cfg.Idle, "idle", 5*time.Second, "how long a session may be quiet before the next one is accepted")
	flag.Parse()
	// A secret: from the environment, never a flag that ps shows.
	cfg.ConnectionString = os.Getenv("SERVICEBUS_CONNECTION_STRING")
	if cfg.Queue == "" || cfg.ConnectionString == "" {
		fmt.Fprintln(os.Stderr, "servicebus-consumer: --queue and SERVICEBUS_CONNECTION_STRING are required")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, provision.Provision)
	stop()
	if err != nil {
		slog.Error("servicebus-consumer stopped", "error", err)
		os.Exit(1)
	}
}

// receiver is what the consumer uses of *azservicebus.Receiver and
// *azservicebus.SessionReceiver.
type receiver interface {
	ReceiveMessages(ctx context.Context, maxMessages int, options *azservicebus.ReceiveMessagesOptions) ([]*azservicebus.ReceivedMessage, error)
	CompleteMessage(ctx context.Context, message *azservicebus.ReceivedMessage, options *azservicebus.CompleteMessageOptions) error
	AbandonMessage(ctx context.Context, message *azservicebus.ReceivedMessage, options *azservicebus.AbandonMessageOptions) error
	DeadLetterMessage(ctx context.Context, message *azservicebus.ReceivedMessage, options *azservicebus.DeadLetterOptions) error
	Close(ctx context.Context) error
}

// run receives from the queue until ctx is cancelled, running apply at most
// once per event id.
func run(ctx context.Context, cfg config, apply provision.Func) error {
	db, ledger, err := provision.Open(ctx, cfg.DBPath, cfg.Name)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	client, err := azservicebus.NewClientFromConnectionString(cfg.ConnectionString, nil)
	if err != nil {
		return fmt.Errorf("servicebus: connection string: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = client.Close(closeCtx)
	}()
	c := &consumerLoop{cfg: cfg, client: client, ledger: ledger, apply: apply}
	slog.Info("consuming", "queue", cfg.Queue, "sessions", cfg.Sessions, "db", cfg.DBPath)
	for !cfg.Sessions && ctx.Err() == nil {
		r, err := client.NewReceiverForQueue(cfg.Queue, nil)
		if err != nil {
			return fmt.Errorf("servicebus: receiver for %s: %w", cfg.Queue, err)
		}
		c.drain(ctx, r, 0) // returns on shutdown or a failed receive
		pause(ctx, 5*time.Second)
	}
	for ctx.Err() == nil {
		s, err := client.AcceptNextSessionForQueue(ctx, cfg.Queue, nil)
		var sbErr *azservicebus.Error
		switch {
		case ctx.Err() != nil:
			return nil // shutting down
		case errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeTimeout:
			continue // no session has messages
		case err != nil:
			slog.Warn("accept session failed", "queue", cfg.Queue, "error", err)
			pause(ctx, 5*time.Second)
			continue
		}
		c.drain(ctx, s, cfg.Idle)
	}
	return nil
}

type consumerLoop struct {
	cfg    config
	client *azservicebus.Client
	ledger *consumer.Ledger
	apply  provision.Func
}

// drain handles r's messages one at a time until ctx ends or, when idle is
// set, nothing comes for that long; then it closes r.
func (c *consumerLoop) drain(ctx context.Context, r receiver, idle time.Duration) {
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = r.Close(closeCtx)
	}()
	for ctx.Err() == nil {
		callCtx, cancel := ctx, context.CancelFunc(func() {})
		if idle > 0 {
			callCtx, cancel = context.WithTimeout(ctx, idle)
		}
		msgs, err := r.ReceiveMessages(callCtx, 1, nil)
		timedOut := callCtx.Err() != nil && ctx.Err() == nil
		cancel()
		if len(msgs) == 0 {
			if ctx.Err() != nil || timedOut {
				return // shutting down, or the session is quiet: let it go
			}
			// The SDK has retried already; a session lost its lock, say.
			slog.Warn("receive failed", "queue", c.cfg.Queue, "error", err)
			return
		}
		// A message in hand is finished even if a shutdown begins: it is one
		// short transaction and a settlement.
		c.handle(context.WithoutCancel(ctx), r, msgs[0])
	}
}

// handle processes one message: completed when the ledger is done with the
// event, abandoned when it failed, dead-lettered when it is no event.
func (c *consumerLoop) handle(ctx context.Context, r receiver, m *azservicebus.ReceivedMessage) {
	log := slog.With("message_id", m.MessageID, "delivery_count", m.DeliveryCount)
	if m.SessionID != nil {
		log = log.With("session", *m.SessionID)
	}
	ev, outcome, err := c.ledger.Handle(ctx, m.Body, c.apply)
	log = log.With("event_id", ev.ID, "type", ev.Type)
	switch {
	case errors.Is(err, consumer.ErrInvalid):
		// Receiving it again cannot help.
		reason := "invalid event"
		if dlErr := r.DeadLetterMessage(ctx, m, &azservicebus.DeadLetterOptions{
			Reason: &reason, ErrorDescription: new(err.Error()),
		}); dlErr != nil {
			log.Warn("dead-letter failed", "error", dlErr)
		}
		log.Error("invalid event; dead-lettered", "error", err)
	case err != nil:
		// Nothing was recorded. Abandoned, it comes back at once, first in
		// its session; past MaxDeliveryCount it is dead-lettered.
		if abErr := r.AbandonMessage(ctx, m, nil); abErr != nil {
			log.Warn("abandon failed; the message comes back when its lock expires", "error", abErr)
		}
		log.Warn("event failed; abandoned for another try", "error", err)
	default:
		// Applied, Duplicate and Stale all mean the event is done with. If
		// the completion fails, the message comes back and the ledger
		// answers Duplicate.
		if err := r.CompleteMessage(ctx, m, nil); err != nil {
			log.Warn("complete failed", "error", err)
			return
		}
		log.Info("event done", "outcome", outcome)
	}
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
