package subscriptions

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// Table is where endpoints are stored, created by the outbox migrations
// (0005_webhook_endpoints).
const Table = "herald_webhook_endpoints"

// DestinationPrefix starts the outbox destination of every stored endpoint.
const DestinationPrefix = "webhook:"

// Errors of the Store. Validation errors wrap ErrInvalid and are a
// *FieldError naming the field.
var (
	ErrInvalid  = errors.New("invalid webhook endpoint")
	ErrNotFound = errors.New("no such webhook endpoint")
	ErrExists   = errors.New("webhook endpoint already exists")
)

// FieldError says which field of an endpoint is wrong and why. It never
// quotes a secret or a header value.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes every FieldError an ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Destination returns the outbox destination that serves endpoint name.
func Destination(name string) string { return DestinationPrefix + name }

// NameOf returns the endpoint a destination serves, and false when the
// destination is not a stored endpoint's.
func NameOf(destination string) (string, bool) {
	name, ok := strings.CutPrefix(destination, DestinationPrefix)
	if !ok || name == "" {
		return "", false
	}
	return name, true
}

// Endpoint is one stored subscription.
type Endpoint struct {
	// Name identifies the endpoint: 1 to 64 of a-z 0-9 _ . - starting with
	// a letter or digit. It cannot change.
	Name string `json:"name"`
	// URL receives a signed POST per event; https, or http for a host the
	// operator allowlisted.
	URL string `json:"url"`
	// Types are globs over the CloudEvents type, * matching dots too;
	// empty: every event.
	Types []string `json:"types"`
	// Headers are extra request headers, e.g. an API gateway key. Their
	// values are treated as secrets: [Endpoint.Redacted] hides them.
	Headers map[string]string `json:"headers,omitempty"`
	// Secrets sign each request, newest first; see [Secret].
	Secrets []Secret `json:"secrets"`
	// Enabled endpoints are delivered to. A disabled one still collects
	// its events in the outbox, for when it is enabled again.
	Enabled bool `json:"enabled"`
	// DisabledReason and DisabledAt say why and when it was disabled: a
	// 410 Gone, failing too long, or an operator.
	DisabledReason string    `json:"disabled_reason,omitempty"`
	DisabledAt     time.Time `json:"disabled_at,omitzero"`
	// Revision counts changes to what is delivered, and how.
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Status is what the delivering Herald last recorded.
	Status Status `json:"status"`
}

// Secret is one signing secret. Its value never leaves the process in JSON
// or text form: it marshals as its fingerprint and expiry.
type Secret struct {
	Value string `json:"-"` // "whsec_<base64>"
	// ExpiresAt is when a rotated-out secret stops signing; zero: never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Fingerprint names a secret without revealing it: the first 12 hex digits
// of its SHA-256, enough to tell which secret a receiver holds.
func (s Secret) Fingerprint() string {
	sum := sha256.Sum256([]byte(s.Value))
	return hex.EncodeToString(sum[:6])
}

// String never shows the value.
func (s Secret) String() string { return "secret " + s.Fingerprint() }

// MarshalJSON shows the fingerprint and expiry only.
func (s Secret) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Fingerprint string    `json:"fingerprint"`
		ExpiresAt   time.Time `json:"expires_at,omitzero"`
	}{s.Fingerprint(), s.ExpiresAt})
}

// Status is an endpoint's delivery record, kept by the Herald that serves
// it: enough for an operator to see at a glance whether a receiver is well.
type Status struct {
	LastAttemptAt time.Time `json:"last_attempt_at,omitzero"`
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	// FailingSince is when the current unbroken run of failures began;
	// zero while the last attempt succeeded.
	FailingSince time.Time `json:"failing_since,omitzero"`
	// LastStatusCode is the HTTP status of the last attempt, 0 for none.
	LastStatusCode int    `json:"last_status_code,omitempty"`
	LastError      string `json:"last_error,omitempty"`
	Attempts       int64  `json:"attempts"`
	Failures       int64  `json:"failures"`
}

// Destination returns the outbox destination that serves e.
func (e Endpoint) Destination() string { return Destination(e.Name) }

