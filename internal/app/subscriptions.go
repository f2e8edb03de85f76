package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/redact"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
	"github.com/heraldhq/herald/pkg/subscriptions"
)

// SubscriptionStore returns the store of the webhook endpoints registered
// at runtime, refusing (with a field error) any endpoint that the config's
// SSRF allowlist would never let Herald deliver to, and sealing their
// secrets under subscriptions.secrets_key.
func SubscriptionStore(cfg config.Config, db *gorm.DB) (*subscriptions.Store, error) {
	ob, err := outbox.NewStore(db, outbox.WithKeepDelivered(cfg.Relay.KeepDelivered), outbox.WithOrdering(cfg.Relay.Ordering))
	if err != nil {
		return nil, err
	}
	opts := []subscriptions.Option{subscriptions.WithValidator(subscriptions.Validator(WebhookOptions(cfg.Subscriptions)...))}
	keys, err := cfg.Subscriptions.Keyring()
	if err != nil {
		return nil, err
	}
	if keys != nil {
		opts = append(opts, subscriptions.WithKeyring(keys))
	}
	if cfg.Subscriptions.AllowPlaintextSecrets {
		opts = append(opts, subscriptions.WithPlaintextSecrets())
	}
	return subscriptions.NewStore(db, ob, opts...), nil
}

// checkSecretsAtRest opens every stored endpoint's secrets before serve
// starts: a row sealed under a key this config lacks, or changed, stops
// startup with an error naming the endpoint and the key id, rather than
// leaving its deliveries stopped with only a log line. It warns about
// what is not yet as it should be: plaintext rows, and rows still under a
// previous key.
func checkSecretsAtRest(ctx context.Context, cfg config.Subscriptions, store *subscriptions.Store, log *slog.Logger) error {
	at, err := store.Verify(ctx)
	if err != nil {
		return fmt.Errorf("webhook signing secrets: %w", err)
	}
	keys, err := cfg.Keyring()
	if err != nil {
		return err
	}
	switch {
	case keys == nil && at.Plaintext > 0:
		log.Warn("webhook signing secrets are stored unencrypted: set subscriptions.secrets_key, then run `herald webhooks reencrypt`",
			"endpoints", at.Plaintext, "allow_plaintext_secrets", cfg.AllowPlaintextSecrets)
	case keys == nil && !cfg.AllowPlaintextSecrets:
		// Nothing is unencrypted, and nothing will be: a note, not a warning,
		// for the many who never store an endpoint.
		log.Info("no subscriptions.secrets_key: adding a webhook endpoint or rotating its secret is refused until it is set")
	case keys == nil:
		log.Warn("no subscriptions.secrets_key: new webhook signing secrets will be stored unencrypted (subscriptions.allow_plaintext_secrets)")
	case at.Plaintext > 0:
		log.Warn("some webhook signing secrets are still stored unencrypted: run `herald webhooks reencrypt`",
			"endpoints", at.Plaintext, "key_id", keys.KeyID())
	}
	if keys != nil {
		if old := at.Rows() - at.Plaintext - at.Sealed[keys.KeyID()]; old > 0 {
			log.Info("some webhook signing secrets are sealed under a previous key: run `herald webhooks reencrypt` before dropping it from subscriptions.previous_secrets_keys",
				"endpoints", old, "key_id", keys.KeyID())
		}
	}
	return nil
}

// WebhookOptions are the webhook publisher options every stored endpoint is
// delivered with: the operator's allowlist, timeout and concurrency.
func WebhookOptions(s config.Subscriptions) []webhook.Option {
	opts := []webhook.Option{webhook.WithTimeout(s.Timeout), webhook.WithConcurrency(s.Concurrency)}
	if len(s.AllowCIDRs) > 0 {
		opts = append(opts, webhook.WithAllowCIDRs(s.AllowCIDRs...))
	}
	if len(s.AllowHTTPHosts) > 0 {
		opts = append(opts, webhook.WithAllowHTTPHosts(s.AllowHTTPHosts...))
	}
	return opts
}

// Routing is where the outbox's writers send each event besides the main
// destination: the config's destinations, and the webhook endpoints stored
// in the database as of the last refresh.
type Routing struct {
	static outbox.Routes
	stored subscriptions.Router
	store  *subscriptions.Store
	every  time.Duration
	log    *slog.Logger
}

var _ outbox.Router = (*Routing)(nil)

