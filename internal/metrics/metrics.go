// Package metrics exposes a running Herald to Prometheus: what each relay
// does (a producer.Observer per destination), how webhook endpoints answer
// (an attempt observer per destination), what the outbox holds (read at
// scrape time), and the /healthz and /readyz endpoints an orchestrator
// probes.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// Metrics holds one registry per Herald process; nothing is registered
// globally, so tests and embedders can run several side by side.
type Metrics struct {
	registry *prometheus.Registry

	published    *prometheus.CounterVec
	duplicates   *prometheus.CounterVec
	failed       *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	publishTime  *prometheus.HistogramVec
	commitToAck  *prometheus.HistogramVec
	reclaimed    *prometheus.CounterVec
	paused       *prometheus.GaugeVec

	auditRecords *prometheus.CounterVec
	enrichLag    *prometheus.HistogramVec

	webhookAttempts    *prometheus.CounterVec
	webhookAttemptTime *prometheus.HistogramVec
}

// New creates the metrics of a Herald process over store; its relays
// report through Relay.
func New(store *outbox.Store) *Metrics {
	reg := prometheus.NewRegistry()
	labels := []string{"destination", "type"}
	dest := []string{"destination"}
	m := &Metrics{
		registry: reg,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_events_published_total", Help: "Events the broker accepted, duplicates included.",
		}, labels),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_events_duplicate_total", Help: "Published events the broker recognised as already stored (re-publishes after a takeover or retry).",
		}, labels),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_publish_failures_total", Help: "Failed publish attempts that will be retried.",
		}, labels),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_events_dead_lettered_total", Help: "Events given up on and kept as dead letters.",
		}, labels),
		publishTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_publish_batch_seconds", Help: "Time for the adapter to publish one batch and collect its acks.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, dest),
		commitToAck: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_commit_to_ack_seconds", Help: "Time from the producer's outbox write to the broker's ack.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}, dest),
		reclaimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_lease_takeovers_total", Help: "Buckets taken over from a relay that stopped renewing its lease; their unrecorded events are published again.",
		}, dest),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_destination_paused", Help: "1 while the relay has paused the destination because it is down as a whole (its circuit breaker is open), else 0.",
		}, dest),
		auditRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_enricher_records_total", Help: "Audit records the enricher handled, by source (ingest, tail, ...) and status (enriched, quarantined, duplicate).",
		}, []string{"source", "status"}),
		enrichLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_enricher_lag_seconds",
			Help:    "Time from an audit record's created_on (its transaction's start) to its events' commit into the outbox.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 18),
		}, []string{"source"}),
		webhookAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_webhook_attempts_total",
			Help: "HTTP attempts to deliver an event to a webhook endpoint, by outcome: delivered (2xx), failed (any other status) or no_response.",
		}, []string{"destination", "outcome"}),
		webhookAttemptTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_webhook_attempt_seconds",
			Help:    "Time for one webhook attempt, from sending the request to reading the response.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, dest),
	}
	reg.MustRegister(m.published, m.duplicates, m.failed, m.deadLettered, m.publishTime, m.commitToAck, m.reclaimed, m.paused, m.auditRecords, m.enrichLag,
		m.webhookAttempts, m.webhookAttemptTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		outboxCollector{store: store})
	return m
}

// Enriched records what the enricher did with one audit record; pass it to
// the enricher's sources with enricher.WithObserver.
func (m *Metrics) Enriched(res enricher.Result) {
	source, _, _ := strings.Cut(res.Source, ":") // "tail:<cursor>" counts as tail
	m.auditRecords.WithLabelValues(source, string(res.Status)).Inc()
	if res.Status == enricher.StatusEnriched && !res.CreatedOn.IsZero() {
		m.enrichLag.WithLabelValues(source).Observe(time.Since(res.CreatedOn).Seconds())
	}
}

// Relay returns the observer of the relay of one outbox destination
// ("main", or a route's destination), whose figures carry it as the
// destination label.
func (m *Metrics) Relay(destination string) producer.Observer {
	// The series labelled by destination alone are looked up once here,
	// not once per event on the relay's path.
	return relayObserver{
		m: m, dest: destination,
		publishTime: m.publishTime.WithLabelValues(destination),
		commitToAck: m.commitToAck.WithLabelValues(destination),
		reclaimed:   m.reclaimed.WithLabelValues(destination),
		paused:      m.paused.WithLabelValues(destination),
	}
}

