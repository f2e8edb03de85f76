package config

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/redact"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
	"github.com/heraldhq/herald/pkg/subscriptions"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// Config is everything Herald reads at boot. Each field's koanf tag is its key
// in the YAML file, and the tags alone define the set of known keys and
// HERALD_* variables.
type Config struct {
	Database Database `koanf:"database"`
	// Adapter names the main destination's adapter, which receives every
	// event: "nats", "sqs", "servicebus" or "webhook".
	Adapter    string     `koanf:"adapter"`
	NATS       NATS       `koanf:"nats"`
	Relay      Relay      `koanf:"relay"`
	Log        Log        `koanf:"log"`
	HTTP       HTTP       `koanf:"http"`
	Enricher   Enricher   `koanf:"enricher"`
	Tracing    Tracing    `koanf:"tracing"`
	SQS        SQS        `koanf:"sqs"`
	ServiceBus ServiceBus `koanf:"servicebus"`
	Webhook    Webhook    `koanf:"webhook"`
	// Destinations are where events go besides the main adapter, each with
	// its own relay, retries and dead letters. Only in the config file.
	Destinations []Destination `koanf:"destinations"`
	// Subscriptions configures how the webhook endpoints registered at
	// runtime (herald webhooks, /v1/webhooks) are delivered to.
	Subscriptions Subscriptions `koanf:"subscriptions"`
	// DeliveryLog records every delivery attempt in the outbox database.
	DeliveryLog DeliveryLog `koanf:"delivery_log"`
}

// Subscriptions configures the delivery of the webhook endpoints stored in
// the database. The endpoints themselves (URL, types, secrets, headers)
// are managed with `herald webhooks` or the admin API; what may be reached,
// and how hard to try, stays the operator's, here.
type Subscriptions struct {
	// RefreshInterval is how often serve, and the enricher writing events,
	// read the stored endpoints again. A change made through this
	// process's admin API applies at once.
	RefreshInterval time.Duration `koanf:"refresh_interval"`
	// Timeout bounds one request, from dial to the end of the response.
	Timeout time.Duration `koanf:"timeout"`
	// Concurrency is the most requests in flight to one endpoint; events
	// of one partition key still go one at a time, in order.
	Concurrency int `koanf:"concurrency"`
	// RetrySchedule is the wait after each failed attempt, with up to 20%
	// added at random so that retries after an outage spread out; an
	// event still failing after the last is a dead letter. A receiver's
	// Retry-After wins when longer.
	RetrySchedule []time.Duration `koanf:"retry_schedule"`
	// DisableAfter disables an endpoint once every delivery has failed for
	// this long; 0 never does (a 410 Gone always does).
	DisableAfter time.Duration `koanf:"disable_after"`
	// SecretGrace is how long a rotated-out secret keeps signing beside
	// the new one, unless the rotation says otherwise.
	SecretGrace time.Duration `koanf:"secret_grace"`
	// AllowCIDRs and AllowHTTPHosts are the SSRF guard's allowlist for
	// every stored endpoint, as for webhook.allow_cidrs and
	// webhook.allow_http_hosts. Only this file sets them: the admin API
	// cannot widen what Herald may reach.
	AllowCIDRs     []string `koanf:"allow_cidrs"`
	AllowHTTPHosts []string `koanf:"allow_http_hosts"`
	// SecretsKey seals the stored endpoints' signing secrets (AES-256-GCM):
	// 32 random bytes in base64. A secret, so pass it as
	// HERALD_SUBSCRIPTIONS_SECRETS_KEY (the chart reads it from a
	// Kubernetes Secret). docs/webhooks.md "Secrets at rest" has the rest.
	SecretsKey string `koanf:"secrets_key"`
	// PreviousSecretsKeys still open rows sealed before a key rotation,
	// until `herald webhooks reencrypt` has sealed them again.
	PreviousSecretsKeys []string `koanf:"previous_secrets_keys"`
	// AllowPlaintextSecrets lets Herald store new secrets unencrypted when
	// there is no SecretsKey; without either, adding an endpoint or
	// rotating a secret is refused.
	AllowPlaintextSecrets bool `koanf:"allow_plaintext_secrets"`
}

// DefaultRetrySchedule is subscriptions.retry_schedule's default: nine
// attempts over about 10h45m.
func DefaultRetrySchedule() []time.Duration {
	return []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
		30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour}
}

// Destination is one route of the route table: the events whose type
// matches one of Types also go, through their own relay, to this adapter.
type Destination struct {
	// Name identifies the destination in the outbox, metrics, logs and
	// `herald outbox --destination`; "main" is the main adapter's.
	Name string `koanf:"name"`
	// Types are globs over the CloudEvents type, * matching dots too:
	// "io.herald.portal.input_port.*". Empty: every event.
	Types []string `koanf:"types"`
	// Adapter is nats, sqs, servicebus or webhook, configured by the block
	// of the same name within the destination.
	Adapter    string     `koanf:"adapter"`
	NATS       NATS       `koanf:"nats"`
	SQS        SQS        `koanf:"sqs"`
	ServiceBus ServiceBus `koanf:"servicebus"`
	Webhook    Webhook    `koanf:"webhook"`
}

