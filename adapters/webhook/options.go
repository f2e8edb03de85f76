package webhook

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Defaults used when the matching option is not given.
const (
	// DefaultTimeout bounds one request, from dial to the end of the
	// response; the specification recommends 15 to 30 seconds.
	DefaultTimeout = 15 * time.Second
	// DefaultMaxBodySize is the largest payload sent.
	DefaultMaxBodySize = 256 << 10
	// DefaultConcurrency is how many requests one endpoint has in flight at
	// once.
	DefaultConcurrency = 4
	// ResponseReadLimit is how much of a response body is read (and thrown
	// away) so the connection can be reused; the rest is cut off.
	ResponseReadLimit = 64 << 10

	defaultDialTimeout = 10 * time.Second
	// errorBodyLimit is how much of a failed response's body is quoted in
	// its error.
	errorBodyLimit = 256
	userAgent      = "herald-webhook/1"
)

// Option configures a Publisher. An option given a bad value makes New fail
// with an error naming the option.
type Option func(*config) error

type config struct {
	timeout      time.Duration
	maxBodySize  int
	concurrency  int
	guard        guard
	tlsConfig    *tls.Config
	logger       *slog.Logger
	onDisabled   func(endpoint string, reason error)
	onAttempt    func(Attempt)
	disableAfter time.Duration
	now          func() time.Time
}

func buildConfig(opts []Option) (config, error) {
	cfg := config{
		timeout:     DefaultTimeout,
		maxBodySize: DefaultMaxBodySize,
		concurrency: DefaultConcurrency,
		logger:      slog.Default(),
		now:         time.Now,
	}
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

// WithTimeout bounds each request, from dial to the end of the response
// body. A request that runs out fails transiently. Default 15s.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithTimeout: must be positive, got %s", d)
		}
		c.timeout = d
		return nil
	}
}

// WithMaxBodySize sets the largest payload, in bytes, that is sent; a larger
// one fails permanently with ErrTooLarge. Default 256 KiB.
func WithMaxBodySize(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("WithMaxBodySize: must be positive, got %d", n)
		}
		c.maxBodySize = n
		return nil
	}
}

// WithConcurrency sets how many requests each endpoint may have in flight at
// once. Events sharing a partition key are still sent one after another, in
// order. Default 4.
func WithConcurrency(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("WithConcurrency: must be at least 1, got %d", n)
		}
		c.concurrency = n
		return nil
	}
}

// WithAllowCIDRs lets endpoints reach addresses the SSRF guard otherwise
// refuses (loopback, link-local, private, unique-local…) when they fall
// inside one of cidrs ("10.20.0.0/16", "fd12::/64", or a single address).
// Plain http is also allowed to endpoints whose URL host is an IP literal in
// these ranges. A cloud metadata address (169.254.169.254, fd00:ec2::254,
// 100.100.100.200) is only allowed by an entry naming exactly it.
func WithAllowCIDRs(cidrs ...string) Option {
	return func(c *config) error {
		for _, s := range cidrs {
			p, err := parsePrefix(s)
			if err != nil {
				return fmt.Errorf("WithAllowCIDRs: %w", err)
			}
			c.guard.allow = append(c.guard.allow, p)
		}
		return nil
	}
}

// WithAllowHTTPHosts lets endpoints on these host names use plain http
// instead of https. It does not exempt them from the address checks: a
// name resolving to a private address also needs WithAllowCIDRs.
func WithAllowHTTPHosts(hosts ...string) Option {
	return func(c *config) error {
		for _, h := range hosts {
			if h == "" || strings.ContainsAny(h, "/: \t") {
				return fmt.Errorf("WithAllowHTTPHosts: invalid host name %q", h)
			}
			c.guard.httpHosts = append(c.guard.httpHosts, strings.ToLower(h))
		}
		return nil
	}
}

// WithTLSConfig sets the TLS client configuration, e.g. to trust a private
// CA. It is cloned; the minimum version is raised to TLS 1.2.
func WithTLSConfig(tc *tls.Config) Option {
	return func(c *config) error {
		if tc == nil {
			return errors.New("WithTLSConfig: config is nil")
		}
		c.tlsConfig = tc.Clone()
		return nil
	}
}

// WithLogger sets the logger for delivery attempts (debug) and disabled
// endpoints (warn). Secrets and URL query strings are never logged.
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

// WithDisableAfter disables an endpoint once every delivery to it has failed
// for d without a break (any delivered event restarts the clock), with
// ErrFailing as the reason: a receiver that has been down that long is
// treated as gone, and its later events fail permanently, to be replayed
// once it is back. 0, the default, never disables for failing.
func WithDisableAfter(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("WithDisableAfter: must not be negative, got %s", d)
		}
		c.disableAfter = d
		return nil
	}
}

// WithOnDisabled sets a function called when the Publisher disables an
// endpoint, because it answered 410 Gone (ErrGone) or kept failing
// (ErrFailing, WithDisableAfter), so the caller can persist the flag and
// emit herald.webhook.endpoint_disabled. It is called from Publish,
// before Publish returns, never concurrently with itself.
func WithOnDisabled(fn func(endpoint string, reason error)) Option {
	return func(c *config) error {
		if fn == nil {
			return errors.New("WithOnDisabled: func is nil")
		}
		c.onDisabled = fn
		return nil
	}
}

// Attempt is one HTTP request that tried to deliver one event to one
// endpoint, as reported to WithAttemptObserver. It holds no secrets, headers
// or URL: the endpoint is named, not addressed.
type Attempt struct {
	// Endpoint is the endpoint's name.
	Endpoint string
	// EventID is the event's id, also sent as webhook-id.
	EventID string
	// StatusCode is the HTTP status received, 0 when there was no response
	// (refused, timed out, blocked by the SSRF guard…).
	StatusCode int
	// Err is nil when the endpoint answered 2xx; otherwise the
	// *EndpointError the attempt reports, the same the Result carries.
	Err error
	// Duration runs from sending the request to reading the response.
	Duration time.Duration
	// At is when the attempt started; its webhook-timestamp header carries
	// the same time, in whole seconds.
	At time.Time
}

// WithAttemptObserver sets a function called after every HTTP attempt,
// delivered or not, e.g. to count attempts per endpoint or keep a delivery
// log receivers can be shown. Publish's results only say whether each event
// reached every endpoint; this says what each endpoint did. It is called
// from the goroutine that made the attempt, so concurrently, for several
// endpoints and events at once, and before Publish returns: it must be safe
// for concurrent use and cheap, since a slow one holds back deliveries.
func WithAttemptObserver(fn func(Attempt)) Option {
	return func(c *config) error {
		if fn == nil {
			return errors.New("WithAttemptObserver: func is nil")
		}
		c.onAttempt = fn
		return nil
	}
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address %q: %w", s, err)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