// ActiveSecrets returns the decoded secrets that sign at now, newest first.
func (e Endpoint) ActiveSecrets(now time.Time) ([][]byte, error) {
	var out [][]byte
	for i, s := range e.Secrets {
		if !s.ExpiresAt.IsZero() && !now.Before(s.ExpiresAt) {
			continue
		}
		b, err := webhooks.ParseSecret(s.Value)
		if err != nil {
			return nil, &FieldError{Field: "secrets", Reason: fmt.Sprintf("entry %d: %v", i+1, err)}
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, &FieldError{Field: "secrets", Reason: "every secret has expired"}
	}
	return out, nil
}

// NextExpiry returns when the next of e's secrets expires after now, zero
// if none does: a running Herald reloads the endpoint then.
func (e Endpoint) NextExpiry(now time.Time) time.Time {
	var next time.Time
	for _, s := range e.Secrets {
		if s.ExpiresAt.After(now) && (next.IsZero() || s.ExpiresAt.Before(next)) {
			next = s.ExpiresAt
		}
	}
	return next
}

// SecretValues are the values a message about e must not quote: its
// header values and its signing secrets, with and without their prefix.
// The URL's credentials and tokens are the redactor's to find (AddURL).
func (e Endpoint) SecretValues() []string {
	out := make([]string, 0, len(e.Headers)+2*len(e.Secrets))
	for _, v := range e.Headers {
		out = append(out, v)
	}
	for _, s := range e.Secrets {
		out = append(out, s.Value, strings.TrimPrefix(s.Value, webhooks.SecretPrefix))
	}
	return out
}

// Redacted returns a copy fit for a listing or a log line: the URL without
// credentials or query, header values hidden. Secrets hide themselves.
func (e Endpoint) Redacted() Endpoint {
	r := e
	r.URL = webhook.RedactURL(e.URL)
	if len(e.Headers) > 0 {
		r.Headers = make(map[string]string, len(e.Headers))
		for k := range e.Headers {
			r.Headers[k] = "(redacted)"
		}
	}
	return r
}

// Webhook returns e as the webhook adapter takes it, signing with the
// secrets active at now.
func (e Endpoint) Webhook(now time.Time) (webhook.Endpoint, error) {
	secrets, err := e.ActiveSecrets(now)
	if err != nil {
		return webhook.Endpoint{}, err
	}
	return webhook.Endpoint{Name: e.Destination(), URL: e.URL, Secrets: secrets, Types: e.Types,
		Headers: e.Headers, Enabled: true}, nil
}

var endpointName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// validate checks what the Store can check alone; the Store's validator
// (WithValidator) adds the delivery rules, e.g. the SSRF guard.
func (e Endpoint) validate() error {
	if !endpointName.MatchString(e.Name) {
		return &FieldError{Field: "name", Reason: fmt.Sprintf("%q: want 1 to 64 of a-z 0-9 _ . - starting with a letter or digit", e.Name)}
	}
	if err := outbox.ValidateDestination(e.Destination()); err != nil {
		return &FieldError{Field: "name", Reason: err.Error()}
	}
	if err := validateURL(e.URL); err != nil {
		return err
	}
	if err := event.ValidateTypeGlobs(e.Types); err != nil {
		return &FieldError{Field: "types", Reason: err.Error()}
	}
	if len(e.Secrets) == 0 {
		return &FieldError{Field: "secrets", Reason: "at least one is required"}
	}
	for i, s := range e.Secrets {
		if _, err := webhooks.ParseSecret(s.Value); err != nil {
			// The reason never quotes the secret.
			return &FieldError{Field: "secrets", Reason: fmt.Sprintf("entry %d: %v", i+1, err)}
		}
	}
	return nil
}

func validateURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return &FieldError{Field: "url", Reason: "is required"}
	case err != nil:
		return &FieldError{Field: "url", Reason: "is not a URL"}
	case u.Scheme != "https" && u.Scheme != "http":
		return &FieldError{Field: "url", Reason: fmt.Sprintf("scheme %q: want https (or http for an allowlisted host)", u.Scheme)}
	case u.Host == "":
		return &FieldError{Field: "url", Reason: "has no host"}
	}
	return nil
}
