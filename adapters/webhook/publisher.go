package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// ContentType is the Content-Type of every request: the body is the stored
// CloudEvent in the structured JSON format.
const ContentType = "application/cloudevents+json"

// Publisher delivers events to a set of webhook endpoints. It implements
// adapters.Publisher; create it with New.
type Publisher struct {
	cfg       config
	client    *http.Client
	transport *http.Transport
	log       *slog.Logger

	mu        sync.Mutex
	endpoints []*endpoint
	// disabled holds why each endpoint was disabled since the last
	// SetEndpoints (a 410, or failing for WithDisableAfter); they receive
	// nothing more.
	disabled map[string]error
	// failingSince is when each endpoint's unbroken run of failed
	// deliveries began; a delivered event removes its entry.
	failingSince map[string]time.Time
	closed       bool
	// inflight counts Publish calls running, so Close can wait for them.
	inflight sync.WaitGroup
}

var (
	_ adapters.Publisher = (*Publisher)(nil)
	_ adapters.Bounded   = (*Publisher)(nil)
	_ adapters.Limited   = (*Publisher)(nil)
)

// New returns a Publisher for endpoints. Every endpoint is validated (name,
// URL and the SSRF rules, secrets, type globs, headers), with an error naming
// the endpoint. New does not contact the endpoints.
func New(endpoints []Endpoint, opts ...Option) (*Publisher, error) {
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	eps, err := cfg.guard.validate(endpoints)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	tlsConfig := cfg.tlsConfig
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	tlsConfig.MinVersion = max(tlsConfig.MinVersion, tls.VersionTLS12)
	transport := &http.Transport{
		// No proxy: the guard checks the address dialled, which would be the
		// proxy's, not the endpoint's.
		Proxy:               nil,
		DialContext:         cfg.guard.dialer().DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: defaultDialTimeout,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: cfg.concurrency,
		IdleConnTimeout:     90 * time.Second,
		// Response bodies are drained and dropped; nothing to decompress.
		DisableCompression: true,
	}
	return &Publisher{
		cfg:       cfg,
		transport: transport,
		client: &http.Client{
			Transport: transport,
			// A redirect is reported, not followed: following it would send
			// the event to a URL nobody registered and the guard never saw
			// in the endpoint list.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:          cfg.logger,
		endpoints:    eps,
		disabled:     map[string]error{},
		failingSince: map[string]time.Time{},
	}, nil
}

// SetEndpoints replaces the endpoint set, e.g. after the admin API changed a
// subscription. It validates like New and, on error, keeps the old set. It
// also forgets which endpoints were disabled after a 410: the caller's list
// is authoritative. A Publish already running keeps the set it started with.
func (p *Publisher) SetEndpoints(endpoints []Endpoint) error {
	eps, err := p.cfg.guard.validate(endpoints)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endpoints = eps
	p.disabled = map[string]error{}
	p.failingSince = map[string]time.Time{}
	return nil
}

// Publish sends each message to every enabled endpoint whose Types match its
// type and returns one Result per message. A message is sent when every such
// endpoint answered 2xx; a message no endpoint subscribes to fails
// permanently (ErrNotSubscribed): nothing was sent, so it must not count as
// delivered.
// An endpoint disabled after a 410 fails its messages permanently (ErrGone)
// until SetEndpoints, so they are kept as dead letters for replay.
//
// Endpoints are served concurrently, each by its own goroutine with at most
// WithConcurrency requests in flight, so a slow endpoint does not hold back
// the others' deliveries (though Publish returns only when all are done or
// timed out). Messages sharing a partition key go to each endpoint one after
// another, in order. Once one of them has failed, for whatever reason, the
// later ones of its key are not sent (ErrEarlierFailed): to any endpoint
// when it failed before any request (too large, an invalid id, no
// subscriber), or to that endpoint when the endpoint failed it.
func (p *Publisher) Publish(ctx context.Context, msgs []adapters.Message) []adapters.Result {
	res := make([]adapters.Result, len(msgs))
	if len(msgs) == 0 {
		return res
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return adapters.FailAll(len(msgs), ErrClosed)
	}
	p.inflight.Add(1)
	defer p.inflight.Done()
	var eps, disabled []*endpoint
	var why []error // why[j] is why disabled[j] was disabled
	for _, e := range p.endpoints {
		switch {
		case !e.Enabled:
		case p.disabled[e.Name] != nil:
			disabled, why = append(disabled, e), append(why, p.disabled[e.Name])
		default:
			eps = append(eps, e)
		}
	}
	p.mu.Unlock()

	sendable := p.screen(msgs, eps, disabled, res)

	// failures[e][i] is endpoint e's error for message i; each endpoint's
	// goroutine writes only its own row.
	failures := make([][]*EndpointError, len(eps))
	// answered[e][i] is the HTTP status endpoint e answered message i with,
	// for the delivery log; 0 when it gave none.
	answered := make([][]int, len(eps))
	sentTo := make([][]int, len(eps))
	gone := make([]bool, len(eps))
	var wg sync.WaitGroup
	for e, ep := range eps {
		var idx []int
		for i, m := range msgs {
			if sendable[i] && ep.matches(m.Type) {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			continue
		}
		sentTo[e] = idx
		failures[e] = make([]*EndpointError, len(msgs))
		answered[e] = make([]int, len(msgs))
		wg.Go(func() { gone[e] = p.deliverAll(ctx, ep, msgs, idx, failures[e], answered[e]) })
	}
	wg.Wait()

	for i, m := range msgs {
		var failed []*EndpointError
		for e := range eps {
			if failures[e] != nil && failures[e][i] != nil {
				failed = append(failed, failures[e][i])
			}
		}
		// A disabled endpoint still subscribes: its events fail rather
		// than count as sent, so they stay in the outbox for replay.
		for j, ep := range disabled {
			if sendable[i] && ep.matches(m.Type) {
				failed = append(failed, &EndpointError{Endpoint: ep.Name, Err: adapters.Permanent(fmt.Errorf("disabled: %w", why[j]))})
			}
		}
		if err := combine(failed); err != nil {
			res[i].Err = err
			res[i].RetryAfter, _ = RetryAfter(err)
		}
		res[i].Status = statusOf(failed, answered, i)
	}
	now := p.cfg.now()
	for e, ep := range eps {
		switch {
		case gone[e]:
			p.disable(ep.Name, fmt.Errorf("%w: answered 410 Gone", ErrGone))
		case failures[e] != nil:
			if since, failing := p.failing(ep.Name, failures[e], sentTo[e], now); failing && p.cfg.disableAfter > 0 && now.Sub(since) >= p.cfg.disableAfter {
				p.disable(ep.Name, fmt.Errorf("%w: every delivery failed since %s (disable after %s)",
					ErrFailing, since.UTC().Format(time.RFC3339), p.cfg.disableAfter))
			}
		}
	}
	return res
}

// statusOf is the HTTP status a message's Result reports: that of its first
// failure that had one, else the first answer an endpoint gave it.
func statusOf(failed []*EndpointError, answered [][]int, i int) int {
	for _, f := range failed {
		if f.StatusCode != 0 {
			return f.StatusCode
		}
	}
	for _, codes := range answered {
		if codes != nil && codes[i] != 0 {
			return codes[i]
		}
	}
	return 0
}

// screen fails, permanently, the messages that can go to no endpoint (too
// large, an id the header cannot carry, a type no endpoint subscribes to),
// holds back the later messages of their keys, and reports which messages
// may go.
func (p *Publisher) screen(msgs []adapters.Message, eps, disabled []*endpoint, res []adapters.Result) []bool {
	sendable := make([]bool, len(msgs))
	failed := map[string]error{} // partition key -> the failure holding it back
	for i, m := range msgs {
		if cause := failed[m.PartitionKey]; m.PartitionKey != "" && cause != nil {
			res[i].Err = adapters.HeldBack(ErrEarlierFailed, m.PartitionKey, cause)
			continue
		}
		switch {
		case len(m.Payload) > p.cfg.maxBodySize:
			res[i].Err = adapters.Permanent(fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(m.Payload), p.cfg.maxBodySize))
		case !validID(m.ID):
			res[i].Err = adapters.Permanent(fmt.Errorf("%w: %q", ErrInvalidID, m.ID))
		case !subscribed(eps, m.Type) && !subscribed(disabled, m.Type):
			res[i].Err = adapters.Permanent(fmt.Errorf("%w: %s", ErrNotSubscribed, m.Type))
		default:
			sendable[i] = true
			continue
		}
		if m.PartitionKey != "" {
			failed[m.PartitionKey] = res[i].Err
		}
	}
	return sendable
}

// MaxMessageBytes implements adapters.Limited: WithMaxBodySize, since the
// body is the stored event as it is and the signature travels in headers.
func (p *Publisher) MaxMessageBytes() int { return p.cfg.maxBodySize }

// MaxPublishTime implements adapters.Bounded. Each request is cut off after
// WithTimeout, and endpoints are served at the same time, so their number
// does not count. Within an endpoint a partition key's messages go one after
// another, and nothing in n says they do not all share one key: n requests
// in a row is the worst case. (Spread over distinct keys, they would take
// only ceil(n / WithConcurrency) timeouts.) Plus a little slack for the
// observer and disable callbacks and scheduling.
func (p *Publisher) MaxPublishTime(n int) time.Duration {
	return time.Duration(max(n, 1))*p.cfg.timeout + adapters.BoundSlack
}

// failing updates an endpoint's run of failures with the outcomes of the
// events sent to it (idx) and returns when the run began, or false when it
// delivered one.
func (p *Publisher) failing(name string, failures []*EndpointError, idx []int, now time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, i := range idx {
		if failures[i] == nil {
			delete(p.failingSince, name)
			return time.Time{}, false
		}
	}
	since, ok := p.failingSince[name]
	if !ok {
		since = now
		p.failingSince[name] = now
	}
	return since, true
}

// disable stops deliveries to an endpoint and tells the caller why.
func (p *Publisher) disable(name string, reason error) {
	p.mu.Lock()
	p.disabled[name] = reason
	delete(p.failingSince, name)
	p.mu.Unlock()
	p.log.Warn("webhook: endpoint disabled", "endpoint", name, "reason", reason)
	if p.cfg.onDisabled != nil {
		p.cfg.onDisabled(name, reason)
	}
}

// deliverAll sends msgs[idx] to one endpoint with bounded concurrency and
// records each failure in out and each HTTP status in codes. It reports
// whether the endpoint answered 410.
func (p *Publisher) deliverAll(ctx context.Context, ep *endpoint, msgs []adapters.Message, idx []int, out []*EndpointError, codes []int) bool {
	// A lane is the messages of one partition key, in order; a message
	// without a key is a lane of its own.
	var lanes [][]int
	laneOf := map[string]int{}
	for _, i := range idx {
		key := msgs[i].PartitionKey
		if key == "" {
			lanes = append(lanes, []int{i})
			continue
		}
		l, ok := laneOf[key]
		if !ok {
			l = len(lanes)
			laneOf[key] = l
			lanes = append(lanes, nil)
		}
		lanes[l] = append(lanes[l], i)
	}
	queue := make(chan []int, len(lanes))
	for _, l := range lanes {
		queue <- l
	}
	close(queue)

	var gone atomic.Bool
	var wg sync.WaitGroup
	for range min(p.cfg.concurrency, len(lanes)) {
		wg.Go(func() {
			for lane := range queue {
				p.deliverLane(ctx, ep, msgs, lane, out, codes, &gone)
			}
		})
	}
	wg.Wait()
	return gone.Load()
}

// deliverLane sends one lane's messages to one endpoint in order. After a
// failure the rest of the lane is held back: those of a partition key must
// not overtake it (a keyless message is a lane of its own). After a 410 from
// any lane the endpoint is gone, and its remaining messages fail as those of
// a disabled endpoint do, permanently.
func (p *Publisher) deliverLane(ctx context.Context, ep *endpoint, msgs []adapters.Message, lane []int, out []*EndpointError, codes []int,
	gone *atomic.Bool,
) {
	var earlier *EndpointError // the lane's failure, if any
	for _, i := range lane {
		switch {
		case ctx.Err() != nil:
			out[i] = &EndpointError{Endpoint: ep.Name, Err: fmt.Errorf("not sent: %w", ctx.Err())}
		case gone.Load():
			out[i] = &EndpointError{Endpoint: ep.Name, StatusCode: http.StatusGone,
				Err: adapters.Permanent(fmt.Errorf("%w: not sent, the endpoint answered 410 to an earlier event", ErrGone))}
		case earlier != nil:
			held := &EndpointError{Endpoint: ep.Name, Err: adapters.HeldBack(ErrEarlierFailed, msgs[i].PartitionKey, earlier.Err)}
			if !earlier.permanent() {
				// It can go no sooner than its predecessor.
				held.RetryAfter = earlier.RetryAfter
			}
			out[i] = held
		default:
			status, err := p.deliver(ctx, ep, msgs[i])
			codes[i] = status
			if err != nil {
				out[i] = err
				earlier = err
				if errors.Is(err, ErrGone) {
					gone.Store(true)
				}
			}
		}
	}
}

// deliver makes one attempt to send one message to one endpoint and
// returns the HTTP status it got (0: no response) and its failure.
func (p *Publisher) deliver(ctx context.Context, ep *endpoint, msg adapters.Message) (int, *EndpointError) {
	reqCtx, cancel := context.WithTimeout(ctx, p.cfg.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, ep.url.String(), bytes.NewReader(msg.Payload))
	if err != nil {
		return 0, &EndpointError{Endpoint: ep.Name, Err: adapters.Permanent(fmt.Errorf("build request: %w", err))}
	}
	req.Header = ep.header.Clone()
	ts := p.cfg.now()
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(webhooks.HeaderID, msg.ID)
	req.Header.Set(webhooks.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(webhooks.HeaderSignature, webhooks.SignAll(ep.Secrets, msg.ID, ts, msg.Payload))
	if msg.TraceParent != "" {
		req.Header.Set("Traceparent", msg.TraceParent)
	}

	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		e := p.requestError(ctx, ep, err)
		took := time.Since(start)
		p.observe(ep, msg, ts, took, 0, e)
		p.log.Debug("webhook: delivery failed", "endpoint", ep.Name, "id", msg.ID, "err", e.Err, "duration", took)
		return 0, e
	}
	defer func() { _ = resp.Body.Close() }()
	// Read (a bounded amount of) the body so the connection can be reused;
	// the first bytes explain a failure.
	var head bytes.Buffer
	_, _ = io.Copy(&head, io.LimitReader(resp.Body, errorBodyLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, ResponseReadLimit-errorBodyLimit))
	took := time.Since(start)
	e := classify(ep.Name, resp, head.Bytes(), p.cfg.now())
	p.observe(ep, msg, ts, took, resp.StatusCode, e)
	if e != nil {
		p.log.Debug("webhook: delivery failed", "endpoint", ep.Name, "id", msg.ID, "status", resp.StatusCode, "err", e.Err, "duration", took)
		return resp.StatusCode, e
	}
	p.log.Debug("webhook: delivered", "endpoint", ep.Name, "id", msg.ID, "status", resp.StatusCode, "duration", took)
	return resp.StatusCode, nil
}

// observe reports one attempt to the WithAttemptObserver func, if any.
func (p *Publisher) observe(ep *endpoint, msg adapters.Message, at time.Time, took time.Duration, status int, e *EndpointError) {
	if p.cfg.onAttempt == nil {
		return
	}
	a := Attempt{Endpoint: ep.Name, EventID: msg.ID, StatusCode: status, Duration: took, At: at}
	if e != nil {
		a.Err = e // only when set: a nil *EndpointError would be a non-nil error
	}
	p.cfg.onAttempt(a)
}

// requestError describes a request that got no response. A failure to
// connect at all (refused, no route, DNS, the TLS handshake) is the
// endpoint's as a whole, adapters.ErrUnavailable; the SSRF guard's refusal
// stays permanent, the caller's context its own, and the request timing out
// or the connection breaking after the request went out stays plain
// transient: the receiver may have choked on this very event.
func (p *Publisher) requestError(ctx context.Context, ep *endpoint, err error) *EndpointError {
	// url.Error repeats the URL, whose query may hold a token.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	switch {
	case ctx.Err() != nil, errors.Is(err, adapters.ErrPermanent):
		err = fmt.Errorf("post: %w", err)
	case connectFailed(err):
		err = adapters.Unavailable(fmt.Errorf("post: %w", err))
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("post: %w: no response within %s", ErrTimeout, p.cfg.timeout)
	default:
		err = fmt.Errorf("post: %w", err)
	}
	return &EndpointError{Endpoint: ep.Name, Err: err}
}

