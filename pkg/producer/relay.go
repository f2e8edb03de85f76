package producer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// Relay publishes outbox rows through one adapter. Several relays, in one
// process or many, may share an outbox; each must have its own name.
type Relay struct {
	store *outbox.Store
	pub   adapters.Publisher
	cfg   settings
	wake  chan struct{}
	stats counters
}

type settings struct {
	name            string
	batchSize       int
	pollInterval    time.Duration
	lease           time.Duration
	maxAttempts     int
	backoffMin      time.Duration
	backoffMax      time.Duration
	retrySchedule   []time.Duration // when set, replaces backoffMin/backoffMax
	shutdownTimeout time.Duration
	retention       time.Duration
	pruneEvery      time.Duration
	observer        Observer
	tracer          trace.Tracer // nil: no spans, and no work spent on them
	destination     string
	router          outbox.Router
	deadLetters     DeadLetterPolicy
	log             *slog.Logger

	// deliveryLog turns the delivery log on; redact is applied to every
	// answer before it is stored.
	deliveryLog  bool
	redact       func(string) string
	logRetention time.Duration
}

// DeadLetterPolicy says what a dead-lettered event does to the later events
// of its partition key.
type DeadLetterPolicy int

const (
	// ParkKey, the default, holds the key's later events back until its
	// dead letter is retried (`herald outbox retry`, which puts it first
	// again) or purged: a consumer that provisions from events never sees
	// "access granted" after a "data product created" it never got.
	ParkKey DeadLetterPolicy = iota
	// SkipKey lets the key's later events go on without the dead one; a
	// retried dead letter then arrives after them.
	SkipKey
)

// String returns the name ParseDeadLetterPolicy accepts.
func (p DeadLetterPolicy) String() string {
	switch p {
	case ParkKey:
		return "park_key"
	case SkipKey:
		return "skip"
	default:
		return fmt.Sprintf("DeadLetterPolicy(%d)", int(p))
	}
}

// ParseDeadLetterPolicy turns a configuration value, "park_key" or "skip",
// into a DeadLetterPolicy.
func ParseDeadLetterPolicy(s string) (DeadLetterPolicy, error) {
	switch s {
	case "park_key":
		return ParkKey, nil
	case "skip":
		return SkipKey, nil
	default:
		return 0, fmt.Errorf("dead letter policy %q: want park_key or skip", s)
	}
}

// Observer is told what a relay does, for metrics. Its methods are called on
// the relay's hot path, from one goroutine per relay: keep them cheap.
type Observer interface {
	// Published reports one batch handed to the adapter and how long the
	// adapter took to return every result.
	Published(batch int, took time.Duration)
	// Delivered reports an event the broker accepted; sinceCommit is the
	// time from the producer's write to the broker's ack.
	Delivered(eventType string, sinceCommit time.Duration, duplicate bool)
	// Failed reports a failed attempt that will be retried.
	Failed(eventType string)
	// DeadLettered reports an event given up on.
	DeadLettered(eventType string)
	// Reclaimed reports buckets taken over from a relay that stopped
	// renewing its lease (it died or stalled): what it published and did
	// not record goes out again, and the broker drops the copies.
	Reclaimed(n int)
	// Paused reports the destination found down as a whole (true) and
	// back (false): while it is down the relay sends nothing but probes.
	Paused(down bool)
}

type nopObserver struct{}

func (nopObserver) Published(int, time.Duration)          {}
func (nopObserver) Delivered(string, time.Duration, bool) {}
func (nopObserver) Failed(string)                         {}
func (nopObserver) DeadLettered(string)                   {}
func (nopObserver) Reclaimed(int)                         {}
func (nopObserver) Paused(bool)                           {}

// Option configures a Relay.
type Option func(*settings)

// WithName sets the lease owner name. It must be unique among relays sharing
// an outbox; the default is the host name plus a random suffix.
func WithName(name string) Option { return func(s *settings) { s.name = name } }

// WithBatchSize sets how many rows one read takes and one Publish call
// carries (default 500).
func WithBatchSize(n int) Option { return func(s *settings) { s.batchSize = n } }