// NewRouting returns the routing of cfg over db, with the stored endpoints
// read once already. A writer that runs for long (enrich tail) also runs
// Refreshing; serve refreshes it itself whenever it reconciles.
func NewRouting(ctx context.Context, cfg config.Config, db *gorm.DB, log *slog.Logger) (*Routing, error) {
	store, err := SubscriptionStore(cfg, db)
	if err != nil {
		return nil, err
	}
	r := &Routing{static: cfg.Routes(), store: store, every: cfg.Subscriptions.RefreshInterval, log: log}
	if err := r.Refresh(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Destinations implements outbox.Router.
func (r *Routing) Destinations(eventType string) []string {
	return append(r.static.Destinations(eventType), r.stored.Destinations(eventType)...)
}

// Empty implements outbox.Router.
func (r *Routing) Empty() bool { return r.static.Empty() && r.stored.Empty() }

// Refresh reads the stored endpoints again.
func (r *Routing) Refresh(ctx context.Context) error {
	eps, err := r.store.ListForRouting(ctx)
	if err != nil {
		return fmt.Errorf("read webhook subscriptions: %w", err)
	}
	r.stored.Set(eps)
	return nil
}

// Refreshing refreshes every subscriptions.refresh_interval until ctx ends.
// A failed refresh keeps the last answer: routing to an endpoint a moment
// too long is better than losing its events.
func (r *Routing) Refreshing(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
				r.log.Error("refresh webhook subscriptions", "error", err)
			}
		}
	}
}

// fleet runs one relay, with its own webhook publisher, per enabled stored
// endpoint, and keeps that set in step with the database: an endpoint
// added, changed, disabled or removed with `herald webhooks` or the admin
// API is picked up at the next refresh, or at once when this process's
// admin API made the change. Each endpoint is its own outbox destination,
// so a slow or dead receiver holds back nobody else.
type fleet struct {
	app     *App
	store   *subscriptions.Store
	routing *Routing
	opts    []producer.Option // besides the per-endpoint ones
	kick    chan struct{}
	log     *slog.Logger

	mu      sync.Mutex
	running map[string]*endpointRelay
	windows map[string]*subscriptions.Attempts // attempts since the last flush
}

// endpointRelay is the relay serving one endpoint, and what it was built
// from.
type endpointRelay struct {
	revision int64
	reload   time.Time // a secret expires: rebuild the endpoint then
	pub      *webhook.Publisher
	relay    *producer.Relay
	stop     context.CancelFunc
	done     chan struct{}
}

func newFleet(a *App, routing *Routing, opts []producer.Option) *fleet {
	return &fleet{app: a, store: routing.store, routing: routing, opts: opts, kick: make(chan struct{}, 1),
		log: a.log, running: map[string]*endpointRelay{}, windows: map[string]*subscriptions.Attempts{}}
}

// Kick asks for a reconcile now, e.g. after the admin API changed an
// endpoint. It never blocks.
func (f *fleet) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Notify wakes every endpoint's relay.
func (f *fleet) Notify() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.running {
		r.relay.Notify()
	}
}

// Run reconciles until ctx ends, then stops every relay, each draining the
// batch it holds, and records the last attempts.
func (f *fleet) Run(ctx context.Context) {
	defer func() {
		f.mu.Lock()
		running := f.running
		f.running = map[string]*endpointRelay{}
		f.mu.Unlock()
		for name, r := range running {
			f.stopRelay(name, r)
		}
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		f.flush(flushCtx)
	}()
	t := time.NewTicker(f.app.Config.Subscriptions.RefreshInterval)
	defer t.Stop()
	for {
		f.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.kick:
		}
	}
}

func (f *fleet) reconcile(ctx context.Context) {
	f.flush(ctx)
	eps, err := f.store.List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			f.log.Error("read webhook subscriptions; keeping the running set", "error", err)
		}
		return
	}
	f.routing.stored.Set(eps)
	now := time.Now()
	want := map[string]bool{}
	for _, e := range eps {
		if !e.Enabled {
			continue
		}
		want[e.Name] = true
		f.mu.Lock()
		r := f.running[e.Name]
		f.mu.Unlock()
		switch {
		case r == nil:
			f.startRelay(ctx, e, now)
		case r.revision != e.Revision || (!r.reload.IsZero() && !now.Before(r.reload)):
			// A new URL, types, headers or secret set: the publisher takes
			// it for its next batch, without a restart.
			ep, err := e.Webhook(now)
			if err == nil {
				err = r.pub.SetEndpoints([]webhook.Endpoint{ep})
			}
			if err != nil {
				f.log.Error("webhook endpoint changed but cannot be used; stopping its deliveries", "endpoint", e.Name, "error", err)
				f.stopRunning(e.Name)
				continue
			}
			r.revision, r.reload = e.Revision, e.NextExpiry(now)
			f.log.Info("webhook endpoint updated", "endpoint", e.Name, "revision", e.Revision)
		}
	}
	f.mu.Lock()
	var gone []string
	for name := range f.running {
		if !want[name] {
			gone = append(gone, name)
		}
	}
	f.mu.Unlock()
	for _, name := range gone {
		f.stopRunning(name)
	}
}

