package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// Defaults used when the matching option is not given.
const (
	DefaultSubjectTemplate = "herald.{type}"
	DefaultStream          = "HERALD"
	DefaultStreamSubject   = "herald.>"
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultMaxPendingAcks  = 256
	DefaultAckTimeout      = 5 * time.Second
)

// Option configures a Publisher. Options that get a bad value make Connect
// and New fail with an error naming the option.
type Option func(*config) error

type config struct {
	subjectTemplate string
	streamName      string
	streamSubjects  []string
	provision       bool
	duplicateWindow time.Duration
	maxPendingAcks  int
	ackTimeout      time.Duration
	logger          *slog.Logger
	binding         Binding
	connectOptions  []natsgo.Option
	// auth names the authentication option given, if any: only one may be.
	auth string
	tls  bool
	// connectOnly names the options given that configure the connection,
	// so that New, whose caller owns the connection, can refuse them.
	connectOnly []string
}

func defaultConfig() config {
	return config{
		subjectTemplate: DefaultSubjectTemplate,
		streamName:      DefaultStream,
		streamSubjects:  []string{DefaultStreamSubject},
		provision:       true,
		duplicateWindow: DefaultDuplicateWindow,
		maxPendingAcks:  DefaultMaxPendingAcks,
		ackTimeout:      DefaultAckTimeout,
		logger:          slog.Default(),
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

// WithSubjectTemplate sets how an event's subject is built. The placeholders
// {type} (the CloudEvents type, dots and all) and {partitionkey} (the ordering
// key, or "_" when the event has none) are replaced per event. The template is
// checked at construction; an event whose subject still comes out invalid
// (a type with a space, say) gets a permanent error. Default "herald.{type}".
func WithSubjectTemplate(template string) Option {
	return func(c *config) error {
		if _, err := parseSubjectTemplate(template); err != nil {
			return fmt.Errorf("WithSubjectTemplate: %w", err)
		}
		c.subjectTemplate = template
		return nil
	}
}

// WithStream names the JetStream stream that must capture the published
// subjects, and the subjects it is provisioned with (default "herald.>").
// The subjects are only used when provisioning; otherwise the existing
// stream's own subjects are checked against the template. Default "HERALD".
func WithStream(name string, subjects ...string) Option {
	return func(c *config) error {
		if name == "" {
			return errors.New("WithStream: stream name is required")
		}
		for _, s := range subjects {
			if s == "" || strings.ContainsAny(s, " \t\r\n") {
				return fmt.Errorf("WithStream: invalid stream subject %q", s)
			}
		}
		c.streamName = name
		if len(subjects) > 0 {
			c.streamSubjects = append([]string(nil), subjects...)
		}
		return nil
	}
}

// WithProvisionStream controls whether construction creates the stream (file
// storage, the duplicate window) or updates an existing one's subjects and
// duplicate window, keeping its other settings. With false the stream must
// already exist, for deployments where the relay may not manage streams.
// Default true.
func WithProvisionStream(provision bool) Option {
	return func(c *config) error {
		c.provision = provision
		return nil
	}
}

// WithDuplicateWindow sets how long the stream remembers a Nats-Msg-Id. A
// re-publish of the same event inside the window is dropped by the server;
// it must cover the longest time a relay may take to retry after a crash.
// Default 2m.
func WithDuplicateWindow(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithDuplicateWindow: must be positive, got %s", d)
		}
		c.duplicateWindow = d
		return nil
	}
}

// WithMaxPendingAcks bounds how many published messages may await their
// acknowledgement at once, so a large batch cannot flood the server or the
// client's memory. Default 256.
func WithMaxPendingAcks(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("WithMaxPendingAcks: must be at least 1, got %d", n)
		}
		c.maxPendingAcks = n
		return nil
	}
}

// WithAckTimeout bounds the wait for one message's acknowledgement. A message
// whose ack does not come in time gets an error (and is retried by the relay;
// the duplicate window drops it if it had in fact been stored). Default 5s.
func WithAckTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithAckTimeout: must be positive, got %s", d)
		}
		c.ackTimeout = d
		return nil
	}
}

// WithLogger sets the logger for stream provisioning and connection events.
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

// WithConnectOptions passes further options, such as a reconnect wait, to
// natsgo.Connect; prefer WithTLS and the authentication options, which check
// their files at boot. Connect only: New refuses it. The options that make a
// dead server fail fast (no reconnect buffer, reconnect forever) are applied
// after these and always win.
func WithConnectOptions(opts ...natsgo.Option) Option {
	return func(c *config) error {
		c.connectOptions = append(c.connectOptions, opts...)
		c.connectOnly = append(c.connectOnly, "WithConnectOptions")
		return nil
	}
}

// WithBinding chooses how an event is laid out in the NATS message, per the
// CloudEvents NATS protocol binding: Structured (the default) or Binary.
func WithBinding(b Binding) Option {
	return func(c *config) error {
		if b != Structured && b != Binary {
			return fmt.Errorf("WithBinding: unknown binding %d", int(b))
		}
		c.binding = b
		return nil
	}
}