// Webhook configures the webhook adapter: one endpoint receives each event
// as a POST signed per Standard Webhooks. Validated only where selected.
type Webhook struct {
	// URL is the endpoint: https, or http for an allowlisted host.
	URL string `koanf:"url"`
	// Secrets sign every request, "whsec_<base64>": newest first, and
	// during a rotation the old one after it until receivers have the new.
	// Pass them as HERALD_WEBHOOK_SECRETS, or use secrets_file.
	Secrets []string `koanf:"secrets"`
	// SecretsFile holds the secrets one per line instead (a mounted
	// Kubernetes Secret); read at boot.
	SecretsFile string `koanf:"secrets_file"`
	// Timeout bounds one request, from dial to the end of the response.
	Timeout time.Duration `koanf:"timeout"`
	// Concurrency is the most requests in flight to the endpoint; events
	// of one partition key still go one at a time, in order.
	Concurrency int `koanf:"concurrency"`
	// AllowCIDRs lets the endpoint resolve to addresses the SSRF guard
	// refuses otherwise: private, loopback, link-local ranges.
	AllowCIDRs []string `koanf:"allow_cidrs"`
	// AllowHTTPHosts may be reached over plain http.
	AllowHTTPHosts []string `koanf:"allow_http_hosts"`
	// DisableAfter disables the endpoint once every delivery has failed
	// for this long without a break; its later events become dead letters
	// for replay, and an io.herald.webhook.endpoint_disabled event goes to
	// the main destination. 0 never disables for failing (a 410 always
	// does).
	DisableAfter time.Duration `koanf:"disable_after"`
}

// SQS configures the AWS SQS adapter; validated only when adapter=sqs.
// Credentials come from the default AWS chain (environment, shared profile,
// IRSA web identity, instance role), never from this file.
type SQS struct {
	// QueueURL is the queue; a name ending in .fifo is a FIFO queue.
	QueueURL string `koanf:"queue_url"`
	// Region overrides the region from the environment.
	Region string `koanf:"region"`
	// Endpoint overrides the SQS endpoint (VPC endpoint, emulator).
	Endpoint string `koanf:"endpoint"`
	// MessageGroupID is the FIFO group of events without a partition key.
	MessageGroupID string `koanf:"message_group_id"`
	// MaxMessageSize is the largest message in bytes; 0 is SQS's maximum.
	MaxMessageSize int `koanf:"max_message_size"`
}

// ServiceBus configures the Azure Service Bus adapter; validated only when
// adapter=servicebus.
type ServiceBus struct {
	// ConnectionString authenticates with a SAS key; pass it as
	// HERALD_SERVICEBUS_CONNECTION_STRING. Alternatively Namespace, with
	// Azure's default credential chain (workload identity on AKS).
	ConnectionString string `koanf:"connection_string"`
	// Namespace is the fully qualified host, e.g. herald.servicebus.windows.net.
	Namespace string `koanf:"namespace"`
	// Queue or Topic: exactly one.
	Queue string `koanf:"queue"`
	Topic string `koanf:"topic"`
	// Binding is "structured" or "binary" (the CloudEvents AMQP binding).
	Binding string `koanf:"binding"`
	// Sessions sets SessionId = partition key; the entity must be
	// session-enabled.
	Sessions bool `koanf:"sessions"`
	// Partitioned is true for a partitioned entity.
	Partitioned bool `koanf:"partitioned"`
	// MaxMessageSize is the entity's maximum message size in bytes, which
	// the Azure SDK does not report; 0 is a Standard namespace's 256 KiB.
	// The enricher quarantines a record whose event would be larger.
	MaxMessageSize int `koanf:"max_message_size"`
}

// HTTP configures the HTTP endpoint: /metrics, /healthz, /readyz, and the
// audit-record ingest when it is on.
type HTTP struct {
	// Listen is the address to serve on, e.g. ":9090"; empty serves nothing.
	Listen string `koanf:"listen"`
	// IngestToken turns on POST /v1/audit-records (the portal pushes audit
	// records) and is the bearer token it requires; pass it as
	// HERALD_HTTP_INGEST_TOKEN. Empty: no ingest endpoint.
	IngestToken string `koanf:"ingest_token"`
	// AdminToken turns on the admin API under /v1/webhooks (manage webhook
	// endpoints at runtime) and is the bearer token it requires; pass it
	// as HERALD_HTTP_ADMIN_TOKEN. Empty: no admin API.
	AdminToken string `koanf:"admin_token"`
	// ConsoleReadOnly serves the operator console (under /console, on
	// whenever admin_token is set) without its buttons: every page renders,
	// every change is refused. For a view shared with people who should
	// look but not retry or edit.
	ConsoleReadOnly bool `koanf:"console_read_only"`
	// ConsoleSampleEvery is how often the console samples each relay's
	// counters, backlog and broker health for its plots; 0 means 10s.
	ConsoleSampleEvery time.Duration `koanf:"console_sample_every"`
}

