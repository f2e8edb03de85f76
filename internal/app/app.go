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
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/heraldhq/herald/adapters"
	natsadapter "github.com/heraldhq/herald/adapters/nats"
	"github.com/heraldhq/herald/adapters/servicebus"
	sqsadapter "github.com/heraldhq/herald/adapters/sqs"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// ErrSchemaOutdated means the outbox schema is behind this binary.
var ErrSchemaOutdated = errors.New("outbox schema is not up to date")

// App is a running set of parts. Close releases them in reverse order.
type App struct {
	Config    config.Config
	DB        *gorm.DB
	Store     *outbox.Store
	Publisher adapters.Publisher
	Relay     *producer.Relay
	// Embedded is the in-process JetStream server, nil when using an external one.
	Embedded *natsadapter.EmbeddedServer
	// BrokerURL is where the adapter connected.
	BrokerURL string

	// Metrics is what /metrics serves; the relay reports to it.
	Metrics *metrics.Metrics
	// HTTPAddr is the bound address of /metrics, /healthz and /readyz, ""
	// when http.listen is empty.
	HTTPAddr string

	httpListener net.Listener
	httpHandler  http.Handler
	closers      []func() error
	log          *slog.Logger
}

// Run runs the relay until ctx ends, with what helps it: on PostgreSQL a
// LISTEN connection that wakes the relay on every commit. It returns when
// the relay has shut down gracefully and every helper goroutine has ended.
func (a *App) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	listenCtx, stopListening := context.WithCancel(ctx)
	defer stopListening()
	if a.Config.Database.Driver == "postgres" {
		wg.Go(func() { _ = outbox.Listen(listenCtx, a.Config.Database.DSN, a.Relay.Notify, a.log) })
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
	return a.Relay.Run(ctx)
}

