package webhook_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/webhook"
)

// tlsReceiver is an https receiver on 127.0.0.1 and the TLS option that
// trusts its certificate.
func tlsReceiver(t *testing.T) (*httptest.Server, webhook.Option, *atomic.Int32) {
	t.Helper()
	hits := new(atomic.Int32)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	tc := srv.Client().Transport.(*http.Transport).TLSClientConfig
	return srv, webhook.WithTLSConfig(&tls.Config{RootCAs: tc.RootCAs}), hits
}

// https passes the URL check anywhere, but the address is checked when
// dialling: loopback is refused until allowlisted.
func TestGuardRefusesLoopbackAtDial(t *testing.T) {
	srv, trust, hits := tlsReceiver(t)
	ep := webhook.Endpoint{Name: "internal", URL: srv.URL, Secrets: [][]byte{newSecret(t)}, Enabled: true}

	p := mustNew(t, []webhook.Endpoint{ep}, trust)
	err := p.Publish(context.Background(), []adapters.Message{msg("e", "t", "")})[0].Err
	if !errors.Is(err, webhook.ErrBlockedAddress) || !errors.Is(err, adapters.ErrPermanent) {
		t.Fatalf("err = %v, want permanent ErrBlockedAddress", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1 is loopback") {
		t.Errorf("error should say which address and why: %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("refused endpoint was reached %d times", n)
	}
	// Registration refuses what delivery refuses, with the same options.
	if err := webhook.ValidateURL(context.Background(), ep.URL); !errors.Is(err, webhook.ErrBlockedAddress) {
		t.Errorf("ValidateURL(%s) = %v, want ErrBlockedAddress like the delivery", ep.URL, err)
	}

	p = mustNew(t, []webhook.Endpoint{ep}, trust, webhook.WithAllowCIDRs("127.0.0.0/8"))
	if err := p.Publish(context.Background(), []adapters.Message{msg("e", "t", "")})[0].Err; err != nil {
		t.Fatalf("allowlisted: %v", err)
	}
	if err := webhook.ValidateURL(context.Background(), ep.URL, webhook.WithAllowCIDRs("127.0.0.0/8")); err != nil {
		t.Errorf("ValidateURL(%s) allowlisted = %v, want accepted like the delivery", ep.URL, err)
	}
}

// ValidateURL refuses, before any connection, the URLs whose delivery the
// guard would refuse: IP literals by the guard's rules, host names by the
// addresses they resolve to.
func TestValidateURL(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		url    string
		opts   []webhook.Option
		reason string // in the error; "" when accepted
	}{
		{"https://127.0.0.1:8443/hook", nil, "127.0.0.1 is loopback"},
		{"https://[::1]/", nil, "::1 is loopback"},
		{"https://[::ffff:127.0.0.1]/", nil, "is loopback"},
		{"https://localhost:8443/hook", nil, "an address of localhost, is loopback"},
		{"https://0.0.0.0/", nil, "unspecified"},
		{"https://169.254.169.254/latest/meta-data/", nil, "cloud metadata service"},
		{"https://[fd00:ec2::254]/", nil, "cloud metadata service"},
		{"https://100.100.100.200/", nil, "cloud metadata service"},
		{"https://169.254.10.10/", nil, "link-local"},
		{"https://[fe80::1]/", nil, "link-local"},
		{"https://10.0.0.5/", nil, "private or unique-local"},
		{"https://172.16.5.4/", nil, "private or unique-local"},
		{"https://192.168.1.1/", nil, "private or unique-local"},
		{"https://[fc00::1]/", nil, "private or unique-local"},
		{"https://100.64.1.1/", nil, "reserved range 100.64.0.0/10"},
		{"https://[64:ff9b::a9fe:a9fe]/", nil, "reserved range 64:ff9b::/96"},
		{"https://[64:ff9b::7f00:1]/", nil, "reserved range 64:ff9b::/96"},
		{"https://239.1.2.3/", nil, "multicast"},
		{"https://93.184.216.34/hook", nil, ""},
		{"https://[2606:2800:220:1:248:1893:25c8:1946]/", nil, ""},
		// The same allowlist as delivery.
		{"https://127.0.0.1:8443/hook", []webhook.Option{webhook.WithAllowCIDRs("127.0.0.1")}, ""},
		{"https://[::1]/", []webhook.Option{webhook.WithAllowCIDRs("::1")}, ""},
		{"https://10.20.0.7/", []webhook.Option{webhook.WithAllowCIDRs("10.20.0.0/16")}, ""},
		{"https://10.21.0.7/", []webhook.Option{webhook.WithAllowCIDRs("10.20.0.0/16")}, "private or unique-local"},
		{"https://169.254.169.254/", []webhook.Option{webhook.WithAllowCIDRs("169.254.0.0/16")}, "cloud metadata service"},
		{"https://169.254.169.254/", []webhook.Option{webhook.WithAllowCIDRs("169.254.169.254")}, ""},
		// And the static rules of New.
		{"http://93.184.216.34/", nil, "http is only allowed"},
		{"http://10.1.2.3:8080/", []webhook.Option{webhook.WithAllowCIDRs("10.0.0.0/8")}, ""},
		{"http://localhost:8080/", []webhook.Option{webhook.WithAllowHTTPHosts("localhost")}, "an address of localhost, is loopback"},
		{"ftp://93.184.216.34/", nil, "scheme must be https"},
		{"https://user:pw@93.184.216.34/", nil, "carries credentials"},
	} {
		err := webhook.ValidateURL(ctx, tt.url+"?token=do-not-print", tt.opts...)
		switch {
		case tt.reason == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tt.url, err)
		case tt.reason != "" && (err == nil || !strings.Contains(err.Error(), tt.reason)):
			t.Errorf("%s: %v, want refused saying %q", tt.url, err, tt.reason)
		case err != nil && strings.Contains(err.Error(), "do-not-print"):
			t.Errorf("%s: the error quotes the URL's query: %v", tt.url, err)
		}
	}
	if err := webhook.ValidateURL(ctx, "https://93.184.216.34/", webhook.WithAllowCIDRs("10.0.0.0/33")); err == nil {
		t.Error("a bad CIDR option was accepted")
	}
}

