package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/redact"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// What the bench writes and where it publishes; see the package
// documentation.
const (
	EventType      = "io.herald.bench.sample.created"
	EventSource    = "/herald-bench"
	Stream         = "HERALD_BENCH"
	StreamSubjects = "herald-bench.>"
	// SubjectTemplate puts every bench event under StreamSubjects.
	SubjectTemplate = "herald-bench.{type}"
	// Subject is what SubjectTemplate makes of a bench event, for the
	// phases that publish without Herald's adapter.
	Subject = "herald-bench." + EventType
	// CopyTable is the scratch copy of the outbox table, without its
	// triggers, that the writers' phase commits to; it is dropped again.
	CopyTable = "herald_bench_nowake"
)

// Defaults of the zero Options fields.
const (
	DefaultEvents    = 20000
	DefaultRate      = 1000
	DefaultDuration  = 10 * time.Second
	DefaultRelays    = 1
	DefaultProducers = 16
	DefaultKeys      = 1000
)

// Sentinel errors callers may test with errors.Is.
var (
	// ErrInvalidOptions is wrapped by every error about Options themselves.
	ErrInvalidOptions = errors.New("invalid bench options")
	// ErrOutboxNotEmpty means a PostgreSQL or MySQL outbox held rows at the
	// start: the bench's relays would publish them to the bench stream.
	ErrOutboxNotEmpty = errors.New("outbox not empty")
	// ErrForeignEvent is the publish error of an event the bench did not
	// write; it stops the run.
	ErrForeignEvent = errors.New("event not written by the bench")
	// ErrLost means events the bench wrote were not all acked or delivered.
	ErrLost = errors.New("events lost")
)

// Options configure a run.
type Options struct {
	// Config is the Herald configuration to measure. The bench replaces the
	// SQLite file and embedded JetStream directory with temporary ones, the
	// NATS stream, subjects and template with its own, and serves no HTTP.
	Config config.Config
	// Events is the number of events of the broker ceiling and the
	// reference relay (default DefaultEvents).
	Events int
	// Backlogs are the backlog sizes Herald's relay drains, one run each
	// (default: Events alone): per-event cost should not grow with the
	// backlog.
	Backlogs []int
	// WriteDuration is how long the writers commit to each of the two
	// tables of the writers' phase (default Duration/2).
	WriteDuration time.Duration
	// Rate is the offered rate of the latency phase in events/s (default
	// DefaultRate), each event committed in its own transaction.
	Rate int
	// Duration is the length of the latency phase (default DefaultDuration).
	Duration time.Duration
	// Producers is the number of goroutines committing the latency phase's
	// events, and the writers of the writers' phase (default
	// DefaultProducers): at 1,000 events/s a commit that waits for a disk
	// flush keeps one goroutine from keeping up.
	Producers int
	// Relays is the number of relays run in this process on the shared
	// outbox, each with its own connection pool and publisher (default 1;
	// SQLite takes only one).
	Relays int
	// Keys is the number of distinct partition keys the events cycle through
	// (default DefaultKeys); negative writes events without a partition key.
	// With relay.ordering one key has one event in flight at a time, so few
	// keys throttle every relay.
	Keys int
	// Logger receives Herald's own logs (default slog.Default()).
	Logger *slog.Logger
	// Progress, when not nil, gets a line as each phase starts.
	Progress io.Writer
}

