// Package app assembles Herald's parts from a config.Config: the outbox
// database, the broker adapter (starting the embedded JetStream server when
// the config asks for it) and the relay. The CLI commands and the demo share
// it, so "what serve runs" is written down once.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/heraldhq/herald/adapters"
	natsadapter "github.com/heraldhq/herald/adapters/nats"
	"github.com/heraldhq/herald/adapters/servicebus"
	sqsadapter "github.com/heraldhq/herald/adapters/sqs"
	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/console"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/redact"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
	"github.com/heraldhq/herald/pkg/subscriptions"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// ErrSchemaOutdated means the outbox schema is behind this binary.
var ErrSchemaOutdated = errors.New("outbox schema is not up to date")

// App is a running set of parts. Close releases them in reverse order.
type App struct {
	Config config.Config
	DB     *gorm.DB
	Store  *outbox.Store
	// Publisher and Relay serve the main destination.
	Publisher adapters.Publisher
	Relay     *producer.Relay
	// Relays holds a relay per destination, the main one first, each with
	// its own adapter: config destinations add the others.
	Relays []*producer.Relay
	// Routing sends events to the config's destinations and the stored
	// webhook endpoints; writers in this process (the ingest endpoint)
	// use it.
	Routing *Routing
	// Subscriptions is the store of webhook endpoints registered at
	// runtime; serve runs a relay for each enabled one.
	Subscriptions *subscriptions.Store
	// Portal is the portal's database of enricher.portal_dsn, which the
	// ingest endpoint reads; nil when the portal's tables are in DB.
	Portal *gorm.DB
	// Embedded is the in-process JetStream server, nil when using an external one.
	Embedded *natsadapter.EmbeddedServer
	// BrokerURL is where the adapter connected, credentials included, for
	// connecting to it again; logs and status show [App.Target].
	BrokerURL string

	// Metrics is what /metrics serves; the relay reports to it.
	Metrics *metrics.Metrics
	// HTTPAddr is the bound address of /metrics, /healthz and /readyz, ""
	// when http.listen is empty.
	HTTPAddr string

	httpListener net.Listener
	httpHandler  http.Handler
	// enricherOpts trace the ingest endpoint's enrichment when tracing is on.
	enricherOpts []enricher.Option
	fleet        *fleet
	// console is the operator console, nil without http.admin_token;
	// publishers are the config destinations' adapters, in order, for its
	// health checks.
	console    *console.Console
	publishers []adapters.Publisher
	closers    []func() error
	// main is the main destination as connected, with the embedded
	// server's URL in place of "embedded".
	main config.Destination
	// secrets are the config's, for text Herald did not redact itself:
	// every log line, and the errors Open returns and /readyz shows.
	secrets *redact.Secrets
	log     *slog.Logger
}

// Target is where the main adapter publishes, fit for logs and status.
func (a *App) Target() string { return Target(a.main) }

// Run runs the relays until ctx ends, with what helps them: on PostgreSQL a
// LISTEN connection that wakes them on every commit. It returns when every
// relay has shut down gracefully and every helper goroutine has ended.
func (a *App) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	listenCtx, stopListening := context.WithCancel(ctx)
	defer stopListening()
	if a.Config.Database.Driver == "postgres" {
		wg.Go(func() { _ = outbox.Listen(listenCtx, a.Config.Database.DSN, a.Notify, a.log) })
	}
	if a.httpListener != nil {
		srv := &http.Server{Handler: a.httpHandler, ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := srv.Serve(a.httpListener); !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("http server", "error", err)
			}
		})
		// Probes and scrapes keep answering until the relay has drained.
		defer func() {
			shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdownCtx)
		}()
	}
	// A relay per destination, side by side: one that is slow or failing
	// never holds back another.
	errs := make([]error, len(a.Relays))
	var relays sync.WaitGroup
	for i, r := range a.Relays {
		relays.Go(func() { errs[i] = r.Run(ctx) })
	}
	relays.Go(func() { a.fleet.Run(ctx) })
	if a.console != nil {
		wg.Go(func() { a.console.Run(ctx) })
	}
	relays.Wait()
	return errors.Join(errs...)
}

