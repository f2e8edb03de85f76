package nats

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embeddedReadyTimeout bounds the wait for an embedded server to accept
// connections; JetStream recovering a large store dir is the slow part.
const embeddedReadyTimeout = 10 * time.Second

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	// StoreDir holds JetStream's files. Required: starting again on the same
	// directory recovers the streams and their messages.
	StoreDir string
	// Host to listen on. Default "127.0.0.1".
	Host string
	// Port to listen on; 0 picks a free port (see EmbeddedServer.Port).
	Port int
}

// EmbeddedServer is a NATS server with JetStream running inside this
// process: the real server code, for the demo and tests, so that Herald runs
// without installing a broker.
type EmbeddedServer struct {
	srv *server.Server
}

// StartEmbedded starts a server and returns once it accepts connections.
// To restart a server, Shutdown it and start again with its Port and the
// same StoreDir.
func StartEmbedded(opts EmbeddedOptions) (*EmbeddedServer, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("nats: embedded server: StoreDir is required")
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	port := opts.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		Host:      opts.Host,
		Port:      port,
		JetStream: true,
		StoreDir:  opts.StoreDir,
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		return nil, fmt.Errorf("nats: embedded server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(embeddedReadyTimeout) {
		shutdown(srv)
		return nil, fmt.Errorf("nats: embedded server on %s:%d not ready after %s (port in use?)",
			opts.Host, opts.Port, embeddedReadyTimeout)
	}
	if !srv.JetStreamEnabled() {
		shutdown(srv)
		return nil, fmt.Errorf("nats: embedded server: JetStream failed to start (store dir %q)", opts.StoreDir)
	}
	return &EmbeddedServer{srv: srv}, nil
}

// ClientURL is the url to give Connect, e.g. "nats://127.0.0.1:4222".
func (e *EmbeddedServer) ClientURL() string {
	return e.srv.ClientURL()
}

// Port is the port the server listens on, also when it was picked at random.
func (e *EmbeddedServer) Port() int {
	if addr, ok := e.srv.Addr().(*net.TCPAddr); ok {
		return addr.Port
	}
	return 0
}

// Shutdown stops the server and returns once it has stopped, so its port
// and store dir can be reused at once. Safe to call more than once.
func (e *EmbeddedServer) Shutdown() {
	shutdown(e.srv)
}

func shutdown(srv *server.Server) {
	srv.Shutdown()
	srv.WaitForShutdown()
}