// WithPollInterval sets the longest an idle relay waits before looking for
// new rows (default 500ms). Right after activity it looks again within
// milliseconds and backs off towards this interval; [Relay.Notify] cuts any
// wait short.
func WithPollInterval(d time.Duration) Option { return func(s *settings) { s.pollInterval = d } }

// WithLease sets how long the relay's bucket leases last unless renewed
// (default 3s): how long the buckets of a relay that dies or stalls stay
// out of the others' reach. A live relay renews them every lease/3, at most
// every half second, whatever it is doing, so it keeps them however long a
// publish to a slow destination takes.
func WithLease(d time.Duration) Option { return func(s *settings) { s.lease = d } }

// WithMaxAttempts sets after how many attempts a failing event is
// dead-lettered (default 10).
func WithMaxAttempts(n int) Option { return func(s *settings) { s.maxAttempts = n } }

// WithBackoff sets the retry delay bounds: attempt n waits about
// min·2^(n-1), at most max, with jitter (defaults 1s and 10m).
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(s *settings) { s.backoffMin, s.backoffMax = minDelay, maxDelay }
}

// WithRetrySchedule makes failed attempt n wait delays[n-1] before the next
// one, the last delay repeating once attempts outrun the schedule, in place
// of WithBackoff's doubling. An empty schedule is ignored.
//
// Webhook receivers are promised a documented schedule (e.g. 5s, 30s, 2m,
// 10m, 30m, 1h, 3h, 6h) and size their downtime tolerance by it, so the
// relay must keep to it. Each delay gets a random 0–20% on top, never less:
// retries after an outage spread out, yet none arrives before the promised
// time. A longer Retry-After from the destination still wins.
// WithMaxAttempts still decides when to give up: set it to len(delays)+1 to
// dead-letter an event once the schedule runs out.
func WithRetrySchedule(delays ...time.Duration) Option {
	delays = slices.Clone(delays) // now: the caller may reuse its slice before New runs
	return func(s *settings) {
		if len(delays) > 0 {
			s.retrySchedule = delays
		}
	}
}

// WithShutdownTimeout bounds how long Run waits for in-flight acks after its
// context is cancelled (default 30s).
func WithShutdownTimeout(d time.Duration) Option { return func(s *settings) { s.shutdownTimeout = d } }

// WithDeliveredRetention makes the relay delete rows kept as delivered
// (outbox.WithKeepDelivered) once they are older than d, checking every
// minute. 0, the default, leaves them to `herald outbox purge`. Several
// relays may all prune: deletes are batched and idempotent.
func WithDeliveredRetention(d time.Duration) Option {
	return func(s *settings) { s.retention = d }
}

// WithDeliveryLog makes the relay record every attempt to deliver an event
// in the outbox's delivery log (outbox.Store.Attempts), in the transaction
// that records the attempts' outcomes: delivered, failed, dead, or
// unavailable when the destination was down as a whole. Events held back
// behind an earlier one of their key, or never sent, are not attempts.
// redact is applied to each answer (a broker's error, a receiver's
// response) before it is stored, so that no credential an error quotes
// reaches the table; nil stores answers as they are. Off by default: it
// costs a multi-row INSERT per batch.
func WithDeliveryLog(redact func(string) string) Option {
	return func(s *settings) {
		s.deliveryLog = true
		s.redact = redact
	}
}

// WithDeliveryLogRetention makes the relay delete delivery-log attempts
// older than d, checking every minute, in batches. One relay per outbox is
// enough, whether or not it writes the log itself; several may, as deletes
// are idempotent. 0, the default, prunes nothing.
func WithDeliveryLogRetention(d time.Duration) Option {
	return func(s *settings) { s.logRetention = d }
}

// WithObserver reports the relay's work to o, e.g. Prometheus metrics.
func WithObserver(o Observer) Option { return func(s *settings) { s.observer = o } }

// WithTracerProvider makes the relay record a span per published batch
// with tp (default: none). The span links to the trace context each event
// was written with (its traceparent), so a producer's trace shows when and
// where its event left; destination names the broker in the span, e.g.
// "nats" or "sqs".
func WithTracerProvider(tp trace.TracerProvider, destination string) Option {
	return func(s *settings) {
		s.tracer = tp.Tracer("github.com/heraldhq/herald/pkg/producer")
		s.destination = destination
	}
}