// Notify wakes every relay, e.g. after a commit to the outbox.
func (a *App) Notify() {
	for _, r := range a.Relays {
		r.Notify()
	}
	a.fleet.Notify()
}

// httpHandler serves the operations endpoints and, with http.ingest_token,
// the audit-record ingest: enriched events go into the same outbox.
func (a *App) newHTTPHandler() (http.Handler, error) {
	ops := a.Metrics.Handler(a.readiness()...)
	if a.Config.HTTP.IngestToken == "" && a.Config.HTTP.AdminToken == "" {
		return ops, nil
	}
	mux := http.NewServeMux()
	mux.Handle("/", ops)
	observe := a.Metrics.Enriched
	if a.Config.HTTP.AdminToken != "" {
		c, err := a.newConsole()
		if err != nil {
			return nil, err
		}
		a.console = c
		mux.Handle(console.Prefix, c)
		mux.Handle(console.Prefix+"/", c)
		observe = func(res enricher.Result) { a.Metrics.Enriched(res); c.ObserveEnriched(res) }
	}
	if a.Config.HTTP.IngestToken != "" {
		e, sopts, err := a.servedEnricher(enricher.WithObserver(observe))
		if err != nil {
			return nil, err
		}
		ingest, err := enricher.NewIngestHandler(a.DB, e, a.Config.HTTP.IngestToken, sopts...)
		if err != nil {
			return nil, fmt.Errorf("http.ingest_token: %w", err)
		}
		mux.Handle(enricher.IngestPath, ingest)
	}
	if a.Config.HTTP.AdminToken != "" {
		wopts := WebhookOptions(a.Config.Subscriptions)
		admin, err := subscriptions.NewAdminHandler(a.Subscriptions, a.Config.HTTP.AdminToken,
			subscriptions.WithTester(func(ctx context.Context, e subscriptions.Endpoint) (subscriptions.TestResult, error) {
				return subscriptions.Test(ctx, e, wopts...)
			}),
			subscriptions.WithOnChange(a.fleet.Kick),
			subscriptions.WithSecretGrace(a.Config.Subscriptions.SecretGrace),
			subscriptions.WithAdminLogger(a.log))
		if err != nil {
			return nil, fmt.Errorf("http.admin_token: %w", err)
		}
		mux.Handle(subscriptions.AdminPrefix, admin)
		mux.Handle(subscriptions.AdminPrefix+"/", admin)
		mux.Handle(AttemptsPath, requireToken(a.Config.HTTP.AdminToken, a.log,
			&attemptsHandler{store: a.Store, secrets: a.secrets, log: a.log, now: time.Now}))
	}
	return mux, nil
}

// readiness lists what /readyz checks: the database answers, and the
// broker does when the adapter can tell.
func (a *App) readiness() []metrics.Check {
	checks := []metrics.Check{DatabaseCheck(a.DB)}
	if c, ok := a.Publisher.(adapters.Checker); ok {
		checks = append(checks, metrics.Check{Name: "broker", Run: c.Check})
	}
	for i, c := range checks {
		// /readyz shows the error: a driver's may quote a credential.
		checks[i].Run = func(ctx context.Context) error { return a.secrets.Error(c.Run(ctx)) }
	}
	return checks
}

// DatabaseCheck is the readiness check that db answers.
func DatabaseCheck(db *gorm.DB) metrics.Check {
	return metrics.Check{Name: "database", Run: func(ctx context.Context) error {
		sqlDB, err := db.DB()
		if err != nil {
			return err
		}
		return sqlDB.PingContext(ctx)
	}}
}

// OpenDB opens the configured outbox database.
func OpenDB(cfg config.Database) (*gorm.DB, error) {
	if cfg.Driver == "sqlite" {
		if dir := filepath.Dir(cfg.DSN); dir != "." {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("database.dsn: create directory: %w", err)
			}
		}
	}
	return outbox.Open(cfg.Driver, cfg.DSN)
}

// Options say how far Open goes.
type Options struct {
	// Migrate applies missing outbox migrations; otherwise an outdated schema
	// is an error (ErrSchemaOutdated) telling the operator to run migrate.
	Migrate bool
	Logger  *slog.Logger
}

