package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/config"
)

// TestLeaseDoesNotBoundAPublish: relays renew their leases every lease/3
// while they publish, so a lease shorter than an ack or request timeout is
// valid, for the main adapter and for every destination.
func TestLeaseDoesNotBoundAPublish(t *testing.T) {
	c := config.Default()
	c.Relay.Lease = time.Second
	c.NATS.AckTimeout = time.Minute
	hook := partnerHook()
	hook.Webhook.Timeout = time.Minute
	c.Destinations = []config.Destination{hook}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
	if got := config.Default().Relay.Lease; got != 3*time.Second {
		t.Errorf("default relay.lease = %s, want 3s", got)
	}
}

func TestSecretsHidesEveryCredentialOfTheConfig(t *testing.T) {
	c := config.Default()
	c.Database = config.Database{Driver: "postgres", DSN: "host=db user=herald password='db pw 1'"}
	c.NATS.URL = "nats://alice:natsPw2@a:4222,nats://natsTok3n@b:4222"
	c.NATS.User, c.NATS.Password = "bob", "natsPw4"
	c.HTTP = config.HTTP{Listen: ":0", IngestToken: "ingestTok5", AdminToken: "adminToken6-0123456789"}
	c.Tracing.Endpoint = "https://otel:otelPw7@collector:4318"
	c.Enricher.PortalDSN = "postgres://portal:portalPw10@portal-db:5432/portal"
	c.Webhook = config.Webhook{URL: "https://partner.example/h?token=hookTok8", Secrets: []string{testSecret}}
	c.Destinations = []config.Destination{{Name: "bus", Adapter: "servicebus", ServiceBus: config.ServiceBus{
		ConnectionString: "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=sasKey9=", Queue: "q"}}}
	c.Subscriptions.SecretsKey, c.Subscriptions.PreviousSecretsKeys = testSecretsKey, []string{"b2xkLWtleS1vbGQta2V5LW9sZC1rZXktb2xkLWtleSE="}
	planted := []string{testSecretsKey, "b2xkLWtleS1vbGQta2V5LW9sZC1rZXktb2xkLWtleSE=", "db pw 1", "natsPw2", "natsTok3n", "natsPw4", "ingestTok5", "adminToken6-0123456789", "otelPw7",
		"hookTok8", testSecret, strings.TrimPrefix(testSecret, "whsec_"), "sasKey9=", "portalPw10"}
	s := c.Secrets()
	for _, secret := range planted {
		if got := s.Text("error: " + secret + "."); got != "error: xxxxx." {
			t.Errorf("Secrets().Text shows %q as %q", secret, got)
		}
	}
	if got := s.Text("user=herald host=db bob alice"); got != "user=herald host=db bob alice" {
		t.Errorf("Secrets().Text hid what is not a secret: %q", got)
	}
}