func (f *fleet) startRelay(ctx context.Context, e subscriptions.Endpoint, now time.Time) {
	log := f.log.With("endpoint", e.Name)
	ep, err := e.Webhook(now)
	if err != nil {
		log.Error("webhook endpoint cannot be delivered to", "error", err)
		return
	}
	dest := e.Destination()
	cfg := f.app.Config.Subscriptions
	name := e.Name
	opts := append(WebhookOptions(cfg),
		webhook.WithLogger(log),
		webhook.WithDisableAfter(cfg.DisableAfter),
		webhook.WithOnDisabled(func(_ string, reason error) { f.disabled(name, reason) }),
		webhook.WithAttemptObserver(f.observe(name, f.app.Metrics.WebhookAttempts(dest))))
	pub, err := webhook.New([]webhook.Endpoint{ep}, opts...)
	if err != nil {
		log.Error("webhook endpoint cannot be delivered to", "error", err)
		return
	}
	relayOpts := append(slices.Clone(f.opts),
		producer.WithObserver(f.app.Metrics.Relay(dest)),
		producer.WithRetrySchedule(cfg.RetrySchedule...),
		producer.WithMaxAttempts(len(cfg.RetrySchedule)+1),
		producer.WithLogger(log))
	if f.app.Config.DeliveryLog.Enabled {
		// A receiver may echo the request in its answer: the endpoint's
		// own header values, URL tokens and secrets stay out of the log as
		// the config's do.
		relayOpts = append(relayOpts, producer.WithDeliveryLog(endpointSecrets(f.app.secrets, e).Text))
	}
	relay := producer.New(f.app.Store.ForDestination(dest), pub, relayOpts...)
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r := &endpointRelay{revision: e.Revision, reload: e.NextExpiry(now), pub: pub, relay: relay, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := relay.Run(runCtx); err != nil {
			log.Error("webhook relay", "error", err)
		}
	}()
	f.mu.Lock()
	f.running[e.Name] = r
	f.mu.Unlock()
	log.Info("delivering to webhook endpoint", "url", redact.URL(e.URL), "destination", dest)
}

// endpointSecrets is config's secrets and those of a stored endpoint.
func endpointSecrets(config *redact.Secrets, e subscriptions.Endpoint) *redact.Secrets {
	known := &redact.Secrets{}
	known.Merge(config)
	known.AddURL(e.URL)
	known.Add(e.SecretValues()...)
	return known
}

func (f *fleet) stopRunning(name string) {
	f.mu.Lock()
	r := f.running[name]
	delete(f.running, name)
	f.mu.Unlock()
	if r != nil {
		f.stopRelay(name, r)
	}
}

// stopRelay stops one relay gracefully: the batch in hand is finished and
// recorded, then the publisher closes.
func (f *fleet) stopRelay(name string, r *endpointRelay) {
	r.stop()
	<-r.done
	_ = r.pub.Close()
	f.log.Info("stopped delivering to webhook endpoint", "endpoint", name)
}

// disabled persists that the publisher disabled an endpoint (a 410, or
// failing for subscriptions.disable_after) and, when this process was the
// one to disable it, announces it on the main destination. The next
// reconcile stops the endpoint's relay; its events wait in the outbox.
func (f *fleet) disabled(name string, reason error) {
	// Called from the relay's publish, which has its own deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := f.store.Disable(ctx, name, reason.Error())
	if err != nil {
		f.log.Error("record that a webhook endpoint was disabled", "endpoint", name, "error", err)
	}
	if first {
		e, err := f.store.Get(ctx, name)
		url := ""
		if err == nil {
			url = redact.URL(e.URL)
		}
		f.app.announce(ctx, subscriptions.Destination(name), url, reason)
	}
	f.Kick()
}

// observe keeps an endpoint's attempts for its status, and reports each to
// the metrics.
func (f *fleet) observe(name string, metric func(webhook.Attempt)) func(webhook.Attempt) {
	return func(at webhook.Attempt) {
		metric(at)
		f.mu.Lock()
		defer f.mu.Unlock()
		w := f.windows[name]
		if w == nil {
			w = &subscriptions.Attempts{}
			f.windows[name] = w
		}
		w.Attempts++
		if at.Err != nil {
			w.Failures++
		} else if at.At.After(w.LastSuccess) {
			w.LastSuccess = at.At
		}
		if at.At.Before(w.Last) {
			return // a concurrent attempt finished later and already counts as the last
		}
		w.Last, w.LastStatusCode = at.At, at.StatusCode
		if at.Err == nil {
			w.LastError, w.FirstFailure = "", time.Time{}
			return
		}
		w.LastError = at.Err.Error()
		if w.FirstFailure.IsZero() {
			w.FirstFailure = at.At
		}
	}
}

// flush records the attempts seen since the last flush.
func (f *fleet) flush(ctx context.Context) {
	f.mu.Lock()
	windows := f.windows
	f.windows = map[string]*subscriptions.Attempts{}
	f.mu.Unlock()
	for name, w := range windows {
		if err := f.store.RecordAttempts(ctx, name, *w); err != nil && ctx.Err() == nil {
			f.log.Warn("record webhook delivery status", "endpoint", name, "error", err)
		}
	}
}
