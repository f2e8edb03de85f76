package app_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/testlog"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/subscriptions"
	"github.com/heraldhq/herald/pkg/webhooks"
)

const otherSecretsKey = "YauWDKm/usVvTk9S5Olt/RGKTJ7ulcVErkE/L90sbKs="

// openLogged opens Herald with cfg, logging into a buffer; the caller
// closes it.
func openLogged(t *testing.T, cfg config.Config) (*app.App, *testlog.Buffer, error) {
	t.Helper()
	logs := &testlog.Buffer{}
	a, err := app.Open(context.Background(), cfg, app.Options{Migrate: true,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	return a, logs, err
}

// A key rotation as an operator does it: the new key current and the old
// one previous, reencrypt, then the new key alone. Serve refuses to start
// on a key that opens no row, naming the endpoint and the key, and
// delivers signed with the very secret the receiver holds after the
// rotation.
func TestServeAcrossASecretsKeyRotation(t *testing.T) {
	ctx := context.Background()
	rc := newReceiver(http.StatusNoContent)
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	encoded, _ := webhooks.NewSecret()
	secret, _ := webhooks.ParseSecret(encoded)
	rc.secrets = [][]byte{secret}

	cfg := testConfig(t)
	cfg.Subscriptions.AllowCIDRs = []string{"127.0.0.0/8"}
	cfg.Subscriptions.RefreshInterval = 50 * time.Millisecond
	a, _, err := openLogged(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Subscriptions.Add(ctx, subscriptions.Endpoint{Name: "partner", URL: srv.URL, Enabled: true,
		Secrets: []subscriptions.Secret{{Value: encoded}}}); err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	oldID := keyID(t, testSecretsKey)

	// The new key alone, before reencrypt: no start, and why.
	rotated := cfg
	rotated.Subscriptions.SecretsKey = otherSecretsKey
	if a, _, err := openLogged(t, rotated); err == nil {
		_ = a.Close()
		t.Fatal("Open with a key that opens no row succeeded")
	} else if !errors.Is(err, subscriptions.ErrUnknownKey) || !strings.Contains(err.Error(), `"partner"`) ||
		!strings.Contains(err.Error(), oldID) || strings.Contains(err.Error(), otherSecretsKey) {
		t.Fatalf("Open = %v, want ErrUnknownKey naming partner and key %s", err, oldID)
	}

	// With the old key as previous, it starts and says a reencrypt is due.
	rotated.Subscriptions.PreviousSecretsKeys = []string{testSecretsKey}
	a, logs, err := openLogged(t, rotated)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "herald webhooks reencrypt") {
		t.Errorf("no hint to re-encrypt in the log:\n%s", logs.String())
	}
	store, err := app.SubscriptionStore(rotated, a.DB)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := store.Reencrypt(ctx, subscriptions.ReencryptOptions{}); err != nil || res.Resealed != 1 {
		t.Fatalf("Reencrypt = %+v, %v", res, err)
	}
	_ = a.Close()

	// The new key alone, after: the receiver verifies what it gets.
	rotated.Subscriptions.PreviousSecretsKeys = nil
	a, err = open(t, rotated)
	if err != nil {
		t.Fatal(err)
	}
	run(t, a)
	ev, _ := event.New("io.herald.test.thing.created", "/test", map[string]int{"n": 1})
	if err := outbox.Write(ctx, a.DB, ev); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the endpoint to receive the event", func() bool { return len(rc.delivered()) == 1 })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.badSigs != 0 {
		t.Errorf("%d requests not signed with the receiver's secret", rc.badSigs)
	}
}

func keyID(t *testing.T, key string) string {
	t.Helper()
	c := config.Default().Subscriptions
	c.SecretsKey = key
	k, err := c.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	return k.KeyID()
}

// Without a key, Herald refuses new secrets unless allowed to store them
// in plaintext, and warns at startup; the plaintext rows it has keep
// delivering.
func TestServeWithoutASecretsKey(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.Subscriptions.SecretsKey = ""
	cfg.Subscriptions.AllowCIDRs = []string{"127.0.0.0/8"}
	for _, tc := range []struct {
		name    string
		allow   bool
		refused bool
		level   string
		warning string
	}{
		{"refused", false, true, "INFO", "adding a webhook endpoint or rotating its secret is refused"},
		{"plaintext allowed", true, false, "WARN", "will be stored unencrypted (subscriptions.allow_plaintext_secrets)"},
		{"plaintext rows", false, true, "WARN", "webhook signing secrets are stored unencrypted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.Subscriptions.AllowPlaintextSecrets = tc.allow
			a, logs, err := openLogged(t, c)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = a.Close() }()
			if !regexp.MustCompile(`level=` + tc.level + ` msg="[^"]*` + regexp.QuoteMeta(tc.warning)).MatchString(logs.String()) {
				t.Errorf("startup log does not say %q at %s:\n%s", tc.warning, tc.level, logs.String())
			}
			_, err = a.Subscriptions.Add(ctx, subscriptions.Endpoint{Name: strings.ReplaceAll(tc.name, " ", "-"), URL: "https://127.0.0.1:1/h"})
			if got := errors.Is(err, subscriptions.ErrPlaintextRefused); got != tc.refused {
				t.Errorf("Add = %v, refused %v, want %v", err, got, tc.refused)
			}
		})
	}
}