// Enricher configures how audit records become events.
type Enricher struct {
	// RulesFile is a mapping rules YAML file (docs/enricher.md) replacing
	// the built-in catalogue; empty keeps the catalogue. It is read and
	// checked at boot by the commands that enrich (serve with an ingest
	// token, enrich).
	RulesFile string `koanf:"rules_file"`
	// PortalDriver is the portal database's driver, "sqlite", "postgres" or
	// "mysql"; empty: database.driver.
	PortalDriver string `koanf:"portal_driver"`
	// PortalDSN is the portal's database, where the audit table and the
	// entities live, when it is not the outbox's; pass it as
	// HERALD_ENRICHER_PORTAL_DSN. Empty: the portal's tables are in the
	// outbox's database. `herald serve`'s ingest and `herald enrich` read it
	// (the latter's --portal-dsn overrides it).
	PortalDSN string `koanf:"portal_dsn"`
}

// Portal returns the portal's database, and false when the portal's tables
// are in the outbox's database.
func (e Enricher) Portal(outbox Database) (Database, bool) {
	if e.PortalDSN == "" {
		return Database{}, false
	}
	driver := e.PortalDriver
	if driver == "" {
		driver = outbox.Driver
	}
	return Database{Driver: driver, DSN: e.PortalDSN}, true
}

// Database is where the outbox table lives.
type Database struct {
	// Driver is "sqlite", "postgres" or "mysql" (MySQL 8 and MariaDB 10.6+).
	Driver string `koanf:"driver"`
	// DSN is the data source: for sqlite a file path, for postgres a URL
	// (postgres://user:pass@host:5432/db?sslmode=require), for mysql the
	// go-sql-driver form (user:pass@tcp(host:3306)/db).
	DSN string `koanf:"dsn"`
}

// NATS configures the NATS JetStream adapter. It is validated only when
// Adapter is "nats".
type NATS struct {
	// URL is "embedded" for an in-process server, or one or more
	// comma-separated nats:// or tls:// URLs.
	URL string `koanf:"url"`
	// EmbeddedStoreDir is the embedded server's JetStream storage directory.
	EmbeddedStoreDir string `koanf:"embedded_store_dir"`
	// Stream is the JetStream stream events are published into.
	Stream string `koanf:"stream"`
	// StreamSubjects are the stream's subjects when Herald provisions it.
	StreamSubjects []string `koanf:"stream_subjects"`
	// SubjectTemplate builds each event's subject; the adapter defines its
	// placeholders, such as {type}.
	SubjectTemplate string `koanf:"subject_template"`
	// ProvisionStream makes Herald create or update the stream at boot.
	ProvisionStream bool `koanf:"provision_stream"`
	// DuplicateWindow is how long JetStream remembers event ids to drop
	// re-publishes.
	DuplicateWindow time.Duration `koanf:"duplicate_window"`
	// MaxPendingAcks bounds publishes awaiting a JetStream ack.
	MaxPendingAcks int `koanf:"max_pending_acks"`
	// AckTimeout is how long one publish waits for its ack.
	AckTimeout time.Duration `koanf:"ack_timeout"`
	// Binding is the CloudEvents NATS binding: "structured" (the JSON
	// event is the body) or "binary" (data is the body, attributes ce-*
	// headers).
	Binding string `koanf:"binding"`
	// Authentication: at most one of creds_file, nkey_seed_file, token,
	// user (with password).
	CredsFile    string  `koanf:"creds_file"`
	NKeySeedFile string  `koanf:"nkey_seed_file"`
	Token        string  `koanf:"token"`
	User         string  `koanf:"user"`
	Password     string  `koanf:"password"`
	TLS          NATSTLS `koanf:"tls"`
}

// NATSTLS configures TLS to the NATS servers: a CA to trust (empty: the
// system's), and a client certificate for mTLS.
type NATSTLS struct {
	CAFile   string `koanf:"ca_file"`
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
}