// httpHandler serves the operations endpoints and, with http.ingest_token,
// the audit-record ingest: enriched events go into the same outbox.
func (a *App) newHTTPHandler() (http.Handler, error) {
	ops := a.Metrics.Handler(a.readiness()...)
	if a.Config.HTTP.IngestToken == "" {
		return ops, nil
	}
	eopts, err := EnricherOptions(a.Config.Enricher, "")
	if err != nil {
		return nil, err
	}
	ingest, err := enricher.NewIngestHandler(a.DB, enricher.New(append(eopts, enricher.WithLogger(a.log))...), a.Config.HTTP.IngestToken,
		enricher.WithObserver(a.Metrics.Enriched))
	if err != nil {
		return nil, fmt.Errorf("http.ingest_token: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(enricher.IngestPath, ingest)
	mux.Handle("/", ops)
	return mux, nil
}

// readiness lists what /readyz checks: the database answers, and the
// broker does when the adapter can tell.
func (a *App) readiness() []metrics.Check {
	checks := []metrics.Check{DatabaseCheck(a.DB)}
	if c, ok := a.Publisher.(adapters.Checker); ok {
		checks = append(checks, metrics.Check{Name: "broker", Run: c.Check})
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
	a := &App{Config: cfg, log: log}
	defer func() {
		if err != nil {
			_ = a.Close()
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
		log.Info("embedded JetStream started", "url", cfg.NATS.URL, "store_dir", cfg.NATS.EmbeddedStoreDir)
	}
	a.BrokerURL = Target(cfg)
	pub, err := ConnectAdapter(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.Publisher = pub
	a.closers = append(a.closers, pub.Close)

	a.Metrics = metrics.New(cfg.Adapter, a.Store)
	if cfg.HTTP.Listen != "" {
		// Bound here, not in Run, so a taken port fails at startup.
		if a.httpListener, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			return nil, fmt.Errorf("http.listen: %w", err)
		}
		a.HTTPAddr = a.httpListener.Addr().String()
		a.closers = append(a.closers, func() error { _ = a.httpListener.Close(); return nil })
		// Built here too, so a bad enricher.rules_file fails the boot.
		if a.httpHandler, err = a.newHTTPHandler(); err != nil {
			return nil, err
		}
	}
	relayOpts := []producer.Option{
		producer.WithObserver(a.Metrics),
		producer.WithBatchSize(cfg.Relay.BatchSize),
		producer.WithPollInterval(cfg.Relay.PollInterval),
		producer.WithLease(cfg.Relay.Lease),
		producer.WithMaxAttempts(cfg.Relay.MaxAttempts),
		producer.WithBackoff(cfg.Relay.BackoffMin, cfg.Relay.BackoffMax),
		producer.WithShutdownTimeout(cfg.Relay.ShutdownTimeout),
		producer.WithDeliveredRetention(retention(cfg.Relay)),
		producer.WithLogger(log),
	}
	tp, stopTracing, err := tracerProvider(ctx, cfg.Tracing)
	if err != nil {
		return nil, err
	}
	if tp != nil {
		// Closed after the relay has stopped, so its last spans are flushed.
		a.closers = append(a.closers, stopTracing)
		relayOpts = append(relayOpts, producer.WithTracerProvider(tp, cfg.Adapter))
	}
	a.Relay = producer.New(a.Store, a.Publisher, relayOpts...)
	return a, nil
}

// Target names where the configured adapter publishes, for logs and status.
func Target(cfg config.Config) string {
	switch cfg.Adapter {
	case "sqs":
		return cfg.SQS.QueueURL
	case "servicebus":
		ns := cfg.ServiceBus.Namespace
		if ns == "" {
			ns = "(connection string)"
		}
		return ns + "/" + cfg.ServiceBus.Queue + cfg.ServiceBus.Topic
	default:
		return cfg.NATS.URL
	}
}

// ConnectAdapter connects the configured adapter's publisher: switching
// brokers is the adapter key plus its block, nothing else.
func ConnectAdapter(ctx context.Context, cfg config.Config, log *slog.Logger) (adapters.Publisher, error) {
	switch cfg.Adapter {
	case "nats":
		return connectNATS(ctx, cfg, log)
	case "sqs":
		return connectSQS(ctx, cfg.SQS, log)
	case "servicebus":
		return connectServiceBus(ctx, cfg.ServiceBus, log)
	default:
		return nil, fmt.Errorf("adapter: %q is not implemented yet", cfg.Adapter)
	}
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

func connectNATS(ctx context.Context, cfg config.Config, log *slog.Logger) (adapters.Publisher, error) {
	url := cfg.NATS.URL
	n := cfg.NATS
	binding, err := adapters.ParseBinding(n.Binding)
	if err != nil {
		return nil, fmt.Errorf("nats.binding: %w", err)
	}
	opts := []natsadapter.Option{natsadapter.WithBinding(binding)}
	switch {
	case n.CredsFile != "":
		opts = append(opts, natsadapter.WithCredsFile(n.CredsFile))
	case n.NKeySeedFile != "":
		opts = append(opts, natsadapter.WithNKeySeedFile(n.NKeySeedFile))
	case n.Token != "":
		opts = append(opts, natsadapter.WithToken(n.Token))
	case n.User != "":
		opts = append(opts, natsadapter.WithUserPassword(n.User, n.Password))
	}
	if n.TLS != (config.NATSTLS{}) {
		opts = append(opts, natsadapter.WithTLS(n.TLS.CAFile, n.TLS.CertFile, n.TLS.KeyFile))
	}
	pub, err := natsadapter.Connect(ctx, url, append(opts,
		natsadapter.WithStream(cfg.NATS.Stream, cfg.NATS.StreamSubjects...),
		natsadapter.WithSubjectTemplate(cfg.NATS.SubjectTemplate),
		natsadapter.WithProvisionStream(cfg.NATS.ProvisionStream),
		natsadapter.WithDuplicateWindow(cfg.NATS.DuplicateWindow),
		natsadapter.WithMaxPendingAcks(cfg.NATS.MaxPendingAcks),
		natsadapter.WithAckTimeout(cfg.NATS.AckTimeout),
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

// EnricherOptions returns the enricher's mapping rules: those of rulesFlag
// when set (herald enrich --rules), else of enricher.rules_file, else none,
// which keeps the built-in catalogue. An unreadable or invalid file is an
// error naming where it came from.
func EnricherOptions(cfg config.Enricher, rulesFlag string) ([]enricher.Option, error) {
	path, key := cfg.RulesFile, "enricher.rules_file"
	if rulesFlag != "" {
		path, key = rulesFlag, "--rules"
	}
	if path == "" {
		return nil, nil
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
	return []enricher.Option{enricher.WithRules(rules)}, nil
}