func (o Options) withDefaults() (Options, error) {
	if o.Events == 0 {
		o.Events = DefaultEvents
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if len(o.Backlogs) == 0 {
		o.Backlogs = []int{o.Events}
	}
	if o.WriteDuration == 0 {
		o.WriteDuration = o.Duration / 2
	}
	if o.Relays == 0 {
		o.Relays = DefaultRelays
	}
	if o.Producers == 0 {
		o.Producers = DefaultProducers
	}
	if o.Keys == 0 {
		o.Keys = DefaultKeys
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	var errs []error
	if o.Events < 1 {
		errs = append(errs, fmt.Errorf("%w: events must be at least 1 (got %d)", ErrInvalidOptions, o.Events))
	}
	if o.Rate < 1 || o.Rate > 1_000_000 {
		errs = append(errs, fmt.Errorf("%w: rate must be between 1 and 1000000 events/s (got %d)", ErrInvalidOptions, o.Rate))
	}
	for _, n := range o.Backlogs {
		if n < 1 {
			errs = append(errs, fmt.Errorf("%w: every backlog must be at least 1 event (got %d)", ErrInvalidOptions, n))
		}
	}
	if o.Duration < 0 {
		errs = append(errs, fmt.Errorf("%w: duration must be positive (got %s)", ErrInvalidOptions, o.Duration))
	}
	if o.WriteDuration < 0 {
		errs = append(errs, fmt.Errorf("%w: write duration must be positive (got %s)", ErrInvalidOptions, o.WriteDuration))
	}
	if o.Producers < 1 {
		errs = append(errs, fmt.Errorf("%w: producers must be at least 1 (got %d)", ErrInvalidOptions, o.Producers))
	}
	if o.Relays < 1 {
		errs = append(errs, fmt.Errorf("%w: relays must be at least 1 (got %d)", ErrInvalidOptions, o.Relays))
	}
	if o.Relays > 1 && o.Config.Database.Driver == "sqlite" {
		errs = append(errs, fmt.Errorf("%w: relays: SQLite takes one relay (got %d)", ErrInvalidOptions, o.Relays))
	}
	if o.Config.Adapter != "nats" {
		errs = append(errs, fmt.Errorf("%w: adapter %q: the bench drives the nats adapter only", ErrInvalidOptions, o.Config.Adapter))
	}
	return o, errors.Join(errs...)
}

// bench is one run's parts.
type bench struct {
	opts   Options
	cfg    config.Config // as opened: bench stream, temporary paths
	log    *slog.Logger
	runID  string
	tmpDir string // removed at the end; "" when none was needed
	lanes  []lane // one per relay
	// producerDB is the producers' own connection pool, as an
	// application's would be.
	producerDB *gorm.DB
	// listen is whether relays get a LISTEN connection, as `herald serve`
	// gives them on PostgreSQL.
	listen bool

	nc     *natsgo.Conn // the bench's own connection, to purge, count and delete the stream
	stream jetstream.JetStream
	keys   []string     // partition keys events cycle through; nil for none
	seq    atomic.Int64 // events made so far, for their data and keys; the writers make them concurrently
}

// lane is what one relay, or one worker of the broker ceiling or the
// reference relay, works with: its own connection pool, store and
// publisher, as a separate relay process would have.
type lane struct {
	app *app.App
	// nc and js publish without Herald's adapter, for the broker ceiling
	// and the reference relay.
	nc *natsgo.Conn
	js jetstream.JetStream
}

// Run measures every phase and returns the report. An error returns the
// phases finished so far; whatever happens, the bench's rows and stream are
// removed before Run returns. Cancelling ctx stops the run promptly.
func Run(ctx context.Context, opts Options) (rep Report, err error) {
	opts, err = opts.withDefaults()
	if err != nil {
		return Report{}, err
	}
	b := &bench{opts: opts, log: opts.Logger, runID: randomID()}
	defer func() {
		rep.Resources.PeakRSSMiB = mib(peakRSS())
		if cerr := b.close(ctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if err := b.open(ctx); err != nil {
		return Report{}, err
	}
	rep.Setup = b.setup()
	// Each phase leaves the outbox without bench rows and the stream
	// checked and purged, so the next starts from the same state.
	for _, phase := range []func(context.Context, *Report) error{
		b.brokerPhase, b.referencePhase, b.relayPhases, b.writersPhase, b.latencyPhase,
	} {
		if err := phase(ctx, &rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func randomID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// open prepares the configuration, opens one lane per relay and the bench's
// own stream connection, and checks the outbox is the bench's to use.
func (b *bench) open(ctx context.Context) error {
	cfg := b.opts.Config
	cfg.HTTP.Listen = ""
	cfg.NATS.Stream = Stream
	cfg.NATS.StreamSubjects = []string{StreamSubjects}
	cfg.NATS.SubjectTemplate = SubjectTemplate
	cfg.NATS.ProvisionStream = true
	sqlite := cfg.Database.Driver == "sqlite"
	if sqlite || cfg.NATS.URL == "embedded" {
		dir, err := os.MkdirTemp("", "herald-bench-")
		if err != nil {
			return fmt.Errorf("bench: temporary directory: %w", err)
		}
		b.tmpDir = dir
		if sqlite {
			cfg.Database.DSN = filepath.Join(dir, "outbox.db")
		}
		cfg.NATS.EmbeddedStoreDir = filepath.Join(dir, "jetstream")
	}
	b.cfg = cfg
	b.listen = cfg.Database.Driver == "postgres"
	if b.opts.Keys > 0 {
		b.keys = make([]string, b.opts.Keys)
		for i := range b.keys {
			b.keys[i] = fmt.Sprintf("bench-key-%05d", i)
		}
	}

	for i := range b.opts.Relays {
		laneCfg := cfg
		if i > 0 && cfg.NATS.URL == "embedded" {
			laneCfg.NATS.URL = b.lanes[0].app.BrokerURL // one in-process server for all
		}
		// Only the temporary SQLite file is the bench's to migrate; any
		// other database must have been migrated by its owner.
		a, err := app.Open(ctx, laneCfg, app.Options{Migrate: sqlite, Logger: b.log})
		if err != nil {
			return fmt.Errorf("bench: open relay %d: %w", i+1, err)
		}
		b.lanes = append(b.lanes, lane{app: a})
		if i == 0 {
			// Right away, so that close deletes the stream this lane
			// provisioned whatever fails next.
			if err := b.openStream(ctx); err != nil {
				return err
			}
		}
		if err := b.openRaw(&b.lanes[i], i); err != nil {
			return err
		}
	}

	var err error
	if b.producerDB, err = app.OpenDB(cfg.Database); err != nil {
		return fmt.Errorf("bench: open the producers' connection pool: %w", err)
	}
	sqlDB, err := b.producerDB.DB()
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	// database/sql keeps 2 idle connections by default: paced producers
	// would then open and close connections all the time.
	sqlDB.SetMaxIdleConns(b.opts.Producers)
	if sqlite {
		return nil
	}
	var held [3]int
	for i, state := range []outbox.State{outbox.StatePending, outbox.StateDead, outbox.StateDelivered} {
		if held[i], err = b.lanes[0].app.Store.Count(ctx, outbox.Filter{State: state}); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if n := held[0] + held[1] + held[2]; n > 0 {
		return fmt.Errorf("%w: %s holds %d rows (%d pending, %d dead, %d delivered); the bench runs only on an empty outbox, "+
			"since its relays claim every pending row, and deletes only the rows it writes: use a fresh database or schema",
			ErrOutboxNotEmpty, describeDatabase(cfg.Database), n, held[0], held[1], held[2])
	}
	return nil
}

// rawMaxPending bounds the acks outstanding when the bench publishes
// without Herald's adapter: a generous window, so that the broker ceiling
// and the reference relay are limited by the broker, not by waiting.
const rawMaxPending = 1024

// openRaw gives a lane its own connection and JetStream client for
// publishing without Herald's adapter, authenticated as the adapter is.
func (b *bench) openRaw(l *lane, i int) error {
	opts, err := connectOptions(b.cfg.NATS)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	addr := b.lanes[0].app.BrokerURL
	nc, err := natsgo.Connect(addr, append(opts, natsgo.Name(fmt.Sprintf("herald-bench-raw-%d", i+1)))...)
	if err != nil {
		return fmt.Errorf("bench: connect to %s: %w", redact.URLs(addr), err)
	}
	l.nc = nc
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(rawMaxPending),
		jetstream.WithPublishAsyncTimeout(b.cfg.NATS.AckTimeout))
	if err != nil {
		return fmt.Errorf("bench: jetstream: %w", err)
	}
	l.js = js
	return nil
}

// openStream connects the bench's own client to the broker and empties the
// bench stream, which a run killed before its cleanup may have left behind.
func (b *bench) openStream(ctx context.Context) error {
	addr := b.lanes[0].app.BrokerURL
	opts, err := connectOptions(b.cfg.NATS)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	nc, err := natsgo.Connect(addr, append(opts, natsgo.Name("herald-bench"))...)
	if err != nil {
		return fmt.Errorf("bench: connect to %s: %w", redact.URLs(addr), err)
	}
	b.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("bench: jetstream: %w", err)
	}
	b.stream = js
	s, err := js.Stream(ctx, Stream)
	if err != nil {
		return fmt.Errorf("bench: look up stream %s: %w", Stream, err)
	}
	if err := s.Purge(ctx); err != nil {
		return fmt.Errorf("bench: purge stream %s: %w", Stream, err)
	}
	return nil
}

// connectOptions authenticate and secure the bench's own connection as the
// adapter's is, from the same nats.* settings (which the adapter has
// checked by the time this runs).
func connectOptions(n config.NATS) ([]natsgo.Option, error) {
	var opts []natsgo.Option
	switch {
	case n.CredsFile != "":
		opts = append(opts, natsgo.UserCredentials(n.CredsFile))
	case n.NKeySeedFile != "":
		o, err := natsgo.NkeyOptionFromSeed(n.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_seed_file: %w", err)
		}
		opts = append(opts, o)
	case n.Token != "":
		opts = append(opts, natsgo.Token(n.Token))
	case n.User != "":
		opts = append(opts, natsgo.UserInfo(n.User, n.Password))
	}
	if n.TLS != (config.NATSTLS{}) {
		opts = append(opts, natsgo.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	if n.TLS.CAFile != "" {
		opts = append(opts, natsgo.RootCAs(n.TLS.CAFile))
	}
	if n.TLS.CertFile != "" {
		opts = append(opts, natsgo.ClientCert(n.TLS.CertFile, n.TLS.KeyFile))
	}
	return opts, nil
}

// close removes what the bench created and releases every lane. It runs
// even when ctx is cancelled, bounded by its own timeout.
func (b *bench) close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var errs []error
	if b.stream != nil {
		if err := b.stream.DeleteStream(ctx, Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, fmt.Errorf("bench: delete stream %s: %w", Stream, err))
		}
	}
	if b.nc != nil {
		b.nc.Close()
	}
	if len(b.lanes) > 0 && b.cfg.Database.Driver != "sqlite" {
		// Normally only kept delivered rows, or rows an interrupted phase
		// left behind, are still there.
		err := b.lanes[0].app.DB.WithContext(ctx).Exec("DELETE FROM "+outbox.Table+" WHERE event_type = ?", EventType).Error
		if err != nil {
			errs = append(errs, fmt.Errorf("bench: delete the bench's rows (event_type %s): %w", EventType, err))
		}
	}
	if b.producerDB != nil {
		if sqlDB, err := b.producerDB.DB(); err == nil {
			errs = append(errs, sqlDB.Close())
		}
	}
	// Lane 0 last: it may own the embedded server the others use.
	for i := len(b.lanes) - 1; i >= 0; i-- {
		if b.lanes[i].nc != nil {
			b.lanes[i].nc.Close()
		}
		if err := b.lanes[i].app.Close(); err != nil {
			errs = append(errs, fmt.Errorf("bench: close relay %d: %w", i+1, err))
		}
	}
	if b.tmpDir != "" {
		if err := os.RemoveAll(b.tmpDir); err != nil {
			errs = append(errs, fmt.Errorf("bench: remove %s: %w", b.tmpDir, err))
		}
	}
	return errors.Join(errs...)
}

// relayOptions are what `herald serve` gives its relay, from relay.*.
func (b *bench) relayOptions(i int) []producer.Option {
	r := b.cfg.Relay
	opts := []producer.Option{
		producer.WithName(fmt.Sprintf("herald-bench-%s-%d", b.runID, i+1)),
		producer.WithBatchSize(r.BatchSize),
		producer.WithPollInterval(r.PollInterval),
		producer.WithLease(r.Lease),
		producer.WithMaxAttempts(r.MaxAttempts),
		producer.WithBackoff(r.BackoffMin, r.BackoffMax),
		producer.WithShutdownTimeout(r.ShutdownTimeout),
		producer.WithLogger(b.log),
	}
	if b.cfg.DeliveryLog.Enabled {
		// serve logs every attempt by default; what that costs is part of
		// the relay's figure (delivery_log.enabled: false measures without).
		opts = append(opts, producer.WithDeliveryLog(b.cfg.Secrets().Text))
	}
	return opts
}

// benchData is an event's data: about the size of a portal event's.
type benchData struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Owner       string   `json:"owner"`
	Domain      string   `json:"domain"`
	Tags        []string `json:"tags"`
	Seq         int      `json:"seq"`
}

// newEvent makes the next bench event; it is safe for concurrent use.
func (b *bench) newEvent() (event.Event, error) {
	return b.event(int(b.seq.Add(1)))
}

// event makes bench event number n.
func (b *bench) event(n int) (event.Event, error) {
	key := ""
	if len(b.keys) > 0 {
		key = b.keys[n%len(b.keys)]
	}
	data := benchData{
		ID:          fmt.Sprintf("bench-%08d", n),
		Name:        fmt.Sprintf("Bench sample %d", n),
		Description: "A synthetic event of about the size of a data product event, written by herald bench.",
		Owner:       "team-bench",
		Domain:      "benchmarks",
		Tags:        []string{"bench", "synthetic"},
		Seq:         n,
	}
	opts := []event.Option{event.WithSubject("bench_samples/" + data.ID)}
	if key != "" {
		opts = append(opts, event.WithPartitionKey(key))
	}
	ev, err := event.New(EventType, EventSource, data, opts...)
	if err != nil {
		return ev, fmt.Errorf("bench: new event: %w", err)
	}
	return ev, nil
}

func (b *bench) setup() Setup {
	ex, _ := b.event(0)
	payload, _ := ex.MarshalJSON()
	s := Setup{
		Database:       describeDatabase(b.cfg.Database),
		Broker:         "NATS JetStream " + redact.URLs(b.lanes[0].app.BrokerURL),
		Stream:         Stream + " (" + StreamSubjects + ", purged after each phase, deleted afterwards)",
		Relays:         b.opts.Relays,
		BatchSize:      b.cfg.Relay.BatchSize,
		Ordering:       b.cfg.Relay.Ordering,
		DeliveryLog:    b.cfg.DeliveryLog.Enabled,
		KeepDelivered:  b.cfg.Relay.KeepDelivered,
		PartitionKeys:  max(b.opts.Keys, 0),
		EventBytes:     len(payload),
		ReferenceBatch: referenceBatch,
		MaxPendingAcks: rawMaxPending,
		Wakeup:         fmt.Sprintf("polling (relay.poll_interval %s)", b.cfg.Relay.PollInterval),
		CPUs:           runtime.NumCPU(),
		GOMAXPROCS:     runtime.GOMAXPROCS(0),
		GoVersion:      runtime.Version(),
		Started:        time.Now().UTC().Truncate(time.Second),
	}
	if b.cfg.NATS.URL == "embedded" {
		s.Broker = "in-process NATS JetStream " + redact.URLs(b.lanes[0].app.BrokerURL)
	}
	if b.cfg.Database.Driver == "postgres" {
		s.Database += "; VACUUM (ANALYZE) of the outbox before each phase"
	}
	if b.listen {
		s.Wakeup = fmt.Sprintf("LISTEN/NOTIFY, polling (relay.poll_interval %s) as fallback", b.cfg.Relay.PollInterval)
	}
	return s
}

// describeDatabase names the database without its credentials.
func describeDatabase(d config.Database) string {
	switch d.Driver {
	case "sqlite":
		return "SQLite " + d.DSN + " (temporary)"
	case "postgres":
		if u, err := url.Parse(d.DSN); err == nil && u.Host != "" {
			s := "PostgreSQL " + u.Host + u.Path
			if sp := u.Query().Get("search_path"); sp != "" {
				s += " schema " + sp
			}
			return s
		}
		return "PostgreSQL"
	case "mysql":
		if c, err := gomysql.ParseDSN(d.DSN); err == nil {
			return "MySQL/MariaDB " + c.Addr + "/" + c.DBName
		}
		return "MySQL/MariaDB"
	}
	return d.Driver
}