// WithRouter makes the relay of the main destination fan every event out
// to the destinations r names for its type before it publishes it (see
// outbox.Store.Route): writers write each event once, for main, and the
// route table in force when the relay reads the event decides where else it
// goes. Other destinations' relays need no router. r must answer from
// memory; an empty route table costs nothing.
func WithRouter(r outbox.Router) Option { return func(s *settings) { s.router = r } }

// WithDeadLetterPolicy sets what a dead letter does to the later events of
// its key (default ParkKey). It matters only with ordering
// (outbox.WithOrdering).
func WithDeadLetterPolicy(p DeadLetterPolicy) Option { return func(s *settings) { s.deadLetters = p } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.log = l } }

// New returns a relay that publishes store's rows through pub.
func New(store *outbox.Store, pub adapters.Publisher, opts ...Option) *Relay {
	cfg := configure(opts)
	cfg.log = cfg.log.With("relay", cfg.name, "destination", store.Destination())
	return &Relay{store: store, pub: pub, cfg: cfg, wake: make(chan struct{}, 1)}
}

// configure applies opts over the defaults.
func configure(opts []Option) settings {
	cfg := settings{
		batchSize:       500,
		pollInterval:    500 * time.Millisecond,
		lease:           3 * time.Second,
		maxAttempts:     10,
		backoffMin:      time.Second,
		backoffMax:      10 * time.Minute,
		shutdownTimeout: 30 * time.Second,
		pruneEvery:      time.Minute,
		observer:        nopObserver{},
		log:             slog.Default(),
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.name == "" {
		cfg.name = defaultName()
	}
	return cfg
}

func defaultName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "relay"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Name returns the relay's lease owner name.
func (r *Relay) Name() string { return r.cfg.name }

// Notify wakes an idle relay at once, e.g. right after a producer commits.
// It never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays until ctx is cancelled, then shuts down gracefully and returns
// nil. It returns early only if the relay is misconfigured.
func (r *Relay) Run(ctx context.Context) error {
	if r.cfg.batchSize < 1 || r.cfg.lease <= 0 || r.cfg.maxAttempts < 1 || r.cfg.pollInterval <= 0 {
		return errors.New("relay: batch size, lease, max attempts and poll interval must be positive")
	}
	r.cfg.log.Info("relay started", "batch_size", r.cfg.batchSize, "lease", r.cfg.lease)
	defer r.cfg.log.Info("relay stopped")
	if r.cfg.retention > 0 || r.cfg.logRetention > 0 {
		// Pruning runs beside the publishing loop so that a large first
		// prune never delays events.
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { r.prune(ctx) })
	}
	return newEngine(r).run(ctx)
}

// pruneBatch is how many attempts one pruning statement deletes: short
// enough never to hold locks a relay would notice.
const pruneBatch = 1000

