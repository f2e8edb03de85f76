package servicebus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/heraldhq/herald/adapters"
)

// Binding is the CloudEvents AMQP binding's content mode. Structured: the
// stored event JSON as the body, content type application/cloudevents+json.
// Binary: the data as the body, datacontenttype as the content type, every
// other attribute as a "cloudEvents:" application property, which
// subscription filters can match on.
type Binding = adapters.Binding

// The two content modes.
const (
	Structured = adapters.Structured
	Binary     = adapters.Binary
)

// ParseBinding is adapters.ParseBinding.
func ParseBinding(s string) (Binding, error) { return adapters.ParseBinding(s) }

// defaultRetryOptions are the SDK retry settings used unless
// WithClientOptions sets others: 2 retries, 0.5s growing to at most 5s. They
// are shorter than the SDK's own (3 retries from 4s up to 120s) because the
// relay pauses a destination that is down and probes it itself, so a
// Publish should report an outage within seconds rather than sit in the
// SDK's retries for minutes.
func defaultRetryOptions() azservicebus.RetryOptions {
	return azservicebus.RetryOptions{
		MaxRetries:    2,
		RetryDelay:    500 * time.Millisecond,
		MaxRetryDelay: 5 * time.Second,
	}
}

// DefaultSendTimeout bounds one call into the SDK during Publish (opening a
// batch, sending one), the SDK's own retries included, unless
// WithSendTimeout says otherwise. With Herald's default retry options a
// healthy entity answers well within it.
const DefaultSendTimeout = 30 * time.Second

// closeTimeout bounds how long Close waits for the service to acknowledge the
// closing of the link and connection; after that the socket is dropped anyway.
const closeTimeout = 10 * time.Second

// Option configures a Publisher. An option given a bad value makes the
// constructor fail with an error naming the option.
type Option func(*config) error

type config struct {
	binding       Binding
	sessions      bool
	partitioned   bool
	maxBatchBytes uint64
	maxMessage    int // bytes, as the entity's maximum message size
	sendTimeout   time.Duration
	clientOptions azservicebus.ClientOptions
	logger        *slog.Logger
}

func buildConfig(opts []Option) (config, error) {
	cfg := config{logger: slog.Default(), sendTimeout: DefaultSendTimeout, maxMessage: DefaultMaxMessageSize}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&cfg); err != nil {
			return config{}, err
		}
	}
	if cfg.clientOptions.RetryOptions == (azservicebus.RetryOptions{}) {
		cfg.clientOptions.RetryOptions = defaultRetryOptions()
	}
	return cfg, nil
}

// WithBinding chooses the CloudEvents content mode. Default Structured.
func WithBinding(b Binding) Option {
	return func(c *config) error {
		if b != Structured && b != Binary {
			return fmt.Errorf("WithBinding: unknown binding %d", int(b))
		}
		c.binding = b
		return nil
	}
}

// WithSessions sets each message's SessionId to the event's partition key, so
// that a session-enabled queue or subscription hands all events of one key to
// one consumer, in order. An event without a key gets its own id as SessionId:
// it has no order to keep, and a session-enabled entity refuses messages
// without one. The entity must have sessions enabled (and must not, when this
// is off). Default false.
func WithSessions(on bool) Option {
	return func(c *config) error {
		c.sessions = on
		return nil
	}
}

// WithPartitionedEntity declares that the queue or topic is partitioned (a
// Standard entity created with partitioning, or a partitioned Premium
// namespace). Service Bus rejects a batch whose messages belong to different
// partitions, so each batch then carries a single partition key, and every
// message gets an explicit PartitionKey: the event's partition key, or its id
// when it has none (which is also where duplicate detection would put it).
// Events without a key are then sent one per batch. Default false.
func WithPartitionedEntity(on bool) Option {
	return func(c *config) error {
		c.partitioned = on
		return nil
	}
}

// WithMaxBatchBytes caps the size of one batch below the limit the service
// announces for the entity (256 KB on Standard, 1 MB on Premium). It must not
// exceed that limit: the service would reject every full batch. Default 0,
// the service's limit.
func WithMaxBatchBytes(n uint64) Option {
	return func(c *config) error {
		c.maxBatchBytes = n
		return nil
	}
}

// DefaultMaxMessageSize is the maximum message size assumed unless
// WithMaxMessageSize says otherwise: a Standard namespace's 256 KB, the
// smallest any entity has. A Premium entity takes 1 MB by default and up to
// 100 MB when its MaxMessageSizeInKilobytes is raised.
const DefaultMaxMessageSize = 256 << 10

// EnvelopeAllowance is what a message's AMQP envelope is allowed of the
// entity's maximum message size when telling writers the largest event
// (MaxMessageBytes): message id, subject, content type, session and
// partition keys, and in the Binary binding the cloudEvents: application
// properties with their encoding.
const EnvelopeAllowance = 4 << 10

// PayloadLimit is the largest stored event an entity whose maximum message
// size is maxMessageSize takes: maxMessageSize less EnvelopeAllowance,
// never below zero.
func PayloadLimit(maxMessageSize int) int { return max(maxMessageSize-EnvelopeAllowance, 0) }

// WithMaxMessageSize declares the entity's maximum message size in bytes
// (its MaxMessageSizeInKilobytes × 1024), which the SDK does not report.
// It is what MaxMessageBytes tells writers, so that an event the entity
// would refuse is stopped before it reaches the outbox; Publish still
// leaves the verdict to the service. Default 256 KiB
// (DefaultMaxMessageSize).
func WithMaxMessageSize(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("WithMaxMessageSize: must be positive, got %d", n)
		}
		c.maxMessage = n
		return nil
	}
}

// WithSendTimeout bounds each call into the SDK that Publish makes (opening a
// batch, which may open the connection and link, or sending one), the SDK's
// retries included, so that a connection that hangs cannot hold the relay
// longer than this even when its context has no deadline. The messages of a
// call that timed out fail with ErrSendTimeout, marked
// adapters.ErrUnavailable, and so do the rest of that Publish. It is also
// what MaxPublishTime counts per call. The constructors' own check is bounded
// by their context instead. Default 30s (DefaultSendTimeout).
func WithSendTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithSendTimeout: must be positive, got %s", d)
		}
		c.sendTimeout = d
		return nil
	}
}

// WithClientOptions passes settings such as TLS, AMQP over WebSockets (port
// 443 through proxies), a custom endpoint or retry policy to the SDK client.
// Used by the constructors that create the client. A zero RetryOptions means
// Herald's default: 2 retries, 0.5s growing to at most 5s, shorter than the
// SDK's because the relay retries from the outbox with its own backoff.
func WithClientOptions(opts azservicebus.ClientOptions) Option {
	return func(c *config) error {
		c.clientOptions = opts
		return nil
	}
}

// WithLogger sets the logger for send failures and connection problems.
// Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("WithLogger: logger is nil")
		}
		c.logger = l
		return nil
	}
}