// A host name is resolved and its address checked at dial time, whatever
// the name: allowing http for "localhost" does not allow its address.
func TestGuardChecksResolvedAddress(t *testing.T) {
	rc := newReceiver(t, [][]byte{newSecret(t)}, nil)
	u, err := url.Parse(rc.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ep := webhook.Endpoint{Name: "named", URL: "http://localhost:" + u.Port() + "/hook",
		Secrets: rc.secrets, Enabled: true}

	p := mustNew(t, []webhook.Endpoint{ep}, webhook.WithAllowHTTPHosts("localhost"))
	err = p.Publish(context.Background(), []adapters.Message{msg("e", "t", "")})[0].Err
	if !errors.Is(err, webhook.ErrBlockedAddress) || !errors.Is(err, adapters.ErrPermanent) {
		t.Fatalf("err = %v, want permanent ErrBlockedAddress", err)
	}
	if n := len(rc.all()); n != 0 {
		t.Fatalf("refused endpoint received %d requests", n)
	}

	p = mustNew(t, []webhook.Endpoint{ep}, webhook.WithAllowHTTPHosts("localhost"),
		webhook.WithAllowCIDRs("127.0.0.0/8", "::1"))
	if err := p.Publish(context.Background(), []adapters.Message{msg("e", "t", "")})[0].Err; err != nil {
		t.Fatalf("allowlisted: %v", err)
	}
}

// The metadata service stays refused inside an allowlisted link-local
// range. Nothing listens there in the test: the guard refuses before the
// connection is attempted.
func TestGuardRefusesMetadata(t *testing.T) {
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/latest/meta-data/"} {
		ep := webhook.Endpoint{Name: "meta", URL: u, Secrets: [][]byte{newSecret(t)}, Enabled: true}
		p := mustNew(t, []webhook.Endpoint{ep}, webhook.WithAllowCIDRs("169.254.0.0/16", "fd00::/8"))
		err := p.Publish(context.Background(), []adapters.Message{msg("e", "t", "")})[0].Err
		if !errors.Is(err, webhook.ErrBlockedAddress) || !strings.Contains(err.Error(), "metadata") {
			t.Errorf("%s: err = %v, want ErrBlockedAddress naming the metadata service", u, err)
		}
	}
}

func TestGuardHTTPRules(t *testing.T) {
	s := [][]byte{newSecret(t)}
	tests := []struct {
		url  string
		opts []webhook.Option
		ok   bool
	}{
		{"https://hooks.example.com/", nil, true},
		{"http://hooks.example.com/", nil, false},
		{"http://hooks.example.com/", []webhook.Option{webhook.WithAllowHTTPHosts("HOOKS.example.com")}, true},
		{"http://10.1.2.3:8080/", nil, false},
		{"http://10.1.2.3:8080/", []webhook.Option{webhook.WithAllowCIDRs("10.0.0.0/8")}, true},
		{"http://10.1.2.3:8080/", []webhook.Option{webhook.WithAllowCIDRs("192.168.0.0/16")}, false},
		{"http://[fd12::1]/", []webhook.Option{webhook.WithAllowCIDRs("fd12::/16")}, true},
	}
	for _, tt := range tests {
		ep := webhook.Endpoint{Name: "x", URL: tt.url, Secrets: s, Enabled: true}
		p, err := webhook.New([]webhook.Endpoint{ep}, tt.opts...)
		if (err == nil) != tt.ok {
			t.Errorf("New(%s): err = %v, want ok=%v", tt.url, err, tt.ok)
		}
		if p != nil {
			_ = p.Close()
		}
	}
	if _, err := webhook.New(nil, webhook.WithAllowCIDRs("10.0.0.0/33")); err == nil {
		t.Error("bad CIDR accepted")
	}
}