// Relay configures the relays that publish outbox rows.
type Relay struct {
	BatchSize    int           `koanf:"batch_size"`
	PollInterval time.Duration `koanf:"poll_interval"`
	// Lease is how long a relay's bucket leases last unless renewed: how
	// long a relay that died keeps its buckets. A live relay renews them
	// every lease/3 (at most every 500ms), however long a publish takes,
	// so the lease bounds failover, not a publish.
	Lease           time.Duration `koanf:"lease"`
	MaxAttempts     int           `koanf:"max_attempts"`
	BackoffMin      time.Duration `koanf:"backoff_min"`
	BackoffMax      time.Duration `koanf:"backoff_max"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// KeepDelivered keeps delivered rows, marked delivered, instead of
	// deleting them.
	KeepDelivered bool `koanf:"keep_delivered"`
	// DeliveredRetention is how long kept delivered rows stay before the
	// relay prunes them; 0 keeps them until `herald outbox purge`.
	DeliveredRetention time.Duration `koanf:"delivered_retention"`
	// Ordering keeps each partition key's events in commit order across all
	// relays (every relay of one outbox must agree): a key whose event
	// fails waits for it. Off lets a key's later events overtake a failing
	// one.
	Ordering bool `koanf:"ordering"`
	// DeadLetterPolicy is what a dead-lettered event does to the later
	// events of its partition key: "park_key" holds them back until it is
	// retried or purged, so that no consumer sees an event whose
	// predecessor it never got; "skip" lets them go on without it.
	DeadLetterPolicy string `koanf:"dead_letter_policy"`
}

// DeliveryLog configures the delivery log (docs/outbox.md, "Delivery
// log"): a row per attempt to deliver an event to a destination, with its
// outcome, the redacted answer and the latency, for `herald outbox
// attempts` and GET /v1/attempts.
type DeliveryLog struct {
	// Enabled makes every relay log its attempts, in the transaction that
	// records their outcomes.
	Enabled bool `koanf:"enabled"`
	// Retention is how long attempts are kept; the main relay prunes older
	// ones every minute, enabled or not, so turning the log off empties it.
	Retention time.Duration `koanf:"retention"`
}

func (l DeliveryLog) validate(bad reporter) {
	positive(bad, "delivery_log.retention", l.Retention)
}

// Tracing configures OpenTelemetry spans of the relay: one per published
// batch, linked to the trace context each event was written with.
type Tracing struct {
	// Exporter is "none" or "otlp" (OTLP over HTTP/protobuf).
	Exporter string `koanf:"exporter"`
	// Endpoint is the collector's OTLP/HTTP URL, e.g.
	// http://otel-collector:4318 (/v1/traces is added unless the URL has
	// a path); empty: OTEL_EXPORTER_OTLP_ENDPOINT or http://localhost:4318.
	Endpoint string `koanf:"endpoint"`
	// SampleRatio is the share of batches traced, 0 to 1.
	SampleRatio float64 `koanf:"sample_ratio"`
}

// Log configures Herald's own logging.
type Log struct {
	Level  string `koanf:"level"`  // debug, info, warn or error
	Format string `koanf:"format"` // text or json
}

// Default returns the configuration Herald runs with when neither a file nor
// the environment says otherwise: SQLite in herald.db and an embedded NATS
// server, so that `herald` alone works on a laptop.
func Default() Config {
	return Config{
		Database: Database{Driver: "sqlite", DSN: "herald.db"},
		HTTP:     HTTP{ConsoleSampleEvery: 10 * time.Second},
		Adapter:  "nats",
		NATS: NATS{
			URL:              "embedded",
			EmbeddedStoreDir: "herald-data/jetstream",
			Stream:           "HERALD",
			StreamSubjects:   []string{"herald.>"},
			SubjectTemplate:  "herald.{type}",
			ProvisionStream:  true,
			DuplicateWindow:  2 * time.Minute,
			MaxPendingAcks:   256,
			AckTimeout:       5 * time.Second,
			Binding:          "structured",
		},
		Relay: Relay{
			// 500 amortises each read, publish window and delete: 1.1 ×
			// the reference relay at 100, 1.4 × at 500 (docs/benchmarks.md).
			BatchSize:    500,
			PollInterval: 500 * time.Millisecond,
			// A relay renews every second: a dead one's keys move on
			// within about 4s.
			Lease:           3 * time.Second,
			MaxAttempts:     10,
			BackoffMin:      time.Second,
			BackoffMax:      10 * time.Minute,
			ShutdownTimeout: 30 * time.Second,
			KeepDelivered:   false,
			// A week: long enough to look into last week's incident.
			DeliveredRetention: 7 * 24 * time.Hour,
			Ordering:           true,
			DeadLetterPolicy:   producer.ParkKey.String(),
		},
		Log:        Log{Level: "info", Format: "text"},
		Tracing:    Tracing{Exporter: "none", SampleRatio: 1},
		ServiceBus: ServiceBus{Binding: "structured"},
		Webhook:    defaultWebhook(),
		Subscriptions: Subscriptions{
			RefreshInterval: 5 * time.Second,
			Timeout:         15 * time.Second,
			Concurrency:     4,
			RetrySchedule:   DefaultRetrySchedule(),
			DisableAfter:    24 * time.Hour,
			SecretGrace:     24 * time.Hour,
		},
		// On by default: an operator looking into a failed delivery needs
		// the attempts from before they looked. A week, like delivered rows.
		DeliveryLog: DeliveryLog{Enabled: true, Retention: 7 * 24 * time.Hour},
	}
}

// Main returns the main destination as a Destination: the top-level adapter
// and its blocks, receiving every event.
func (c Config) Main() Destination {
	return Destination{Name: outbox.MainDestination, Adapter: c.Adapter, NATS: c.NATS, SQS: c.SQS, ServiceBus: c.ServiceBus, Webhook: c.Webhook}
}

// Routes returns the route table of the destinations, which the main
// relay fans events out by (producer.WithRouter).
func (c Config) Routes() outbox.Routes {
	rs := make(outbox.Routes, len(c.Destinations))
	for i, d := range c.Destinations {
		rs[i] = outbox.Route{Destination: d.Name, Types: d.Types}
	}
	return rs
}

func defaultWebhook() Webhook {
	return Webhook{Timeout: 15 * time.Second, Concurrency: 4, DisableAfter: 24 * time.Hour}
}

// defaultDestination is what a destination in the file starts from: each
// adapter block with the same defaults as the main one's.
func defaultDestination() Destination {
	d := Default()
	return Destination{NATS: d.NATS, ServiceBus: d.ServiceBus, Webhook: d.Webhook}
}

//go:embed herald.example.yaml
var exampleYAML string

// ExampleYAML returns the reference configuration file: every key with its
// default and a one-line comment. Loading it yields exactly [Default].
func ExampleYAML() string { return exampleYAML }

// ErrInvalid is wrapped by every error that blames the configuration's
// content, which the user fixes by editing it: a value that fails validation
// or cannot be parsed, a key in the file or a HERALD_* variable that names no
// setting, a file that is not YAML. An unreadable file is not such an error;
// a missing one wraps [io/fs.ErrNotExist].
var ErrInvalid = errors.New("invalid configuration")

// FieldError is one problem with one setting.
type FieldError struct {
	Key    string // dotted key, e.g. "relay.batch_size"
	Reason string // e.g. "must be between 1 and 10000 (got 0)"
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Reason }

// Unwrap makes every FieldError match [ErrInvalid].
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Use is what a command does with the configuration. Each use reads some
// settings, and [LoadFor] and [Config.ValidateFor] check those and no
// others: a command is not refused for a setting it never reads.
type Use int

const (
	// UseAll reads everything: herald serve, and any command that starts
	// what serve starts.
	UseAll Use = iota
	// UseEnrich is `herald enrich`: the outbox and portal databases, the
	// enricher, the log, and of the main destination only what tells its
	// size limit. It publishes nothing, so a webhook adapter's URL and
	// secrets, the relay, the other destinations and the HTTP server are
	// not its business.
	UseEnrich
)

// Validate reports every problem at once, joined, each a [*FieldError]
// naming its key. Settings of adapters other than the selected one are not
// checked. It is ValidateFor(UseAll).
func (c Config) Validate() error { return c.ValidateFor(UseAll) }

// ValidateFor is [Config.Validate] for the settings that use reads.
func (c Config) ValidateFor(use Use) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	c.Database.validate(bad)
	c.Enricher.validate(bad)
	c.Log.validate(bad)
	if use == UseEnrich {
		c.Main().validateLimit(bad)
		return errors.Join(errs...)
	}
	c.Main().validateAdapter("", bad)
	c.Relay.validate(bad)
	c.DeliveryLog.validate(bad)
	c.validateDestinations(bad)
	c.Tracing.validate(bad)
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			bad("http.listen", "must be host:port or :port (got %q)", c.HTTP.Listen)
		}
	} else {
		if c.HTTP.IngestToken != "" {
			bad("http.listen", "required when http.ingest_token is set (the ingest endpoint needs a listener)")
		}
		if c.HTTP.AdminToken != "" {
			bad("http.listen", "required when http.admin_token is set (the admin API needs a listener)")
		}
	}
	if c.HTTP.ConsoleSampleEvery < 0 {
		bad("http.console_sample_every", "must not be negative (got %s)", c.HTTP.ConsoleSampleEvery)
	}
	if t := c.HTTP.AdminToken; t != "" && len(t) < 16 {
		bad("http.admin_token", "must be at least 16 characters (got %d)", len(t))
	}
	c.Subscriptions.validate(bad)
	return errors.Join(errs...)
}

