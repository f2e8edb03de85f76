package webhook_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/webhook"
)

// Failing to connect at all is the endpoint's fault as a whole, whatever the
// event: the relay pauses the destination instead of spending attempts.
func TestConnectFailuresAreUnavailable(t *testing.T) {
	s := newSecret(t)
	// An https server whose certificate nobody here trusts.
	untrusted := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(untrusted.Close)
	// A plain http server addressed over https: no TLS handshake at all.
	plain := newReceiver(t, [][]byte{s}, nil)
	refused := deadAddr(t)

	for name, url := range map[string]string{
		"refused":        "http://" + refused + "/hook",
		"untrusted cert": untrusted.URL + "/hook",
		"no tls":         strings.Replace(plain.url(), "http://", "https://", 1),
	} {
		t.Run(name, func(t *testing.T) {
			p := mustNew(t, []webhook.Endpoint{{Name: "ep", URL: url, Secrets: [][]byte{s}, Enabled: true}}, loopback())
			res := p.Publish(context.Background(), []adapters.Message{msg("e1", "t", "k"), msg("e2", "t", "k")})
			for i, r := range res {
				if !errors.Is(r.Err, adapters.ErrUnavailable) || errors.Is(r.Err, adapters.ErrPermanent) {
					t.Errorf("message %d: err = %v, want one wrapping adapters.ErrUnavailable, not permanent", i, r.Err)
				}
			}
			if !errors.Is(res[1].Err, webhook.ErrEarlierFailed) {
				t.Errorf("same-key successor: err = %v, want ErrEarlierFailed", res[1].Err)
			}
		})
	}
	if n := len(plain.all()); n != 0 {
		t.Errorf("the plain server answered %d requests", n)
	}
}

// What the transport reports when it could not connect, as errors the
// tests cannot provoke without the network (DNS) or only slowly (timeouts).
func TestConnectFailedClasses(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"no such host", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "hooks.example", IsNotFound: true}}, true},
		{"dns server down", &net.DNSError{Err: "server misbehaving", Name: "hooks.example", IsTemporary: true}, true},
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}, true},
		{"handshake timeout", timeoutErr{}, true},
		{"reset after sending", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}, false},
		{"request deadline", context.DeadlineExceeded, false},
		{"eof", errors.New("EOF"), false},
	} {
		if got := webhook.ConnectFailed(tc.err); got != tc.want {
			t.Errorf("%s: connectFailed(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// timeoutErr is a net.Error that timed out, as the transport's TLS
// handshake timeout is.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "net/http: TLS handshake timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// The SSRF guard refuses at dial time too, but for what the endpoint is:
// that stays permanent and is not an outage.
func TestGuardRefusalIsNotUnavailable(t *testing.T) {
	p := mustNew(t, []webhook.Endpoint{{Name: "inside", URL: "https://127.0.0.1:1/hook", Secrets: [][]byte{newSecret(t)}, Enabled: true}})
	err := p.Publish(context.Background(), []adapters.Message{msg("e", "t", "")})[0].Err
	if !errors.Is(err, webhook.ErrBlockedAddress) || !errors.Is(err, adapters.ErrPermanent) || errors.Is(err, adapters.ErrUnavailable) {
		t.Fatalf("err = %v, want a permanent ErrBlockedAddress, not unavailable", err)
	}
}

// Messages left unsent because the caller gave up carry its error, never
// the destination's.
func TestCancelledIsNotUnavailable(t *testing.T) {
	rc := newReceiver(t, [][]byte{newSecret(t)}, nil)
	p := mustNew(t, []webhook.Endpoint{endpointFor("ep", rc)}, loopback())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i, r := range p.Publish(ctx, []adapters.Message{msg("e1", "t", "k"), msg("e2", "t", "k"), msg("e3", "t", "")}) {
		if !errors.Is(r.Err, context.Canceled) || errors.Is(r.Err, adapters.ErrUnavailable) {
			t.Errorf("message %d: err = %v, want context.Canceled, not unavailable", i, r.Err)
		}
	}
}

// deadAddr returns a local address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
