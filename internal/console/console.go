package console

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/bearer"
	"github.com/heraldhq/herald/internal/redact"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
	"github.com/heraldhq/herald/pkg/subscriptions"
)

// Prefix is where the console is served; mount the [Console] at Prefix+"/".
const Prefix = "/console"

// Defaults of [Config].
const (
	DefaultSampleEvery = 10 * time.Second
	DefaultHistory     = time.Hour
	DefaultSessionTTL  = 12 * time.Hour
	// minTokenLength is the admin API's own minimum, so one token serves both.
	minTokenLength = 16
)

// ErrInvalidConfig is wrapped by every error [New] returns.
var ErrInvalidConfig = errors.New("console: invalid config")

// Destination is one destination the console watches, as herald serve
// configured it. The stored webhook endpoints are not listed here: the
// console reads them from [Config.Endpoints] each time.
type Destination struct {
	Name    string // the outbox destination: "main" or a config destination's name
	Adapter string // nats, sqs, servicebus, webhook
	Target  string // where it publishes, without secrets (app.Target)
	// Check asks the broker whether it answers (adapters.Checker); nil
	// when the adapter cannot tell, as for a webhook: then the delivery log
	// says how the last attempt went.
	Check func(ctx context.Context) error
}

// Config is what the console shows and changes. Store and AdminToken are
// required; everything else has a working zero value.
type Config struct {
	// Store is the outbox, every destination's rows and the delivery log.
	Store *outbox.Store
	// Destinations are the main destination and the config's, main first.
	Destinations []Destination
	// Endpoints is the store of webhook endpoints registered at runtime;
	// nil hides the endpoints page.
	Endpoints *subscriptions.Store
	// Tester sends a test event to an endpoint, as the admin API's
	// POST /v1/webhooks/{name}/test does; nil hides the button.
	Tester func(ctx context.Context, e subscriptions.Endpoint) (subscriptions.TestResult, error)
	// OnChange is called after a change to an endpoint, so that serve
	// reconciles its relays now. It must not block.
	OnChange func()
	// Notify wakes the relays after a retry, so retried rows go out now
	// rather than at the next poll. It must not block.
	Notify func()
	// SecretGrace is how long a rotated-out secret keeps signing
	// (subscriptions.secret_grace); 0 drops it at once, as in the admin API.
	SecretGrace time.Duration
	// Quarantine holds the audit records the enricher could not turn into
	// events; nil hides the enricher page.
	Quarantine *enricher.Quarantine
	// Stats returns the counters of every relay this process runs, by
	// destination name; the sampler plots their throughput. Nil: no plot
	// of throughput, backlog only.
	Stats func() map[string]producer.Stats
	// AdminToken is http.admin_token: the one credential that signs in.
	AdminToken string
	// ReadOnly renders every page without its buttons and refuses every
	// change (http.console_read_only).
	ReadOnly bool
	// SampleEvery is how often the sampler records counters, backlog and
	// health; 0 means DefaultSampleEvery.
	SampleEvery time.Duration
	// History is how far back the plots reach; 0 means DefaultHistory.
	History time.Duration
	// SessionTTL is how long a sign-in lasts; 0 means DefaultSessionTTL.
	SessionTTL time.Duration
	// Secrets are hidden wherever the console shows text it did not write
	// itself: errors, broker and receiver answers, payloads.
	Secrets *redact.Secrets
	Logger  *slog.Logger
	Now     func() time.Time
}

// Console is the operator's web view, an http.Handler for Prefix+"/". Its
// sampler runs in [Console.Run].
type Console struct {
	cfg      Config
	token    bearer.Token
	mux      *http.ServeMux
	pages    map[string]*template.Template
	static   http.Handler
	sessions *sessions
	samples  *sampler
	log      *slog.Logger

	lagMu sync.Mutex
	lag   enrichLag
}

// enrichLag is what the last enriched audit record said about the
// enricher's lag: how long after the portal wrote it the event was written.
type enrichLag struct {
	At  time.Time
	Lag time.Duration
	Set bool
}

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// New checks cfg, fills in its defaults and returns the console.
func New(cfg Config) (*Console, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: Store is required", ErrInvalidConfig)
	}
	// The token itself never goes into an error: this one may be logged.
	if len(cfg.AdminToken) < minTokenLength {
		return nil, fmt.Errorf("%w: http.admin_token must be at least %d characters (got %d)", ErrInvalidConfig, minTokenLength, len(cfg.AdminToken))
	}
	if cfg.SampleEvery < 0 || cfg.History < 0 || cfg.SessionTTL < 0 || cfg.SecretGrace < 0 {
		return nil, fmt.Errorf("%w: SampleEvery, History, SessionTTL and SecretGrace must not be negative", ErrInvalidConfig)
	}
	cfg.SampleEvery = cmp.Or(cfg.SampleEvery, DefaultSampleEvery)
	cfg.History = cmp.Or(cfg.History, DefaultHistory)
	cfg.SessionTTL = cmp.Or(cfg.SessionTTL, DefaultSessionTTL)
	if cfg.History < cfg.SampleEvery {
		return nil, fmt.Errorf("%w: History (%s) must be at least SampleEvery (%s)", ErrInvalidConfig, cfg.History, cfg.SampleEvery)
	}
	names := map[string]bool{}
	for _, d := range cfg.Destinations {
		if d.Name == "" || names[d.Name] {
			return nil, fmt.Errorf("%w: destination names must be set and unique (%q)", ErrInvalidConfig, d.Name)
		}
		names[d.Name] = true
	}
	if cfg.Secrets == nil {
		cfg.Secrets = &redact.Secrets{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, fmt.Errorf("console: static files: %w", err)
	}
	c := &Console{
		cfg:      cfg,
		token:    bearer.New(cfg.AdminToken),
		pages:    pages,
		static:   http.StripPrefix(Prefix+"/static/", http.FileServerFS(static)),
		sessions: newSessions(cfg.SessionTTL, cfg.Now),
		samples:  newSampler(int(cfg.History / cfg.SampleEvery)),
		log:      cfg.Logger,
	}
	c.routes()
	return c, nil
}

