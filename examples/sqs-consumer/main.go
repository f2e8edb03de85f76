// Command sqs-consumer provisions infrastructure from Herald's events on an
// Amazon SQS queue: each event exactly once, although SQS delivers at least
// once (and a standard queue, which has no duplicate detection, may hand out
// a re-published event twice).
//
// It long-polls the queue. Each message is parsed as a CloudEvent and handed
// to a consumer.Ledger, which runs the side effect at most once per event
// id, in the transaction that records the id, in this consumer's own SQLite
// database. The message is deleted once Process returns nil (applied, a
// duplicate, or stale). When it fails the message is left alone: it becomes
// visible again after its visibility timeout and is received again.
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

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/heraldhq/herald/examples/internal/provision"
	"github.com/heraldhq/herald/pkg/consumer"
)

type config struct {
	QueueURL string
	Region   string
	Endpoint string
	Name     string
	DBPath   string
	// WaitTime is how long one ReceiveMessage call waits for a message
	// (long polling, at most 20s).
	WaitTime time.Duration
	// VisibilityTimeout hides a received message from other receives; a
	// message not deleted within it is received again. 0: the queue's own.
	VisibilityTimeout time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.QueueURL, "queue-url", "", "URL of the queue Herald publishes to (required)")
	flag.StringVar(&cfg.Region, "region", "", "AWS region; default: AWS_REGION, the profile, or the queue URL")
	flag.StringVar(&cfg.Endpoint, "endpoint", "", "SQS endpoint, e.g. http://127.0.0.1:4566 for an emulator; default: AWS's")
	flag.StringVar(&cfg.Name, "name", "provisioner", "this consumer's name in the ledger")
	flag.StringVar(&cfg.DBPath, "db", "consumer.db", "SQLite file holding the ledger and the provisioned table")
	flag.DurationVar(&cfg.WaitTime, "wait", 20*time.Second, "long polling: how long one receive waits for messages (at most 20s)")
	flag.DurationVar(&cfg.VisibilityTimeout, "visibility-timeout", 0, "how long a received message stays hidden; a failed one comes back after it (0: the queue's setting)")
	flag.Parse()
	if cfg.QueueURL == "" {
		fmt.Fprintln(os.Stderr, "sqs-consumer: --queue-url is required")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, provision.Provision)
	stop()
	if err != nil {
		slog.Error("sqs-consumer stopped", "error", err)
		os.Exit(1)
	}
}

// run receives from the queue until ctx is cancelled, running apply at most
// once per event id.
func run(ctx context.Context, cfg config, apply provision.Func) error {
	db, ledger, err := provision.Open(ctx, cfg.DBPath, cfg.Name)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()

	// Credentials from the default chain: the environment, a profile, or
	// the role of the pod, task or instance.
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("aws config: %w", err)
	}
	client := sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})

	slog.Info("consuming", "queue", cfg.QueueURL, "db", cfg.DBPath)
	for {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(cfg.QueueURL),
			MaxNumberOfMessages: 10,
			WaitTimeSeconds:     int32(cfg.WaitTime / time.Second),
			VisibilityTimeout:   int32(cfg.VisibilityTimeout / time.Second),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameApproximateReceiveCount,
			},
		})
		if ctx.Err() != nil {
			return nil // shutting down
		}
		if err != nil {
			// The SDK has retried already; pause, then try again.
			slog.Warn("receive failed", "queue", cfg.QueueURL, "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
			continue
		}
		for _, m := range out.Messages {
			// A message in hand is finished even if a shutdown begins: it is
			// one short transaction and a delete.
			handle(context.WithoutCancel(ctx), client, cfg.QueueURL, ledger, apply, m)
		}
	}
}

// handle processes one message: deleted when the ledger is done with the
// event, left in the queue when it failed.
func handle(ctx context.Context, client *sqs.Client, queueURL string, ledger *consumer.Ledger, apply provision.Func, m types.Message) {
	log := slog.With("message_id", aws.ToString(m.MessageId),
		"receive_count", m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	ev, outcome, err := ledger.Handle(ctx, []byte(aws.ToString(m.Body)), apply)
	log = log.With("event_id", ev.ID, "type", ev.Type)
	switch {
	case errors.Is(err, consumer.ErrInvalid):
		// Not a CloudEvent, or one the ledger cannot store: receiving it
		// again cannot help. The queue's redrive policy moves it to the
		// dead-letter queue after maxReceiveCount receives.
		log.Error("invalid event; left for the dead-letter queue", "error", err)
	case err != nil:
		// Nothing was recorded; after the visibility timeout the message
		// is received again and the side effect runs again.
		log.Warn("event failed; it comes back after the visibility timeout", "error", err)
	default:
		// Applied, Duplicate and Stale all mean the event is done with. If
		// the delete fails, the message comes back after the visibility
		// timeout and the ledger answers Duplicate.
		if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{
			QueueUrl:      aws.String(queueURL),
			ReceiptHandle: m.ReceiptHandle,
		}); err != nil {
			log.Warn("delete failed", "error", err)
			return
		}
		log.Info("event done", "outcome", outcome)
	}
}
