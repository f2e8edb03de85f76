package testservicebus

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Proxy forwards local TCP connections to the peer until Stop, so a test can
// take Service Bus away from the code under test without stopping the peer
// other tests share.
type Proxy struct {
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
	stopped bool
	once    sync.Once
}

// NewProxy starts a proxy to the peer, stopped at cleanup.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	Require(t)
	return ProxyTo(t, Address())
}

// ProxyTo starts a proxy to upstream (host:port), stopped at cleanup: the
// opt-in tests against a real namespace cut their way to Azure with it.
func ProxyTo(t testing.TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln}
	p.wg.Go(func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", upstream, 10*time.Second)
			if err != nil {
				_ = down.Close()
				continue
			}
			p.mu.Lock()
			if p.stopped { // accepted just as Stop ran
				p.mu.Unlock()
				_ = down.Close()
				_ = up.Close()
				return
			}
			p.conns = append(p.conns, down, up)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(up, down); _ = up.Close() })
			p.wg.Go(func() { _, _ = io.Copy(down, up); _ = down.Close() })
		}
	})
	t.Cleanup(p.Stop)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// ConnectionString is the peer's connection string with the proxy as its
// endpoint.
func (p *Proxy) ConnectionString() string {
	parts := strings.Split(ConnectionString(), ";")
	for i, part := range parts {
		if key, _, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(key), "Endpoint") {
			parts[i] = "Endpoint=sb://" + p.Addr()
		}
	}
	return strings.Join(parts, ";")
}

// Stop refuses new connections, cuts the open ones and waits for the
// forwarding goroutines. It is safe to call more than once.
func (p *Proxy) Stop() {
	p.once.Do(func() {
		_ = p.ln.Close()
		p.mu.Lock()
		p.stopped = true
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
}