// prune deletes delivered rows and delivery-log attempts past their
// retention until ctx ends.
func (r *Relay) prune(ctx context.Context) {
	// Each kind of row the relay prunes: how long it is kept, and how.
	kinds := []struct {
		what      string
		retention time.Duration
		prune     func(before time.Time) (int64, error)
	}{
		{"delivered rows", r.cfg.retention, func(before time.Time) (int64, error) {
			n, err := r.store.Purge(ctx, outbox.PurgeFilter{State: outbox.StateDelivered, OlderThan: before}, nil)
			return int64(n), err
		}},
		{"delivery-log attempts", r.cfg.logRetention, func(before time.Time) (int64, error) {
			return r.store.PruneAttempts(ctx, before, pruneBatch)
		}},
	}
	t := time.NewTicker(r.cfg.pruneEvery)
	defer t.Stop()
	for {
		for _, k := range kinds {
			if k.retention <= 0 {
				continue
			}
			n, err := k.prune(time.Now().Add(-k.retention))
			switch {
			case err != nil && ctx.Err() == nil:
				r.cfg.log.Error("prune "+k.what, "error", err)
			case n > 0:
				r.cfg.log.Info("pruned "+k.what, "rows", n, "retention", k.retention)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkPayload verifies that a row holds a valid CloudEvent whose id, type
// and partition key match the row's columns, which adapters and brokers use.
func checkPayload(row outbox.Row) (event.Event, error) {
	ev, err := event.Parse(row.Payload)
	if err != nil {
		return ev, fmt.Errorf("invalid event payload: %w", err)
	}
	switch {
	case ev.ID != row.EventID:
		return ev, fmt.Errorf("payload id %q differs from event_id column %q", ev.ID, row.EventID)
	case ev.Type != row.EventType:
		return ev, fmt.Errorf("payload type %q differs from event_type column %q", ev.Type, row.EventType)
	case ev.PartitionKey != row.PartitionKey:
		return ev, fmt.Errorf("payload partitionkey %q differs from partition_key column %q", ev.PartitionKey, row.PartitionKey)
	}
	return ev, nil
}

// tracedPublish is publish inside a span of kind producer that links to
// every event's own trace context. One span per batch, not per event: the
// relay's cost is per batch, and links keep each producer's trace joined.
func (r *Relay) tracedPublish(ctx context.Context, msgs []adapters.Message) (_ []adapters.Result, cut bool) {
	if len(msgs) == 0 || r.cfg.tracer == nil {
		return r.publish(ctx, msgs)
	}
	links := make([]trace.Link, 0, len(msgs))
	for _, m := range msgs {
		sc, err := parseTraceParent(m.TraceParent)
		if err != nil {
			continue // no or unreadable trace context: nothing to link
		}
		links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{
			attribute.String("messaging.message.id", m.ID),
		}})
	}
	ctx, span := r.cfg.tracer.Start(ctx, "send "+r.cfg.destination, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithLinks(links...), trace.WithAttributes(
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.system", r.cfg.destination),
			attribute.Int("messaging.batch.message_count", len(msgs)),
			attribute.String("herald.relay", r.cfg.name),
		))
	defer span.End()
	results, cut := r.publish(ctx, msgs)
	failed := 0
	for _, res := range results {
		if res.Err != nil {
			failed++
		}
	}
	if failed > 0 {
		span.SetAttributes(attribute.Int("herald.failed_count", failed))
		span.SetStatus(codes.Error, fmt.Sprintf("%d of %d events not accepted", failed, len(msgs)))
	}
	return results, cut
}

// parseTraceParent reads a W3C traceparent header value.
func parseTraceParent(v string) (trace.SpanContext, error) {
	if v == "" {
		return trace.SpanContext{}, errors.New("no traceparent")
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": v})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return sc, fmt.Errorf("invalid traceparent %q", v)
	}
	return sc, nil
}

// publish sends msgs and waits for their acks, and reports whether it cut
// the adapter off: then the messages it reports unsent with a context error
// were never sent, and are given back rather than failed. The cut comes
// after the adapter's own bound (adapters.Bounded), not the lease: the lease
// keeper renews the buckets however long a slow but healthy destination
// takes. Cancelling ctx does not cut the wait short at once either:
// in-flight acks get the shutdown timeout to arrive.
func (r *Relay) publish(ctx context.Context, msgs []adapters.Message) (_ []adapters.Result, cut bool) {
	if len(msgs) == 0 {
		return nil, false
	}
	bound := adapters.DefaultMaxPublishTime
	if b, ok := r.pub.(adapters.Bounded); ok {
		bound = b.MaxPublishTime(len(msgs))
	}
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bound)
	defer cancel()
	published := make(chan struct{})
	graceDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(graceDone)
		t := time.NewTimer(r.cfg.shutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-published:
		}
	})
	defer func() {
		close(published)
		if !stop() {
			<-graceDone // the grace timer started: wait for its goroutine
		}
	}()

	start := time.Now()
	results := r.pub.Publish(pubCtx, msgs)
	r.cfg.observer.Published(len(msgs), time.Since(start))
	if len(results) != len(msgs) {
		err := fmt.Errorf("adapter returned %d results for %d messages", len(results), len(msgs))
		r.cfg.log.Error("adapter broke its contract", "error", err)
		return adapters.FailAll(len(msgs), err), false
	}
	return results, pubCtx.Err() != nil
}

