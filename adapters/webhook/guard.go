package webhook

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"

	"github.com/heraldhq/herald/adapters"
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
		return adapters.Permanent(fmt.Errorf("%w: %s is %s; allowlist it with WithAllowCIDRs if the endpoint is meant to be internal",
			ErrBlockedAddress, ap.Addr(), reason))
	}
	return nil
}

// checkURL validates an endpoint URL: https, or http to an allowlisted host
// name or to an IP literal inside an allowlisted range.
func (g *guard) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("URL %q has no host", redact(u))
	}
	if u.User != nil {
		return nil, fmt.Errorf("URL %q carries credentials; use Endpoint.Headers", redact(u))
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("URL %q has a fragment", redact(u))
	}
	switch u.Scheme {
	case "https":
		return u, nil
	case "http":
		if g.httpAllowed(u.Hostname()) {
			return u, nil
		}
		return nil, fmt.Errorf("URL %q: http is only allowed for hosts given to WithAllowHTTPHosts or IP addresses inside WithAllowCIDRs; use https", redact(u))
	default:
		return nil, fmt.Errorf("URL %q: scheme must be https (or http when allowlisted)", redact(u))
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

// RedactURL shows an endpoint URL for logs, status and events: scheme,
// host and path only, since user info and the query may hold a token.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return redact(u)
}

// redact keeps scheme, host and path: a query string may hold a token.
func redact(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	if u.RawQuery != "" {
		r.RawQuery = "…"
	}
	return r.String()
}

// dialer returns a dialer whose every connection passes the guard.
func (g *guard) dialer() *net.Dialer {
	return &net.Dialer{Timeout: defaultDialTimeout, Control: g.control}
}