// reporter records one problem with the setting at key.
type reporter func(key, format string, args ...any)

// validateAdapter checks the selected adapter's block; prefix is "" for
// the main destination and "destinations[i]." for another, so that keys
// name the field.
func (a Destination) validateAdapter(prefix string, bad reporter) {
	in := func(key, format string, args ...any) { bad(prefix+key, format, args...) }
	switch a.Adapter {
	case "nats":
		a.NATS.validate(in)
	case "sqs":
		a.SQS.validate(in)
	case "servicebus":
		a.ServiceBus.validate(in)
	case "webhook":
		a.Webhook.validate(in)
	default:
		in("adapter", "must be one of nats, sqs, servicebus, webhook (got %q)", a.Adapter)
	}
}

// validateLimit checks what the main destination's size limit is learnt
// from (see [Use]): the NATS and SQS blocks, whose adapters ask the broker,
// and the size settings of the others, which are configuration.
func (a Destination) validateLimit(bad reporter) {
	switch a.Adapter {
	case "nats", "sqs":
		a.validateAdapter("", bad)
	case "servicebus":
		a.ServiceBus.validateSize(bad)
	case "webhook":
	default:
		bad("adapter", "must be one of nats, sqs, servicebus, webhook (got %q)", a.Adapter)
	}
}