// decide turns an adapter's result into the row's outcome. row.Attempts
// counts the failures recorded before; this is attempt row.Attempts+1.
func (r *Relay) decide(o *outbox.Outcome, row outbox.Row, res adapters.Result, now time.Time) {
	attempt := row.Attempts + 1
	// Every line about one event names it; the attributes are built only
	// when a line is written, since success is the hot path.
	logEvent := func(level slog.Level, msg string, attrs ...slog.Attr) {
		if !r.cfg.log.Enabled(context.Background(), level) {
			return
		}
		attrs = append(attrs, slog.String("event_id", row.EventID), slog.String("event_type", row.EventType),
			slog.Int("attempt", attempt))
		r.cfg.log.LogAttrs(context.Background(), level, msg, attrs...)
	}
	switch {
	case res.Err == nil:
		r.stats.published.Add(1)
		r.cfg.observer.Delivered(row.EventType, now.Sub(row.CreatedAt), res.Duplicate)
		if res.Duplicate {
			r.stats.duplicates.Add(1)
			logEvent(slog.LevelInfo, "delivered; the broker dropped it as a duplicate")
		} else {
			logEvent(slog.LevelDebug, "delivered")
		}
	case errors.Is(res.Err, adapters.ErrPermanent):
		o.Err, o.Dead = res.Err, true
		r.stats.dead.Add(1)
		r.cfg.observer.DeadLettered(row.EventType)
		logEvent(slog.LevelWarn, "event dead-lettered: permanent failure", slog.Any("error", res.Err))
	case attempt >= r.cfg.maxAttempts:
		o.Err, o.Dead = fmt.Errorf("gave up after %d attempts: %w", attempt, res.Err), true
		r.stats.dead.Add(1)
		r.cfg.observer.DeadLettered(row.EventType)
		logEvent(slog.LevelWarn, "event dead-lettered: out of attempts", slog.Any("error", res.Err))
	default:
		o.Err, o.RetryAt = res.Err, now.Add(max(r.backoff(attempt), res.RetryAfter))
		r.stats.failed.Add(1)
		r.cfg.observer.Failed(row.EventType)
		logEvent(slog.LevelInfo, "publish failed; will retry", slog.Any("error", res.Err), slog.Time("retry_at", o.RetryAt))
	}
}

// backoff is min·2^(attempt-1) capped at max, with "equal jitter": half fixed,
// half random, so retries after an outage spread out but never come early.
// A retry schedule replaces it.
func (r *Relay) backoff(attempt int) time.Duration {
	if len(r.cfg.retrySchedule) > 0 {
		return scheduledDelay(r.cfg.retrySchedule, attempt)
	}
	d := r.cfg.backoffMin
	for i := 1; i < attempt && d < r.cfg.backoffMax; i++ {
		d *= 2
	}
	d = min(d, r.cfg.backoffMax)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + mrand.N(half+1)
}

// scheduledDelay is the schedule's delay for attempt plus up to 20% jitter.
// Unlike backoff's equal jitter it only ever adds: the schedule is a promise
// of the earliest retry.
func scheduledDelay(schedule []time.Duration, attempt int) time.Duration {
	d := schedule[min(max(attempt, 1), len(schedule))-1]
	if extra := d / 5; extra > 0 {
		return d + mrand.N(extra+1)
	}
	return d
}

// Stats counts what a relay did since it was created.
type Stats struct {
	Published    int64 // accepted by the broker, duplicates included
	Duplicates   int64 // accepted, but recognised by the broker as already stored
	Failed       int64 // failed attempts that will be retried
	DeadLettered int64
}

type counters struct {
	published, duplicates, failed, dead atomic.Int64
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	return Stats{
		Published:    r.stats.published.Load(),
		Duplicates:   r.stats.duplicates.Load(),
		Failed:       r.stats.failed.Load(),
		DeadLettered: r.stats.dead.Load(),
	}
}
