package sqs

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Limits of Amazon SQS that the Publisher works within.
const (
	// MaxBatchEntries is how many messages one SendMessageBatch call takes.
	MaxBatchEntries = 10
	// MaxBatchBytes bounds the sum of the sizes of the messages in one
	// SendMessageBatch call (body plus message attributes, as SQS counts).
	// SQS raised it, with the message size limit, from 256 KiB to 1 MiB in
	// August 2025.
	MaxBatchBytes = 1 << 20
	// DefaultMaxMessageSize is the largest message (body plus message
	// attributes) sent when neither WithMaxMessageSize nor the queue's own
	// MaximumMessageSize says less: the SQS maximum, 1 MiB.
	DefaultMaxMessageSize = 1 << 20
	// MinMaxMessageSize is the smallest MaximumMessageSize a queue can have.
	MinMaxMessageSize = 1024
	// MaxMessageAttributes is how many message attributes SQS allows on one
	// message. The Publisher sets at most 9 (see the package doc).
	MaxMessageAttributes = 10
	// DefaultSendTimeout bounds one SendMessageBatch call, the SDK's own
	// retries included.
	DefaultSendTimeout = 30 * time.Second
)

// AttributeAllowance is what a message's attributes are allowed of its size
// limit when telling writers the largest event (MaxMessageBytes): their
// names and data types, the fixed values (content type, spec version, id,
// time, traceparent) and the type, source, subject and partition key copied
// from the event. Herald's own events need about 500 bytes.
const AttributeAllowance = 2 << 10

// PayloadLimit is the largest stored event a queue with maxMessageSize
// takes: maxMessageSize less AttributeAllowance, never below zero.
func PayloadLimit(maxMessageSize int) int { return max(maxMessageSize-AttributeAllowance, 0) }

// Option configures a Publisher. An option given a bad value makes New fail
// with an error naming the option.
type Option func(*config) error

type config struct {
	region         string
	endpoint       string
	awsConfig      *aws.Config
	logger         *slog.Logger
	groupID        string
	maxMessageSize int
	verifyQueue    bool
	sendTimeout    time.Duration
}

func defaultConfig() config {
	return config{
		logger:         slog.Default(),
		maxMessageSize: DefaultMaxMessageSize,
		verifyQueue:    true,
		sendTimeout:    DefaultSendTimeout,
	}
}

func buildConfig(opts []Option) (config, error) {
	cfg := defaultConfig()
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&cfg); err != nil {
			return config{}, err
		}
	}
	return cfg, nil
}

// WithRegion sets the AWS region, overriding the one from the environment,
// the shared config file or WithAWSConfig. Without any of these the region
// is taken from a queue URL of the form https://sqs.<region>.amazonaws.com/...
func WithRegion(region string) Option {
	return func(c *config) error {
		if region == "" {
			return errors.New("WithRegion: region is empty")
		}
		c.region = region
		return nil
	}
}

// WithEndpoint sends requests to baseURL instead of the regional SQS
// endpoint: an emulator (http://127.0.0.1:4566) or a VPC interface endpoint.
// The environment variable AWS_ENDPOINT_URL_SQS has the same effect when this
// option is not given.
func WithEndpoint(baseURL string) Option {
	return func(c *config) error {
		u, err := url.Parse(baseURL)
		if err != nil {
			return fmt.Errorf("WithEndpoint: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("WithEndpoint: %q is not an absolute http(s) URL", baseURL)
		}
		c.endpoint = baseURL
		return nil
	}
}

// WithAWSConfig uses cfg (credentials, retryer, HTTP client, region) instead
// of loading the default configuration chain. WithRegion and WithEndpoint
// still apply on top. When cfg has no HTTPClient, or the SDK's default kind
// (a BuildableClient), the Publisher uses a copy whose idle connections it
// closes on Close; any other client is the caller's and left alone.
func WithAWSConfig(cfg aws.Config) Option {
	return func(c *config) error {
		if cfg.Credentials == nil {
			return errors.New("WithAWSConfig: config has no Credentials")
		}
		c.awsConfig = &cfg
		return nil
	}
}

// WithLogger sets the logger for construction and for the rare events a
// Result cannot carry (a batch whose order SQS broke). Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("WithLogger: logger is nil")
		}
		c.logger = l
		return nil
	}
}

// WithMessageGroupID sets the MessageGroupId of events that have no
// partition key, on a FIFO queue. By default each such event gets its own
// group (its event id), since Herald promises order only among events that
// share a key; a fixed group keeps all keyless events in one order instead,
// at the cost of consumers taking them one at a time. Ignored on standard
// queues. The id must be 1 to 128 printable ASCII characters, no space.
func WithMessageGroupID(id string) Option {
	return func(c *config) error {
		if !validToken(id) {
			return fmt.Errorf("WithMessageGroupID: %q is not 1 to 128 characters of printable ASCII without spaces", id)
		}
		c.groupID = id
		return nil
	}
}

// WithMaxMessageSize sets the largest message, in bytes, counting the body
// and message attributes as SQS does, between 1024 and 1 MiB. A larger event
// fails permanently without being sent. Set it to the queue's
// MaximumMessageSize when the Publisher may not read it
// (WithVerifyQueue(false)); otherwise the smaller of the two applies.
// Default 1 MiB (DefaultMaxMessageSize).
func WithMaxMessageSize(n int) Option {
	return func(c *config) error {
		if n < MinMaxMessageSize || n > MaxBatchBytes {
			return fmt.Errorf("WithMaxMessageSize: %d is outside %d to %d bytes", n, MinMaxMessageSize, MaxBatchBytes)
		}
		c.maxMessageSize = n
		return nil
	}
}

// WithVerifyQueue controls whether New reads the queue's attributes
// (sqs:GetQueueAttributes): this fails a wrong URL, region or credentials at
// startup instead of at the first event, and lowers the size limit to the
// queue's MaximumMessageSize. With false, New makes no request and the
// IAM policy needs only sqs:SendMessage. Default true.
func WithVerifyQueue(verify bool) Option {
	return func(c *config) error {
		c.verifyQueue = verify
		return nil
	}
}

// WithSendTimeout bounds one SendMessageBatch call, including the SDK's own
// retries, so that a connection that hangs cannot hold the relay longer than
// this even when its context has no deadline. The messages of a call that
// timed out get a transient error (ErrSendTimeout, marked
// adapters.ErrUnavailable). It is also what MaxPublishTime counts per call.
// Default 30s.
func WithSendTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithSendTimeout: must be positive, got %s", d)
		}
		c.sendTimeout = d
		return nil
	}
}
