package webhook

import (
	"net/netip"
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