// Open connects everything the config describes. On error nothing is left open.
func Open(ctx context.Context, cfg config.Config, opts Options) (_ *App, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	secrets := cfg.Secrets()
	log = slog.New(secrets.Handler(log.Handler()))
	a := &App{Config: cfg, secrets: secrets, log: log}
	defer func() {
		if err != nil {
			_ = a.Close()
			err = secrets.Error(err)
		}
	}()

	if a.DB, err = OpenDB(cfg.Database); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() error {
		sqlDB, err := a.DB.DB()
		if err != nil {
			return err
		}
		return sqlDB.Close()
	})
	if err := checkSchema(ctx, a.DB, opts.Migrate, log); err != nil {
		return nil, err
	}
	if a.Store, err = outbox.NewStore(a.DB,
		outbox.WithKeepDelivered(cfg.Relay.KeepDelivered),
		outbox.WithOrdering(cfg.Relay.Ordering)); err != nil {
		return nil, err
	}

	if cfg.Adapter == "nats" && cfg.NATS.URL == "embedded" {
		srv, err := natsadapter.StartEmbedded(natsadapter.EmbeddedOptions{StoreDir: cfg.NATS.EmbeddedStoreDir})
		if err != nil {
			return nil, fmt.Errorf("start embedded JetStream: %w", err)
		}
		a.Embedded = srv
		a.closers = append(a.closers, func() error { srv.Shutdown(); return nil })
		cfg.NATS.URL = srv.ClientURL()
		// A destination on the embedded server (config allows it only
		// beside a main adapter on it) uses another stream there.
		cfg.Destinations = slices.Clone(cfg.Destinations)
		for i, d := range cfg.Destinations {
			if d.Adapter == "nats" && d.NATS.URL == "embedded" {
				cfg.Destinations[i].NATS.URL = cfg.NATS.URL
			}
		}
		log.Info("embedded JetStream started", "url", cfg.NATS.URL, "store_dir", cfg.NATS.EmbeddedStoreDir)
	}
	a.main = cfg.Main()
	a.BrokerURL = a.Target()
	if cfg.Adapter == "nats" {
		a.BrokerURL = cfg.NATS.URL
	}
	policy, err := producer.ParseDeadLetterPolicy(cfg.Relay.DeadLetterPolicy)
	if err != nil {
		return nil, fmt.Errorf("relay.dead_letter_policy: %w", err)
	}
	pub, err := connectAdapter(ctx, cfg.Main(), log, secrets, a.announceDisabled(cfg.Main()))
	if err != nil {
		return nil, err
	}
	a.Publisher = pub
	a.closers = append(a.closers, pub.Close)

	a.Metrics = metrics.New(a.Store)
	if cfg.HTTP.Listen != "" {
		// Bound here, not in Run, so a taken port fails at startup.
		if a.httpListener, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			return nil, fmt.Errorf("http.listen: %w", err)
		}
		a.HTTPAddr = a.httpListener.Addr().String()
		a.closers = append(a.closers, func() error { _ = a.httpListener.Close(); return nil })
	}
	relayOpts := []producer.Option{
		producer.WithBatchSize(cfg.Relay.BatchSize),
		producer.WithPollInterval(cfg.Relay.PollInterval),
		producer.WithLease(cfg.Relay.Lease),
		producer.WithMaxAttempts(cfg.Relay.MaxAttempts),
		producer.WithBackoff(cfg.Relay.BackoffMin, cfg.Relay.BackoffMax),
		producer.WithShutdownTimeout(cfg.Relay.ShutdownTimeout),
		producer.WithDeadLetterPolicy(policy),
		producer.WithLogger(log),
	}
	if cfg.DeliveryLog.Enabled {
		// Every relay, webhook endpoints' included, logs its attempts. An
		// answer may quote what the config holds (a broker URL's
		// password, a receiver echoing a header): the log stores none.
		relayOpts = append(relayOpts, producer.WithDeliveryLog(secrets.Text))
	}
	tp, stopTracing, err := tracerProvider(ctx, cfg.Tracing)
	if err != nil {
		return nil, err
	}
	if tp != nil {
		// Closed after the relays have stopped, so their last spans are flushed.
		a.closers = append(a.closers, stopTracing)
		a.enricherOpts = append(a.enricherOpts, enricher.WithTracerProvider(tp))
	}
	newRelay := func(d config.Destination, pub adapters.Publisher, extra ...producer.Option) *producer.Relay {
		opts := append(slices.Clone(relayOpts), producer.WithObserver(a.Metrics.Relay(d.Name)))
		if tp != nil {
			opts = append(opts, producer.WithTracerProvider(tp, d.Adapter))
		}
		return producer.New(a.Store.ForDestination(d.Name), pub, append(opts, extra...)...)
	}
	if a.Routing, err = NewRouting(ctx, cfg, a.DB, log); err != nil {
		return nil, err
	}
	// Only the main relay prunes kept delivered rows and the delivery log,
	// since pruning covers the whole table, and only it fans events out to
	// the other destinations: writers write every event once, for main.
	a.Relay = newRelay(cfg.Main(), a.Publisher, producer.WithDeliveredRetention(retention(cfg.Relay)), producer.WithRouter(a.Routing),
		producer.WithDeliveryLogRetention(cfg.DeliveryLog.Retention))
	a.Relays = []*producer.Relay{a.Relay}
	for _, d := range cfg.Destinations {
		pub, err := connectAdapter(ctx, d, log.With("destination", d.Name), secrets, a.announceDisabled(d))
		if err != nil {
			return nil, fmt.Errorf("destination %s: %w", d.Name, err)
		}
		a.closers = append(a.closers, pub.Close)
		a.publishers = append(a.publishers, pub)
		a.Relays = append(a.Relays, newRelay(d, pub))
	}
	a.Subscriptions = a.Routing.store
	if err := checkSecretsAtRest(ctx, cfg.Subscriptions, a.Subscriptions, log); err != nil {
		return nil, err
	}
	fleetOpts := slices.Clone(relayOpts)
	if tp != nil {
		fleetOpts = append(fleetOpts, producer.WithTracerProvider(tp, "webhook"))
	}
	a.fleet = newFleet(a, a.Routing, fleetOpts)
	// The console's enricher page retries quarantined records too, which
	// reads the portal.
	if a.httpListener != nil && (cfg.HTTP.IngestToken != "" || cfg.HTTP.AdminToken != "") {
		if a.Portal, err = OpenPortal(cfg); err != nil {
			return nil, err
		}
		if a.Portal != nil {
			a.closers = append(a.closers, func() error {
				sqlDB, err := a.Portal.DB()
				if err != nil {
					return err
				}
				return sqlDB.Close()
			})
		}
	}
	if a.httpListener != nil {
		// Built here, so a bad enricher.rules_file fails the boot.
		if a.httpHandler, err = a.newHTTPHandler(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// announceDisabled returns what serve does when a destination's webhook
// endpoint is disabled: announce it. Its rows stay behind as dead letters,
// for `herald outbox retry --destination` once the endpoint is back.
func (a *App) announceDisabled(d config.Destination) func(string, error) {
	if d.Adapter != "webhook" {
		return nil
	}
	return func(_ string, reason error) {
		// Called from the relay's publish, which has its own deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.announce(ctx, d.Name, Target(d), reason)
	}
}

// announce writes an io.herald.webhook.endpoint_disabled event to the
// outbox's main destination, so that an operator or a partner's tooling
// can react instead of finding out from a growing dead-letter count.
func (a *App) announce(ctx context.Context, destination, url string, reason error) {
	data := webhook.EndpointDisabled{Destination: destination, URL: url, Reason: a.secrets.Text(reason.Error()), DisabledAt: time.Now().UTC()}
	ev, err := event.New(webhook.EndpointDisabledType, "/herald", data,
		event.WithSubject("destinations/"+destination), event.WithPartitionKey("destinations/"+destination))
	if err == nil {
		err = outbox.Write(ctx, a.DB, ev)
	}
	if err != nil {
		a.log.Error("record that a webhook endpoint was disabled", "destination", destination, "error", err)
		return
	}
	a.log.Warn("webhook endpoint disabled; its events are kept for replay", "destination", destination,
		"reason", reason, "event_id", ev.ID)
}

// Target names where a destination's adapter publishes, for logs and
// status. It never shows a secret.
func Target(d config.Destination) string {
	switch d.Adapter {
	case "sqs":
		return redact.URL(d.SQS.QueueURL)
	case "servicebus":
		ns := d.ServiceBus.Namespace
		if ns == "" {
			ns = "(connection string)"
		}
		return ns + "/" + d.ServiceBus.Queue + d.ServiceBus.Topic
	case "webhook":
		return redact.URL(d.Webhook.URL)
	default:
		return redact.URLs(d.NATS.URL)
	}
}

// ConnectAdapter connects a destination's publisher: switching brokers is
// the adapter key plus its block, nothing else.
func ConnectAdapter(ctx context.Context, d config.Destination, log *slog.Logger) (adapters.Publisher, error) {
	return connectAdapter(ctx, d, log, &redact.Secrets{}, nil)
}

// connectAdapter is ConnectAdapter with what serve adds: known learns the
// secrets read from files, and onDisabled hears of a webhook endpoint the
// adapter disabled.
func connectAdapter(ctx context.Context, d config.Destination, log *slog.Logger, known *redact.Secrets, onDisabled func(string, error)) (adapters.Publisher, error) {
	switch d.Adapter {
	case "nats":
		return connectNATS(ctx, d.NATS, log)
	case "sqs":
		return connectSQS(ctx, d.SQS, log)
	case "servicebus":
		return connectServiceBus(ctx, d.ServiceBus, log)
	case "webhook":
		return connectWebhook(d.Name, d.Webhook, log, known, onDisabled)
	default:
		return nil, fmt.Errorf("adapter: %q is not implemented", d.Adapter)
	}
}

// connectWebhook builds the publisher of one endpoint. The destination's
// routes already chose its events, so the endpoint takes every one it gets.
func connectWebhook(name string, c config.Webhook, log *slog.Logger, known *redact.Secrets, onDisabled func(string, error)) (adapters.Publisher, error) {
	encoded, key := c.Secrets, "webhook.secrets"
	if c.SecretsFile != "" {
		b, err := os.ReadFile(c.SecretsFile)
		if err != nil {
			return nil, fmt.Errorf("webhook.secrets_file: %w", err)
		}
		encoded, key = strings.Fields(string(b)), "webhook.secrets_file "+c.SecretsFile
		for _, s := range encoded {
			known.Add(s, strings.TrimPrefix(s, webhooks.SecretPrefix))
		}
	}
	if len(encoded) == 0 {
		return nil, fmt.Errorf("%s: holds no secret", key)
	}
	secrets, err := webhooks.ParseSecrets(encoded)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	opts := []webhook.Option{webhook.WithTimeout(c.Timeout), webhook.WithConcurrency(c.Concurrency),
		webhook.WithDisableAfter(c.DisableAfter), webhook.WithLogger(log)}
	if onDisabled != nil {
		opts = append(opts, webhook.WithOnDisabled(onDisabled))
	}
	if len(c.AllowCIDRs) > 0 {
		opts = append(opts, webhook.WithAllowCIDRs(c.AllowCIDRs...))
	}
	if len(c.AllowHTTPHosts) > 0 {
		opts = append(opts, webhook.WithAllowHTTPHosts(c.AllowHTTPHosts...))
	}
	pub, err := webhook.New([]webhook.Endpoint{{Name: name, URL: c.URL, Secrets: secrets, Enabled: true}}, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect webhook adapter: %w", err)
	}
	return pub, nil
}

func connectSQS(ctx context.Context, c config.SQS, log *slog.Logger) (adapters.Publisher, error) {
	opts := []sqsadapter.Option{sqsadapter.WithLogger(log)}
	if c.Region != "" {
		opts = append(opts, sqsadapter.WithRegion(c.Region))
	}
	if c.Endpoint != "" {
		opts = append(opts, sqsadapter.WithEndpoint(c.Endpoint))
	}
	if c.MessageGroupID != "" {
		opts = append(opts, sqsadapter.WithMessageGroupID(c.MessageGroupID))
	}
	if c.MaxMessageSize > 0 {
		opts = append(opts, sqsadapter.WithMaxMessageSize(c.MaxMessageSize))
	}
	pub, err := sqsadapter.New(ctx, c.QueueURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect SQS adapter: %w", err)
	}
	return pub, nil
}

func connectServiceBus(ctx context.Context, c config.ServiceBus, log *slog.Logger) (adapters.Publisher, error) {
	binding, err := adapters.ParseBinding(c.Binding)
	if err != nil {
		return nil, fmt.Errorf("servicebus.binding: %w", err)
	}
	opts := []servicebus.Option{
		servicebus.WithBinding(binding),
		servicebus.WithSessions(c.Sessions),
		servicebus.WithPartitionedEntity(c.Partitioned),
		servicebus.WithLogger(log),
	}
	if c.MaxMessageSize > 0 {
		opts = append(opts, servicebus.WithMaxMessageSize(c.MaxMessageSize))
	}
	entity := c.Queue + c.Topic // exactly one is set (validated)
	var pub adapters.Publisher
	if c.ConnectionString != "" {
		pub, err = servicebus.NewFromConnectionString(ctx, c.ConnectionString, entity, opts...)
	} else {
		cred, credErr := azidentity.NewDefaultAzureCredential(nil)
		if credErr != nil {
			return nil, fmt.Errorf("servicebus: Azure default credential: %w", credErr)
		}
		pub, err = servicebus.NewWithCredential(ctx, c.Namespace, entity, cred, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("connect Service Bus adapter: %w", err)
	}
	return pub, nil
}

func connectNATS(ctx context.Context, n config.NATS, log *slog.Logger) (adapters.Publisher, error) {
	if _, err := adapters.ParseBinding(n.Binding); err != nil {
		return nil, fmt.Errorf("nats.binding: %w", err)
	}
	pub, err := natsadapter.Connect(ctx, n.URL, append(natsConnectOptions(n),
		natsadapter.WithStream(n.Stream, n.StreamSubjects...),
		natsadapter.WithSubjectTemplate(n.SubjectTemplate),
		natsadapter.WithProvisionStream(n.ProvisionStream),
		natsadapter.WithDuplicateWindow(n.DuplicateWindow),
		natsadapter.WithMaxPendingAcks(n.MaxPendingAcks),
		natsadapter.WithAckTimeout(n.AckTimeout),
		natsadapter.WithLogger(log),
	)...)
	if err != nil {
		return nil, fmt.Errorf("connect JetStream adapter: %w", err)
	}
	return pub, nil
}

// retention is how long delivered rows stay: only kept ones need pruning.
func retention(r config.Relay) time.Duration {
	if !r.KeepDelivered {
		return 0
	}
	return r.DeliveredRetention
}

func checkSchema(ctx context.Context, db *gorm.DB, migrate bool, log *slog.Logger) error {
	if migrate {
		applied, err := outbox.Migrate(ctx, db)
		if err != nil {
			return fmt.Errorf("migrate outbox: %w", err)
		}
		if len(applied) > 0 {
			log.Info("outbox migrations applied", "versions", applied)
		}
		return nil
	}
	cur, latest, err := outbox.SchemaVersion(ctx, db)
	if err != nil {
		return err
	}
	if cur != latest {
		return fmt.Errorf("%w: database at version %d, this binary needs %d: run `herald migrate` (or `herald migrate --print` for the SQL)",
			ErrSchemaOutdated, cur, latest)
	}
	return nil
}

// Close releases everything Open acquired, last first.
func (a *App) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}

// EnricherOptions returns the enricher's routing, when router is not nil,
// and its mapping rules: those of rulesFlag when set (herald enrich
// --rules), else of enricher.rules_file, else none, which keeps the
// built-in catalogue. An unreadable or invalid file is an error naming
// where it came from.
func EnricherOptions(cfg config.Config, rulesFlag string) ([]enricher.Option, error) {
	var opts []enricher.Option
	path, key := cfg.Enricher.RulesFile, "enricher.rules_file"
	if rulesFlag != "" {
		path, key = rulesFlag, "--rules"
	}
	if path == "" {
		return opts, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	defer func() { _ = f.Close() }() // read-only
	rules, err := enricher.ParseRules(f)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", key, path, err)
	}
	return append(opts, enricher.WithRules(rules)), nil
}