func (e Enricher) validate(bad reporter) {
	switch e.PortalDriver {
	case "", "sqlite", "postgres", "mysql":
	default:
		bad("enricher.portal_driver", "must be one of sqlite, postgres, mysql, or empty for database.driver (got %q)", e.PortalDriver)
	}
	if e.PortalDriver != "" && e.PortalDSN == "" {
		bad("enricher.portal_driver", "set only together with enricher.portal_dsn")
	}
}

func (c Config) validateDestinations(bad reporter) {
	seen := map[string]bool{}
	for i, d := range c.Destinations {
		prefix := fmt.Sprintf("destinations[%d].", i)
		switch err := outbox.ValidateDestination(d.Name); {
		case err != nil:
			bad(prefix+"name", "%v", err)
		case d.Name == outbox.MainDestination:
			bad(prefix+"name", "%q is the main adapter's destination", d.Name)
		case seen[d.Name]:
			bad(prefix+"name", "%q is used by an earlier destination", d.Name)
		}
		seen[d.Name] = true
		if err := event.ValidateTypeGlobs(d.Types); err != nil {
			bad(prefix+"types", "%v", err)
		}
		d.validateAdapter(prefix, bad)
		if d.Adapter != "nats" {
			continue
		}
		switch {
		case d.NATS.URL == "embedded" && (c.Adapter != "nats" || c.NATS.URL != "embedded"):
			bad(prefix+"nats.url", "embedded needs the main adapter on the embedded server (adapter: nats, nats.url: embedded)")
		case c.Adapter == "nats" && d.NATS.URL == c.NATS.URL && d.NATS.Stream == c.NATS.Stream:
			bad(prefix+"nats.stream", "%q is the main adapter's stream on the same server: JetStream would drop this destination's copies as duplicates", d.NATS.Stream)
		}
	}
}

func (d Database) validate(bad reporter) {
	switch d.Driver {
	case "sqlite", "postgres", "mysql":
	case "":
		bad("database.driver", "required")
	default:
		bad("database.driver", "must be one of sqlite, postgres, mysql (got %q)", d.Driver)
	}
	if d.DSN == "" {
		bad("database.dsn", "required")
	}
}

func (q SQS) validate(bad reporter) {
	if q.QueueURL == "" {
		bad("sqs.queue_url", "required when adapter=sqs")
	} else if u, err := url.Parse(q.QueueURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("sqs.queue_url", "must be an http(s) queue URL (got %q)", redact.URL(q.QueueURL))
	}
	if q.Endpoint != "" {
		if u, err := url.Parse(q.Endpoint); err != nil || u.Host == "" {
			bad("sqs.endpoint", "must be a URL (got %q)", redact.URL(q.Endpoint))
		}
	}
	if q.MaxMessageSize < 0 {
		bad("sqs.max_message_size", "must not be negative (got %d)", q.MaxMessageSize)
	}
}

func (b ServiceBus) validate(bad reporter) {
	switch {
	case b.ConnectionString == "" && b.Namespace == "":
		bad("servicebus.connection_string", "one of servicebus.connection_string or servicebus.namespace is required when adapter=servicebus")
	case b.ConnectionString != "" && b.Namespace != "":
		bad("servicebus.namespace", "set servicebus.connection_string or servicebus.namespace, not both")
	case b.Namespace != "" && strings.ContainsAny(b.Namespace, ";="):
		// Never echoed: it looks like a connection string, key included.
		bad("servicebus.namespace", "must be a host name like herald.servicebus.windows.net, not a connection string (that is servicebus.connection_string)")
	case b.Namespace != "" && strings.ContainsAny(b.Namespace, ":/"):
		bad("servicebus.namespace", "must be a host name like herald.servicebus.windows.net, not a URL (got %q)", redact.URL(b.Namespace))
	}
	if (b.Queue == "") == (b.Topic == "") {
		bad("servicebus.queue", "exactly one of servicebus.queue or servicebus.topic is required")
	}
	switch b.Binding {
	case "structured", "binary":
	default:
		bad("servicebus.binding", "must be one of structured, binary (got %q)", b.Binding)
	}
	b.validateSize(bad)
}

