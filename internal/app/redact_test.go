package app_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/testlog"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/subscriptions"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// A running Herald with a password in its NATS URL, a token in a partner's
// URL, a signing secret in a file and both HTTP tokens shows none of them
// in its logs, its targets, /metrics, /readyz (up and with the broker
// down), or the error of a refused connection.
func TestRunningAppShowsNoPlantedSecret(t *testing.T) {
	ctx := context.Background()
	word := func(prefix string) string {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return prefix + hex.EncodeToString(b[:])
	}
	natsPassword, hookToken := word("natsPw"), word("hookTok")
	ingestToken, adminToken := word("ingestTok"), word("adminTok")
	var key [32]byte
	_, _ = rand.Read(key[:])
	secretsKey := base64.StdEncoding.EncodeToString(key[:])
	storedSecret, _ := webhooks.NewSecret()

	nats, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), Username: "alice", Password: natsPassword, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	nats.Start()
	t.Cleanup(nats.Shutdown)
	if !nats.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	hostPort := strings.TrimPrefix(nats.ClientURL(), "nats://")

	rc := newReceiver(http.StatusNoContent)
	partner := partnerHook(t, rc)
	signingSecret := partner.Webhook.Secrets[0]
	partner.Webhook.URL += "/hook?token=" + hookToken
	partner.Webhook.SecretsFile = filepath.Join(t.TempDir(), "secrets")
	partner.Webhook.Secrets = nil
	if err := os.WriteFile(partner.Webhook.SecretsFile, []byte(signingSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.NATS.URL = "nats://alice:" + natsPassword + "@" + hostPort
	cfg.HTTP = config.HTTP{Listen: "127.0.0.1:0", IngestToken: ingestToken, AdminToken: adminToken}
	cfg.Destinations = []config.Destination{partner}
	cfg.Subscriptions.SecretsKey = secretsKey
	cfg.Subscriptions.AllowCIDRs = []string{"127.0.0.0/8"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	planted := map[string]string{"NATS password": natsPassword, "webhook query token": hookToken,
		"signing secret": signingSecret, "ingest token": ingestToken, "admin token": adminToken,
		"subscriptions.secrets_key": secretsKey, "stored endpoint's secret": storedSecret,
		"stored secret without its prefix": strings.TrimPrefix(storedSecret, webhooks.SecretPrefix)}
	check := func(what, text string) {
		t.Helper()
		for name, secret := range planted {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the %s:\n%s", what, name, text)
			}
		}
	}

	var logs testlog.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.Open(ctx, cfg, app.Options{Migrate: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	if got, want := a.Target(), "nats://alice:xxxxx@"+hostPort; got != want {
		t.Errorf("Target() = %q, want %q", got, want)
	}
	if got := app.Target(partner); !strings.HasSuffix(got, "/hook?token=xxxxx") {
		t.Errorf("partner's Target = %q, want its token masked", got)
	}
	// A stored endpoint, sealed under the key, that takes none of the
	// events: its relay starts and logs.
	if _, err := a.Subscriptions.Add(ctx, subscriptions.Endpoint{Name: "stored", URL: partner.Webhook.URL, Enabled: true,
		Types: []string{"io.herald.never.*"}, Secrets: []subscriptions.Secret{{Value: storedSecret}}}); err != nil {
		t.Fatal(err)
	}
	stop := run(t, a)
	for i := range 3 {
		ev, _ := event.New("io.herald.test.thing.created", "/test", map[string]int{"n": i})
		if err := outbox.Write(ctx, a.DB, ev); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "main and the partner to deliver", func() bool {
		return a.Relay.Stats().Published == 3 && len(rc.delivered()) == 3
	})
	base := "http://" + a.HTTPAddr
	for _, path := range []string{"/metrics", "/readyz", "/healthz", "/v1/webhooks"} {
		_, body := get(t, base+path)
		check("GET "+path, body)
	}
	_, body := postAuditRecord(t, a, "wrong-token", "aaaaaaaa-0000-4000-8000-000000000009", "data_product_updated")
	check("ingest with a wrong token", body)

	nats.Shutdown()
	eventually(t, "not ready while the broker is down", func() bool {
		code, body := get(t, base+"/readyz")
		check("/readyz with the broker down", body)
		return code == http.StatusServiceUnavailable
	})
	stop()
	check("the logs", logs.String())
	if !strings.Contains(logs.String(), "destination=webhook:stored") {
		t.Errorf("the logs say nothing of the stored endpoint, so they prove nothing for it:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "destination=partner") {
		t.Errorf("the logs say nothing of the partner, so they prove nothing:\n%s", logs.String())
	}

	// A refused connection: the error names the server without the password.
	wrong := cfg
	wrong.Database.DSN = filepath.Join(t.TempDir(), "outbox.db")
	wrong.NATS.URL = "nats://alice:" + natsPassword + "@127.0.0.1:1"
	if _, err := app.Open(ctx, wrong, app.Options{Migrate: true, Logger: log}); err == nil {
		t.Fatal("Open with the broker down succeeded")
	} else {
		check("Open's error", err.Error())
	}
}
