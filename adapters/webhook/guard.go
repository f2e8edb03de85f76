package webhook

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/internal/redact"
)

// metadataAddrs are cloud instance-metadata services: reaching them from a
// webhook would hand a subscriber the host's cloud credentials. They stay
// refused even inside an allowlisted range; only an allowlist entry naming
// exactly the address lets them through.
func metadataAddrs() [3]netip.Addr {
	return [...]netip.Addr{
		netip.AddrFrom4([4]byte{169, 254, 169, 254}), // AWS, GCP, Azure, OpenStack…
		netip.MustParseAddr("fd00:ec2::254"),         // AWS over IPv6
		netip.AddrFrom4([4]byte{100, 100, 100, 200}), // Alibaba Cloud
	}
}

// extraBlocked are ranges not covered by netip.Addr's predicates that are
// internal in practice.
func extraBlocked() [5]netip.Prefix {
	return [...]netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),     // "this network"; 0.0.0.0 reaches localhost on Linux
		netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT, used inside clouds and by Tailscale
		netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
		netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
		netip.MustParsePrefix("64:ff9b::/96"),  // NAT64: an IPv4 address in disguise
	}
}

// guard decides which resolved addresses a webhook may connect to and which
// endpoint URLs may use plain http.
type guard struct {
	allow     []netip.Prefix
	httpHosts []string // lower-case host names allowed with http
	// lookup resolves a host name for ValidateURL; nil is the resolver the
	// dialer uses, net.DefaultResolver. Tests replace it.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// blockedReason returns why addr may not be dialled, or "" if it may.
func (g *guard) blockedReason(addr netip.Addr) string {
	addr = addr.Unmap()
	if meta := metadataAddrs(); slices.Contains(meta[:], addr) {
		for _, p := range g.allow {
			if p.IsSingleIP() && p.Addr().Unmap() == addr {
				return ""
			}
		}
		return "cloud metadata service"
	}
	for _, p := range g.allow {
		if p.Contains(addr) {
			return ""
		}
	}
	switch {
	case addr.IsLoopback():
		return "loopback"
	case addr.IsLinkLocalUnicast(), addr.IsLinkLocalMulticast():
		return "link-local"
	case addr.IsPrivate():
		return "private or unique-local"
	case addr.IsUnspecified():
		return "unspecified"
	case addr.IsMulticast(), addr.IsInterfaceLocalMulticast():
		return "multicast"
	}
	for _, p := range extraBlocked() {
		if p.Contains(addr) {
			return "reserved range " + p.String()
		}
	}
	return ""
}

// control runs after DNS resolution and before connect, for every address
// the dialer tries: checking here, not when the URL is parsed, means a name
// that resolves to a public address at validation and to an internal one at
// delivery (DNS rebinding) is still refused.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return adapters.Permanent(fmt.Errorf("%w: cannot parse dial address %q (%s)", ErrBlockedAddress, address, network))
	}
	if reason := g.blockedReason(ap.Addr()); reason != "" {
		return adapters.Permanent(refusal(ap.Addr().String(), reason))
	}
	return nil
}

// refusal is the error for an address the guard refuses; what names the
// address as the operator should read it.
func refusal(what, reason string) error {
	return fmt.Errorf("%w: %s is %s; allowlist it with WithAllowCIDRs if the endpoint is meant to be internal",
		ErrBlockedAddress, what, reason)
}

// ValidateURL checks an endpoint URL against the rules a Publisher built
// with opts delivers by, so that a URL delivery would refuse is refused
// when it is registered instead of at every attempt: the static rules of
// New (https, or http to an allowlisted host; no credentials, no fragment)
// and the guard's address rules, with the same WithAllowCIDRs and
// WithAllowHTTPHosts.
//
// An IP-literal host is checked as it is. A host name is resolved, with the
// resolver deliveries use, and refused if any of its addresses is refused:
// which address a delivery dials first is up to the resolver, so a name
// that is partly internal is refused whole; allowlist the internal part if
// it is meant. A name that cannot be resolved now is not refused: delivery
// would fail and retry rather than refuse it, and every connection is
// checked again when dialled, which also catches a name pointed inside
// after it was registered (DNS rebinding).
//
// A refused address wraps ErrBlockedAddress; errors quote the URL without
// its query (RedactURL). When ctx ends during resolution the error wraps
// ctx.Err(): the URL was not checked.
func ValidateURL(ctx context.Context, rawURL string, opts ...Option) error {
	cfg, err := buildConfig(opts)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return cfg.guard.validateURL(ctx, rawURL)
}

func (g *guard) validateURL(ctx context.Context, raw string) error {
	u, err := g.checkURL(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if addr, err := netip.ParseAddr(host); err == nil {
		if reason := g.blockedReason(addr); reason != "" {
			return fmt.Errorf("URL %q: %w", redactedURL(u), refusal(addr.String(), reason))
		}
		return nil
	}
	addrs, err := g.resolve(ctx, host)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("URL %q: resolve %s: %w", redactedURL(u), host, ctx.Err())
		}
		return nil // not refused: see ValidateURL
	}
	for _, a := range addrs {
		if reason := g.blockedReason(a); reason != "" {
			return fmt.Errorf("URL %q: %w", redactedURL(u), refusal(fmt.Sprintf("%s, an address of %s,", a.Unmap(), host), reason))
		}
	}
	return nil
}

// resolve returns host's addresses, giving up after as long as a dial may
// take.
func (g *guard) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, defaultDialTimeout)
	defer cancel()
	if g.lookup != nil {
		return g.lookup(ctx, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// checkURL validates an endpoint URL: https, or http to an allowlisted host
// name or to an IP literal inside an allowlisted range.
func (g *guard) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("URL %q has no host", redactedURL(u))
	}
	if u.User != nil {
		return nil, fmt.Errorf("URL %q carries credentials; use Endpoint.Headers", redactedURL(u))
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("URL %q has a fragment", redactedURL(u))
	}
	switch u.Scheme {
	case "https":
		return u, nil
	case "http":
		if g.httpAllowed(u.Hostname()) {
			return u, nil
		}
		return nil, fmt.Errorf("URL %q: http is only allowed for hosts given to WithAllowHTTPHosts or IP addresses inside WithAllowCIDRs; use https", redactedURL(u))
	default:
		return nil, fmt.Errorf("URL %q: scheme must be https (or http when allowlisted)", redactedURL(u))
	}
}

func (g *guard) httpAllowed(host string) bool {
	if slices.Contains(g.httpHosts, strings.ToLower(host)) {
		return true
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	for _, p := range g.allow {
		if p.Contains(addr.Unmap()) {
			return true
		}
	}
	return false
}

// RedactURL shows an endpoint URL for logs, status and events, with what
// may hold a token (user info, query values, fragment) masked: Herald's one
// redactor, internal/redact.
func RedactURL(raw string) string { return redact.URL(raw) }

// redactedURL is RedactURL of a parsed URL.
func redactedURL(u *url.URL) string { return redact.URL(u.String()) }

// dialer returns a dialer whose every connection passes the guard.
func (g *guard) dialer() *net.Dialer {
	return &net.Dialer{Timeout: defaultDialTimeout, Control: g.control}
}