// connectFailed reports whether a request failed before a connection to the
// endpoint was up: dialling (refused, unreachable, DNS, the dialer's
// timeout) or the TLS handshake (a certificate that does not verify, a
// server that speaks plain HTTP or no TLS at all, an alert, the handshake
// timeout).
func connectFailed(err error) bool {
	if errors.Is(err, http.ErrSchemeMismatch) {
		return true
	}
	var (
		opErr     *net.OpError
		dnsErr    *net.DNSError
		verifyErr *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		alertErr  tls.AlertError
		netErr    net.Error
	)
	switch {
	case errors.As(err, &opErr) && opErr.Op == "dial",
		errors.As(err, &dnsErr),
		errors.As(err, &verifyErr),
		errors.As(err, &recordErr),
		errors.As(err, &alertErr):
		return true
	}
	// The transport sets no timeout but the TLS handshake's; the request's
	// own deadline is a context error.
	return errors.As(err, &netErr) && netErr.Timeout() && !errors.Is(err, context.DeadlineExceeded)
}

// classify turns a response into nil (2xx) or the endpoint's error.
//
// Permanent: 410 (and the endpoint is disabled), 3xx (redirects are not
// followed; the URL must be updated), and the other 4xx: the receiver
// rejected this request as such (400 malformed, 401/403 signature or
// authorisation, 404 wrong URL, 413 too large) and sending the same bytes
// again cannot change that. Such events are dead-lettered, and can be
// replayed once the receiver is fixed. Transient (ErrUnavailable): 408, 425,
// 429 and every 5xx, honouring Retry-After. Of those, 429, 502, 503 and 504
// say the endpoint as a whole is throttling or down, and also wrap
// adapters.ErrUnavailable; a 500 or 501 may be about this event.
func classify(name string, resp *http.Response, head []byte, now time.Time) *EndpointError {
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		return nil
	}
	e := &EndpointError{Endpoint: name, StatusCode: code}
	detail := resp.Status
	if len(head) > 0 {
		detail += fmt.Sprintf(" %q", head)
	}
	switch {
	case code == http.StatusGone:
		e.Err = adapters.Permanent(fmt.Errorf("%w: %s", ErrGone, detail))
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests, code >= 500:
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		e.Err = fmt.Errorf("%w: %s", ErrUnavailable, detail)
		if e.RetryAfter > 0 {
			e.Err = fmt.Errorf("%w: %s, retry after %s", ErrUnavailable, detail, e.RetryAfter)
		}
		if endpointDown(code) {
			e.Err = adapters.Unavailable(e.Err)
		}
	case code >= 300 && code <= 399:
		e.Err = adapters.Permanent(fmt.Errorf("%w: %s (redirect to %q not followed; update the endpoint URL)",
			ErrRejected, detail, resp.Header.Get("Location")))
	case code >= 400 && code <= 499:
		e.Err = adapters.Permanent(fmt.Errorf("%w: %s", ErrRejected, detail))
	default:
		e.Err = fmt.Errorf("%w: %s", ErrUnavailable, detail)
	}
	return e
}

// endpointDown reports whether a status says the endpoint as a whole is
// throttling or down, whatever the event: 429, and the gateway and
// availability answers 502, 503 and 504.
func endpointDown(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date; 0 when it is
// absent, malformed or already past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(365*24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now).Round(time.Second)
	}
	return 0
}

// validID reports whether an event id can travel unchanged in a header and
// be signed unambiguously.
func validID(id string) bool {
	if id == "" {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// Close waits for running Publish calls and releases idle connections.
// Publish after Close fails every message with ErrClosed. Close is
// idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.inflight.Wait()
	p.transport.CloseIdleConnections()
	return nil
}

func subscribed(eps []*endpoint, eventType string) bool {
	for _, e := range eps {
		if e.matches(eventType) {
			return true
		}
	}
	return false
}