// ObserveEnriched records an enriched audit record's lag, for the enricher
// page; pass it to enricher.WithObserver beside the metrics'.
func (c *Console) ObserveEnriched(res enricher.Result) {
	if res.CreatedOn.IsZero() || res.Status != enricher.StatusEnriched {
		return
	}
	now := c.cfg.Now()
	c.lagMu.Lock()
	defer c.lagMu.Unlock()
	c.lag = enrichLag{At: now, Lag: now.Sub(res.CreatedOn), Set: true}
}

func (c *Console) lastLag() enrichLag {
	c.lagMu.Lock()
	defer c.lagMu.Unlock()
	return c.lag
}

// routes lists every page. Each POST passes the session and CSRF checks in
// ServeHTTP before it gets here.
func (c *Console) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET "+Prefix+"/{$}", c.overview)
	m.HandleFunc("GET "+Prefix+"/sign-in", c.signInPage)
	m.HandleFunc("POST "+Prefix+"/sign-in", c.signIn)
	m.HandleFunc("POST "+Prefix+"/sign-out", c.signOut)
	m.Handle("GET "+Prefix+"/static/", c.static)
	m.HandleFunc("GET "+Prefix+"/dead-letters", c.deadLetters)
	m.HandleFunc("GET "+Prefix+"/dead-letter", c.deadLetter)
	m.HandleFunc("POST "+Prefix+"/dead-letters/retry", c.retryDeadLetters)
	m.HandleFunc("GET "+Prefix+"/endpoints", c.endpoints)
	m.HandleFunc("POST "+Prefix+"/endpoints", c.addEndpoint)
	m.HandleFunc("GET "+Prefix+"/endpoints/{name}", c.endpoint)
	m.HandleFunc("POST "+Prefix+"/endpoints/{name}", c.editEndpoint)
	m.HandleFunc("POST "+Prefix+"/endpoints/{name}/enable", c.enableEndpoint)
	m.HandleFunc("POST "+Prefix+"/endpoints/{name}/disable", c.disableEndpoint)
	m.HandleFunc("POST "+Prefix+"/endpoints/{name}/rotate", c.rotateEndpoint)
	m.HandleFunc("POST "+Prefix+"/endpoints/{name}/test", c.testEndpoint)
	m.HandleFunc("POST "+Prefix+"/endpoints/{name}/remove", c.removeEndpoint)
	m.HandleFunc("GET "+Prefix+"/enricher", c.enricherPage)
	m.HandleFunc("POST "+Prefix+"/enricher/retry", c.retryQuarantined)
	m.HandleFunc("GET "+Prefix+"/events", c.eventStory)
	c.mux = m
}

// ServeHTTP guards every request, then routes it: headers that keep the
// pages out of caches and frames, the session for all but sign-in and the
// static files, and for a POST the CSRF token and the read-only switch.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: with no-referrer a browser sends
	// "Origin: null" on the console's own forms.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	path := r.URL.Path
	if path == Prefix {
		http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	public := path == Prefix+"/sign-in" || strings.HasPrefix(path, Prefix+"/static/")
	if public && r.Method != http.MethodPost {
		c.mux.ServeHTTP(w, r)
		return
	}
	if r.Method == http.MethodPost {
		// A form bigger than this is not one of ours.
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		_ = r.ParseForm() // a bad body fails the CSRF check below
	}
	if r.Method == http.MethodPost && !sameOrigin(r) {
		c.refuse(w, r, "cross-origin request refused")
		return
	}
	if public { // POST sign-in: no session yet, the token is the check
		c.mux.ServeHTTP(w, r)
		return
	}
	id, s, ok := c.sessions.get(r)
	if !ok {
		if r.Method == http.MethodPost {
			c.refuse(w, r, "not signed in")
			return
		}
		http.Redirect(w, r, Prefix+"/sign-in?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	if r.Method == http.MethodPost {
		if !validCSRF(r, s.csrf) {
			c.refuse(w, r, "missing or invalid CSRF token")
			return
		}
		if c.cfg.ReadOnly && path != Prefix+"/sign-out" {
			c.refuse(w, r, "the console is read-only (http.console_read_only)")
			return
		}
	}
	c.mux.ServeHTTP(w, r.WithContext(withSession(r.Context(), id, s)))
}

// refuse answers 403 and logs why, with no detail a prober could use.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, why string) {
	c.log.LogAttrs(r.Context(), slog.LevelWarn, "console: request refused", slog.String("reason", why),
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr))
	http.Error(w, "forbidden: "+why, http.StatusForbidden)
}

// Run samples every destination's counters, backlog and health every
// SampleEvery until ctx ends, keeping History's worth for the plots. serve
// runs it beside the relays and waits for it.
func (c *Console) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.SampleEvery)
	defer t.Stop()
	for {
		c.sample(ctx)
		c.sessions.prune()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
