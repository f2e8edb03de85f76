package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestBlockedReason(t *testing.T) {
	var none guard
	for _, tt := range []struct {
		addr    string
		blocked bool
	}{
		{"127.0.0.1", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"10.0.0.1", true},
		{"172.16.5.4", true},
		{"192.168.1.1", true},
		{"169.254.169.254", true},
		{"169.254.10.10", true},
		{"fe80::1", true},
		{"fd00:ec2::254", true},
		{"fc00::1", true},
		{"0.0.0.0", true},
		{"100.64.1.1", true},
		{"100.100.100.200", true},
		{"64:ff9b::a9fe:a9fe", true},
		{"224.0.0.1", true},
		{"93.184.216.34", false},
		{"2606:2800:220:1:248:1893:25c8:1946", false},
		{"8.8.8.8", false},
	} {
		if got := none.blockedReason(netip.MustParseAddr(tt.addr)) != ""; got != tt.blocked {
			t.Errorf("%s: blocked = %v, want %v", tt.addr, got, tt.blocked)
		}
	}

	g := guard{allow: []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("10.0.0.0/8")}}
	if g.blockedReason(netip.MustParseAddr("10.9.9.9")) != "" || g.blockedReason(netip.MustParseAddr("169.254.1.1")) != "" {
		t.Error("allowlisted ranges still refused")
	}
	if g.blockedReason(netip.MustParseAddr("169.254.169.254")) == "" {
		t.Error("metadata allowed by a range; only an exact entry may allow it")
	}
	g.allow = append(g.allow, netip.MustParsePrefix("169.254.169.254/32"))
	if g.blockedReason(netip.MustParseAddr("169.254.169.254")) != "" {
		t.Error("metadata refused despite an exact allowlist entry")
	}
}

// fakeLookup resolves names from a table; any other name fails as an
// unknown host does.
func fakeLookup(table map[string][]string) func(context.Context, string) ([]netip.Addr, error) {
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		list, ok := table[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		out := make([]netip.Addr, len(list))
		for i, s := range list {
			out[i] = netip.MustParseAddr(s)
		}
		return out, nil
	}
}

// A host name is refused when any address it resolves to is, and accepted
// when it does not resolve: delivery would retry it, not refuse it.
func TestValidateURLResolvesNames(t *testing.T) {
	lookup := fakeLookup(map[string][]string{
		"public.example":   {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"},
		"mixed.example":    {"93.184.216.34", "10.1.2.3"},
		"mapped.example":   {"::ffff:127.0.0.1"},
		"metadata.example": {"169.254.169.254"},
		"nat64.example":    {"64:ff9b::a9fe:a9fe"},
		"inside.example":   {"10.20.0.7", "fd12::7"},
	})
	for _, tt := range []struct {
		host   string
		allow  []string
		reason string // "" when accepted
	}{
		{"public.example", nil, ""},
		{"unknown.example", nil, ""},
		{"mixed.example", nil, "10.1.2.3, an address of mixed.example, is private or unique-local"},
		{"mapped.example", nil, "127.0.0.1, an address of mapped.example, is loopback"},
		{"metadata.example", nil, "cloud metadata service"},
		{"metadata.example", []string{"169.254.0.0/16"}, "cloud metadata service"},
		{"metadata.example", []string{"169.254.169.254"}, ""},
		{"nat64.example", nil, "reserved range 64:ff9b::/96"},
		{"inside.example", []string{"10.20.0.0/16"}, "fd12::7, an address of inside.example, is private or unique-local"},
		{"inside.example", []string{"10.20.0.0/16", "fd12::/16"}, ""},
	} {
		g := guard{lookup: lookup}
		for _, c := range tt.allow {
			g.allow = append(g.allow, mustPrefix(t, c))
		}
		err := g.validateURL(context.Background(), "https://"+tt.host+"/hook?token=do-not-print")
		switch {
		case tt.reason == "" && err != nil:
			t.Errorf("%s (allow %v): %v, want accepted", tt.host, tt.allow, err)
		case tt.reason != "" && (!errors.Is(err, ErrBlockedAddress) || !strings.Contains(fmt.Sprint(err), tt.reason)):
			t.Errorf("%s (allow %v): %v, want ErrBlockedAddress saying %q", tt.host, tt.allow, err, tt.reason)
		case err != nil && strings.Contains(err.Error(), "do-not-print"):
			t.Errorf("%s: the error quotes the URL's query: %v", tt.host, err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g := guard{lookup: lookup}
	if err := g.validateURL(ctx, "https://public.example/"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled (not checked, so not accepted)", err)
	}
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := parsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
