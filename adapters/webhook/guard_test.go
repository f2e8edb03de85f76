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

	p = mustNew(t, []webhook.Endpoint{ep}, trust, webhook.WithAllowCIDRs("127.0.0.0/8"))
	if err := p.Publish(context.Background(), []adapters.Message{msg("e", "t", "")})[0].Err; err != nil {
		t.Fatalf("allowlisted: %v", err)
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