type relayObserver struct {
	m                        *Metrics
	dest                     string
	publishTime, commitToAck prometheus.Observer
	reclaimed                prometheus.Counter
	paused                   prometheus.Gauge
}

func (o relayObserver) Published(_ int, took time.Duration) { o.publishTime.Observe(took.Seconds()) }

func (o relayObserver) Delivered(eventType string, sinceCommit time.Duration, duplicate bool) {
	o.m.published.WithLabelValues(o.dest, eventType).Inc()
	if duplicate {
		o.m.duplicates.WithLabelValues(o.dest, eventType).Inc()
	}
	o.commitToAck.Observe(sinceCommit.Seconds())
}

func (o relayObserver) Failed(eventType string) { o.m.failed.WithLabelValues(o.dest, eventType).Inc() }

func (o relayObserver) DeadLettered(eventType string) {
	o.m.deadLettered.WithLabelValues(o.dest, eventType).Inc()
}

func (o relayObserver) Reclaimed(n int) { o.reclaimed.Add(float64(n)) }

func (o relayObserver) Paused(down bool) {
	if down {
		o.paused.Set(1)
	} else {
		o.paused.Set(0)
	}
}

// WebhookAttempts returns the observer of the webhook publisher serving one
// outbox destination, for webhook.WithAttemptObserver. Attempts are counted
// apart from events: one event may take many attempts, and receivers are
// judged by how their attempts fare.
func (m *Metrics) WebhookAttempts(destination string) func(webhook.Attempt) {
	// Every series is looked up once here, not once per attempt; the
	// returned func is called concurrently, which prometheus series allow.
	delivered := m.webhookAttempts.WithLabelValues(destination, "delivered")
	failed := m.webhookAttempts.WithLabelValues(destination, "failed")
	noResponse := m.webhookAttempts.WithLabelValues(destination, "no_response")
	took := m.webhookAttemptTime.WithLabelValues(destination)
	return func(a webhook.Attempt) {
		switch {
		case a.StatusCode == 0:
			noResponse.Inc()
		case a.Err == nil:
			delivered.Inc()
		default:
			failed.Inc()
		}
		took.Observe(a.Duration.Seconds())
	}
}

// outboxCollector reads the outbox's backlog when Prometheus scrapes, so the
// figures are never staler than the scrape.
type outboxCollector struct{ store *outbox.Store }

var (
	pendingDesc = prometheus.NewDesc("herald_outbox_pending", "Pending events (in flight included), by destination and type.", []string{"destination", "type"}, nil)
	inFlight    = prometheus.NewDesc("herald_outbox_in_flight", "Pending events leased by a relay right now, by destination and type.", []string{"destination", "type"}, nil)
	deadDesc    = prometheus.NewDesc("herald_outbox_dead", "Dead letters, by destination and type.", []string{"destination", "type"}, nil)
	oldestDesc  = prometheus.NewDesc("herald_outbox_oldest_pending_age_seconds", "Age of the oldest pending event, by destination and type.", []string{"destination", "type"}, nil)
	scrapeErr   = prometheus.NewDesc("herald_outbox_scrape_error", "1 when the last read of the outbox failed.", nil, nil)
)

func (outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pendingDesc, inFlight, deadDesc, oldestDesc, scrapeErr} {
		ch <- d
	}
}

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := c.store.TypeStats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(scrapeErr, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(scrapeErr, prometheus.GaugeValue, 0)
	now := time.Now()
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(s.Pending), s.Destination, s.Type)
		ch <- prometheus.MustNewConstMetric(inFlight, prometheus.GaugeValue, float64(s.InFlight), s.Destination, s.Type)
		ch <- prometheus.MustNewConstMetric(deadDesc, prometheus.GaugeValue, float64(s.Dead), s.Destination, s.Type)
		age := 0.0
		if !s.OldestPending.IsZero() {
			age = now.Sub(s.OldestPending).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age, s.Destination, s.Type)
	}
}

// Check is one readiness condition, e.g. "database" → ping it.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Handler serves /metrics, /healthz (the process answers) and /readyz (every
// check passes; the body names each check that fails).
func (m *Metrics) Handler(checks ...Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		var errs []error
		for _, c := range checks {
			if err := c.Run(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			http.Error(w, "not ready\n"+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	return mux
}