func (b ServiceBus) validateSize(bad reporter) {
	if b.MaxMessageSize < 0 {
		bad("servicebus.max_message_size", "must not be negative (got %d)", b.MaxMessageSize)
	}
}

func (n NATS) validate(bad reporter) {
	switch n.URL {
	case "":
		bad("nats.url", "required when adapter=nats")
	case "embedded":
		if n.EmbeddedStoreDir == "" {
			bad("nats.embedded_store_dir", "required when nats.url=embedded")
		}
	default:
		for i, raw := range strings.Split(n.URL, ",") {
			if reason := checkServerURL(strings.TrimSpace(raw)); reason != "" {
				bad("nats.url", "entry %d %s", i+1, reason)
			}
		}
	}
	switch {
	case n.Stream == "":
		bad("nats.stream", "required when adapter=nats")
	case strings.ContainsAny(n.Stream, ".*>/\\ \t\r\n"):
		bad("nats.stream", "must not contain whitespace or any of . * > / \\ (got %q)", n.Stream)
	}
	if n.ProvisionStream && len(n.StreamSubjects) == 0 {
		bad("nats.stream_subjects", "required when nats.provision_stream=true")
	}
	for i, s := range n.StreamSubjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			bad("nats.stream_subjects", "entry %d must be a non-empty subject without whitespace (got %q)", i+1, s)
		}
	}
	switch {
	case n.SubjectTemplate == "":
		bad("nats.subject_template", "required when adapter=nats")
	case strings.ContainsAny(n.SubjectTemplate, " \t\r\n"):
		bad("nats.subject_template", "must not contain whitespace (got %q)", n.SubjectTemplate)
	}
	positive(bad, "nats.duplicate_window", n.DuplicateWindow)
	if n.MaxPendingAcks < 1 {
		bad("nats.max_pending_acks", "must be at least 1 (got %d)", n.MaxPendingAcks)
	}
	positive(bad, "nats.ack_timeout", n.AckTimeout)
	switch n.Binding {
	case "structured", "binary":
	default:
		bad("nats.binding", "must be one of structured, binary (got %q)", n.Binding)
	}
	var auth []string
	for _, a := range []struct{ key, value string }{
		{"nats.creds_file", n.CredsFile}, {"nats.nkey_seed_file", n.NKeySeedFile}, {"nats.token", n.Token}, {"nats.user", n.User},
	} {
		if a.value != "" {
			auth = append(auth, a.key)
		}
	}
	if len(auth) > 1 {
		bad(auth[1], "only one authentication method may be set (also set: %s)", auth[0])
	}
	if n.Password != "" && n.User == "" {
		bad("nats.password", "set only together with nats.user")
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		bad("nats.tls.key_file", "nats.tls.cert_file and nats.tls.key_file go together")
	}
	if n.URL == "embedded" && (len(auth) > 0 || n.TLS != NATSTLS{}) {
		bad("nats.url", "the embedded server takes no authentication or TLS settings")
	}
}

// checkServerURL returns why raw is not a NATS server URL, or "". The reason
// shows the URL redacted, because server URLs may carry a password.
func checkServerURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "is not a valid URL"
	}
	if (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
		return fmt.Sprintf("must be a nats:// or tls:// URL with a host (got %q)", redact.URL(raw))
	}
	return ""
}

func (r Relay) validate(bad reporter) {
	if r.BatchSize < 1 || r.BatchSize > 10000 {
		bad("relay.batch_size", "must be between 1 and 10000 (got %d)", r.BatchSize)
	}
	positive(bad, "relay.poll_interval", r.PollInterval)
	if r.Lease < time.Second {
		bad("relay.lease", "must be at least 1s (got %s)", r.Lease)
	}
	if r.MaxAttempts < 1 {
		bad("relay.max_attempts", "must be at least 1 (got %d)", r.MaxAttempts)
	}
	if _, err := producer.ParseDeadLetterPolicy(r.DeadLetterPolicy); err != nil {
		bad("relay.dead_letter_policy", "must be one of park_key, skip (got %q)", r.DeadLetterPolicy)
	}
	positive(bad, "relay.backoff_min", r.BackoffMin)
	if r.BackoffMax < r.BackoffMin {
		bad("relay.backoff_max", "must be at least relay.backoff_min=%s (got %s)", r.BackoffMin, r.BackoffMax)
	}
	positive(bad, "relay.shutdown_timeout", r.ShutdownTimeout)
	if r.DeliveredRetention < 0 {
		bad("relay.delivered_retention", "must not be negative (got %s)", r.DeliveredRetention)
	}
}

