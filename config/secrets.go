package config

import (
	"strings"

	"github.com/heraldhq/herald/internal/redact"
)

// secretKeys are the settings whose whole value is a secret: a value that
// fails to load is described by its type only.
var secretKeys = map[string]bool{
	"nats.token": true, "nats.password": true, "http.ingest_token": true, "http.admin_token": true,
	"servicebus.connection_string": true, "webhook.secrets": true,
	"subscriptions.secrets_key": true, "subscriptions.previous_secrets_keys": true,
}

// Secrets returns the secret values the configuration holds: passwords and
// tokens, of its own keys and inside its URLs and DSN, for every
// destination. Whatever Herald shows that did not come from its own
// redaction (a driver's error, a library's log line) is passed through it.
func (c Config) Secrets() *redact.Secrets {
	s := &redact.Secrets{}
	s.AddDSN(c.Database.Driver, c.Database.DSN)
	if portal, ok := c.Enricher.Portal(c.Database); ok {
		s.AddDSN(portal.Driver, portal.DSN)
	}
	s.Add(c.HTTP.IngestToken, c.HTTP.AdminToken, c.Subscriptions.SecretsKey)
	s.Add(c.Subscriptions.PreviousSecretsKeys...)
	s.AddURL(c.Tracing.Endpoint)
	c.Main().addSecrets(s)
	for _, d := range c.Destinations {
		d.addSecrets(s)
	}
	return s
}

// addSecrets adds every adapter block's secrets, selected or not: an
// unselected block's password is no less secret.
func (d Destination) addSecrets(s *redact.Secrets) {
	if d.NATS.URL != "embedded" {
		s.AddURLs(d.NATS.URL)
	}
	s.Add(d.NATS.Token, d.NATS.Password)
	s.AddURL(d.SQS.QueueURL)
	s.AddURL(d.SQS.Endpoint)
	s.Add(d.ServiceBus.ConnectionString)
	s.Add(connectionStringKeys(d.ServiceBus.ConnectionString)...)
	s.AddURL(d.Webhook.URL)
	for _, secret := range d.Webhook.Secrets {
		// The key alone, too: an error may show it without its prefix.
		s.Add(secret, strings.TrimPrefix(secret, "whsec_"))
	}
}

// connectionStringKeys returns the keys of an Azure connection string,
// Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…, which an error
// could show apart from the rest.
func connectionStringKeys(cs string) []string {
	var keys []string
	for part := range strings.SplitSeq(cs, ";") {
		name, value, _ := strings.Cut(part, "=")
		if name = strings.ToLower(strings.TrimSpace(name)); name == "sharedaccesskey" || name == "sharedaccesssignature" {
			keys = append(keys, value)
		}
	}
	return keys
}
