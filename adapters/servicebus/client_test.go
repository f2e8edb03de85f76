package servicebus

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

// These tests drive the real SDK client, through the exported constructors,
// as far as this machine allows without Service Bus: to a port where nothing
// listens, and to RabbitMQ, a real AMQP 1.0 peer that stops the client at the
// claims-based-authorisation step Service Bus adds on top of AMQP.

var quiet = WithLogger(slog.New(slog.DiscardHandler))

// requireGoroutinesBack waits for the goroutine count to fall back to
// before: whatever the client started must end once the constructor gave up.
func requireGoroutinesBack(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left running, %d before:\n%s",
				runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnectUnreachableNamespace(t *testing.T) {
	before := runtime.NumGoroutine()
	addr := deadAddr(t)
	start := time.Now()
	// Default retry options: the boot error must come in seconds.
	_, err := NewFromConnectionString(t.Context(),
		"Endpoint=sb://"+addr+";SharedAccessKeyName=herald;SharedAccessKey=not-a-secret;UseDevelopmentEmulator=true",
		"orders", quiet)
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("gave up after %s", took)
	}
	var sbErr *azservicebus.Error
	if !errors.As(err, &sbErr) || sbErr.Code != azservicebus.CodeConnectionLost {
		t.Fatalf("err = %v, want an *azservicebus.Error with CodeConnectionLost", err)
	}
	if msg := err.Error(); !strings.Contains(msg, addr+"/orders") || strings.Contains(msg, "not-a-secret") {
		t.Errorf("error %q should name %s/orders and never the key", msg, addr)
	}
	requireGoroutinesBack(t, before)
}

func TestConnectToAMQPPeerWithoutClaimsAuth(t *testing.T) {
	dialBroker(t) // skips (or fails in CI) without RabbitMQ's AMQP 1.0
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := NewFromConnectionString(ctx,
		"Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=guest;SharedAccessKey=guest;UseDevelopmentEmulator=true",
		"herald.sb.probe", quiet)
	// RabbitMQ accepts the connection and links but never answers the
	// put-token request on $cbs, so only ctx ends the wait.
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the caller's deadline", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("returned %s after the start; the deadline was 1.5s", took)
	}
	requireGoroutinesBack(t, before)
}

// noCredential fails every token request; the tests below never get that far.
type noCredential struct{}

func (noCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errors.New("no token in tests")
}

func TestConstructorsCheckArguments(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		open func() (*Publisher, error)
		want string
	}{
		{"empty connection string", func() (*Publisher, error) {
			return NewFromConnectionString(ctx, "", "q")
		}, "connection string is empty"},
		{"no entity", func() (*Publisher, error) {
			return NewFromConnectionString(ctx, "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s", "")
		}, "queue or topic name is required"},
		{"malformed connection string", func() (*Publisher, error) {
			return NewFromConnectionString(ctx, "SharedAccessKey=s3cr3t", "q")
		}, "servicebus: connection string:"},
		{"bad option", func() (*Publisher, error) {
			return NewFromConnectionString(ctx, "Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=s", "q", WithLogger(nil))
		}, "WithLogger"},
		{"namespace as URL", func() (*Publisher, error) {
			return NewWithCredential(ctx, "sb://ns.servicebus.windows.net/", "q", noCredential{})
		}, "want a host name"},
		{"no credential", func() (*Publisher, error) {
			return NewWithCredential(ctx, "ns.servicebus.windows.net", "q", nil)
		}, "credential is nil"},
		{"no entity with credential", func() (*Publisher, error) {
			return NewWithCredential(ctx, "ns.servicebus.windows.net", "", noCredential{})
		}, "queue or topic name is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.open()
			if err == nil {
				_ = p.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error %q shows the key", err)
			}
		})
	}
}