func (w Webhook) validate(bad reporter) {
	if w.URL == "" {
		bad("webhook.url", "required when adapter=webhook")
	} else if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("webhook.url", "must be an http(s) URL (got %q)", redact.URL(w.URL))
	}
	switch {
	case len(w.Secrets) == 0 && w.SecretsFile == "":
		bad("webhook.secrets", "one of webhook.secrets or webhook.secrets_file is required when adapter=webhook")
	case len(w.Secrets) > 0 && w.SecretsFile != "":
		bad("webhook.secrets_file", "set webhook.secrets or webhook.secrets_file, not both")
	}
	for i, s := range w.Secrets {
		if _, err := webhooks.ParseSecret(s); err != nil {
			// The reason never quotes the secret.
			bad("webhook.secrets", "entry %d: %v", i+1, err)
		}
	}
	positive(bad, "webhook.timeout", w.Timeout)
	if w.Concurrency < 1 {
		bad("webhook.concurrency", "must be at least 1 (got %d)", w.Concurrency)
	}
	if w.DisableAfter < 0 {
		bad("webhook.disable_after", "must not be negative (got %s)", w.DisableAfter)
	}
	validateCIDRs(bad, "webhook.allow_cidrs", w.AllowCIDRs)
}

func (s Subscriptions) validate(bad reporter) {
	positive(bad, "subscriptions.refresh_interval", s.RefreshInterval)
	positive(bad, "subscriptions.timeout", s.Timeout)
	if s.Concurrency < 1 {
		bad("subscriptions.concurrency", "must be at least 1 (got %d)", s.Concurrency)
	}
	if len(s.RetrySchedule) == 0 {
		bad("subscriptions.retry_schedule", "needs at least one delay")
	}
	for i, d := range s.RetrySchedule {
		if d <= 0 {
			bad("subscriptions.retry_schedule", "entry %d must be positive (got %s)", i+1, d)
		}
	}
	if s.DisableAfter < 0 {
		bad("subscriptions.disable_after", "must not be negative (got %s)", s.DisableAfter)
	}
	if s.SecretGrace < 0 {
		bad("subscriptions.secret_grace", "must not be negative (got %s)", s.SecretGrace)
	}
	validateCIDRs(bad, "subscriptions.allow_cidrs", s.AllowCIDRs)
	if _, err := s.Keyring(); err != nil {
		var fe *FieldError
		if !errors.As(err, &fe) {
			fe = &FieldError{Key: "subscriptions.secrets_key", Reason: err.Error()}
		}
		bad(fe.Key, "%s", fe.Reason)
	}
}

// Keyring returns the keys of subscriptions.secrets_key and
// subscriptions.previous_secrets_keys, nil when there is no secrets_key.
// Its error is a *FieldError naming the key, never quoting a value.
func (s Subscriptions) Keyring() (*subscriptions.Keyring, error) {
	if s.SecretsKey == "" {
		if len(s.PreviousSecretsKeys) > 0 {
			return nil, &FieldError{Key: "subscriptions.previous_secrets_keys",
				Reason: "needs subscriptions.secrets_key: previous keys only open, the current one seals"}
		}
		return nil, nil
	}
	current, err := subscriptions.ParseSecretsKey(s.SecretsKey)
	if err != nil {
		return nil, &FieldError{Key: "subscriptions.secrets_key", Reason: err.Error()}
	}
	previous := make([][]byte, len(s.PreviousSecretsKeys))
	for i, k := range s.PreviousSecretsKeys {
		if previous[i], err = subscriptions.ParseSecretsKey(k); err != nil {
			return nil, &FieldError{Key: "subscriptions.previous_secrets_keys", Reason: fmt.Sprintf("entry %d: %v", i+1, err)}
		}
	}
	return subscriptions.NewKeyring(current, previous...)
}

func validateCIDRs(bad reporter, key string, cidrs []string) {
	for _, c := range cidrs {
		if _, err := netip.ParsePrefix(c); err != nil {
			if _, err := netip.ParseAddr(c); err != nil {
				bad(key, "%q is neither a CIDR nor an IP address", c)
			}
		}
	}
}

func (l Log) validate(bad reporter) {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be one of debug, info, warn, error (got %q)", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		bad("log.format", "must be one of text, json (got %q)", l.Format)
	}
}

func positive(bad reporter, key string, d time.Duration) {
	if d <= 0 {
		bad(key, "must be greater than 0 (got %s)", d)
	}
}

func (t Tracing) validate(bad reporter) {
	switch t.Exporter {
	case "none", "otlp":
	default:
		bad("tracing.exporter", "must be none or otlp (got %q)", t.Exporter)
	}
	if t.Endpoint != "" {
		if u, err := url.Parse(t.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("tracing.endpoint", "must be an http(s) URL such as http://otel-collector:4318 (got %q)", redact.URL(t.Endpoint))
		}
	}
	if t.SampleRatio < 0 || t.SampleRatio > 1 {
		bad("tracing.sample_ratio", "must be between 0 and 1 (got %v)", t.SampleRatio)
	}
}
