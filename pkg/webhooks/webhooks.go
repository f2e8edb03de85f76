package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names, as the specification spells them.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every serialized secret.
const SecretPrefix = "whsec_"

// Secret sizes the specification allows, in bytes.
const (
	MinSecretSize = 24
	MaxSecretSize = 64
)

// DefaultTolerance is how far a timestamp may be from the receiver's clock
// when Verify is given no tolerance: the specification's libraries use 5
// minutes.
const DefaultTolerance = 5 * time.Minute

// signatureVersion identifies an HMAC-SHA256 signature in webhook-signature.
const signatureVersion = "v1"

// Sentinel errors; Verify and ParseSecret wrap them with detail.
var (
	// ErrMissingHeader means webhook-id, webhook-timestamp or
	// webhook-signature is absent or empty.
	ErrMissingHeader = errors.New("webhooks: missing header")
	// ErrInvalidTimestamp means webhook-timestamp is not Unix seconds.
	ErrInvalidTimestamp = errors.New("webhooks: invalid timestamp")
	// ErrTimestampOutOfTolerance means the timestamp is too old (a possible
	// replay) or too far in the future.
	ErrTimestampOutOfTolerance = errors.New("webhooks: timestamp outside tolerance")
	// ErrNoMatchingSignature means no v1 signature in the header matches any
	// of the secrets.
	ErrNoMatchingSignature = errors.New("webhooks: no matching signature")
	// ErrNoSecrets means Verify was given no secret to check against.
	ErrNoSecrets = errors.New("webhooks: no secrets")
	// ErrInvalidSecret means a serialized secret is malformed or of a size
	// the specification does not allow.
	ErrInvalidSecret = errors.New("webhooks: invalid secret")
)

// Sign returns the signature "v1,<base64>" of one request: HMAC-SHA256 with
// secret over id, the timestamp in Unix seconds and body, joined by ".".
func Sign(secret []byte, id string, ts time.Time, body []byte) string {
	return signatureVersion + "," + base64.StdEncoding.EncodeToString(mac(secret, id, ts.Unix(), body))
}

// SignAll returns the webhook-signature header value for a request signed
// with every secret: their signatures, space-separated, in the order given.
// During a rotation, pass the new and the old secret.
func SignAll(secrets [][]byte, id string, ts time.Time, body []byte) string {
	sigs := make([]string, len(secrets))
	for i, s := range secrets {
		sigs[i] = Sign(s, id, ts, body)
	}
	return strings.Join(sigs, " ")
}

// Verify checks a request against the secrets the receiver holds: the
// headers must be present, the timestamp within tolerance of now (either
// way), and at least one v1 signature in webhook-signature must match one
// secret. Signatures of other versions are ignored. A tolerance of zero or
// less means DefaultTolerance.
//
// Comparison is constant-time. body must be the raw request body. Verify
// does not remember ids: to drop a redelivered event the receiver keeps the
// webhook-id values it has processed, for at least the tolerance.
func Verify(secrets [][]byte, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if len(secrets) == 0 {
		return ErrNoSecrets
	}
	id := header.Get(HeaderID)
	tsText := header.Get(HeaderTimestamp)
	sigs := header.Get(HeaderSignature)
	for _, h := range [...]struct{ name, value string }{
		{HeaderID, id}, {HeaderTimestamp, tsText}, {HeaderSignature, sigs},
	} {
		if h.value == "" {
			return fmt.Errorf("%w: %s", ErrMissingHeader, h.name)
		}
	}
	ts, err := parseTimestamp(tsText)
	if err != nil {
		return err
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp %d is %s from now, tolerance %s",
			ErrTimestampOutOfTolerance, ts, d.Round(time.Second), tolerance)
	}
	expected := make([][]byte, len(secrets))
	for i, s := range secrets {
		expected[i] = mac(s, id, ts, body)
	}
	for _, sig := range strings.Fields(sigs) {
		version, encoded, ok := strings.Cut(sig, ",")
		if !ok || version != signatureVersion {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			continue
		}
		for _, want := range expected {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrNoMatchingSignature
}

// ParseSecret decodes a serialized secret "whsec_<base64>".
func ParseSecret(s string) ([]byte, error) {
	encoded, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: must start with %q", ErrInvalidSecret, SecretPrefix)
	}
	secret, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		// The decoder's error names the offending byte offset only.
		return nil, fmt.Errorf("%w: not base64: %w", ErrInvalidSecret, err)
	}
	if len(secret) < MinSecretSize || len(secret) > MaxSecretSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d to %d", ErrInvalidSecret, len(secret), MinSecretSize, MaxSecretSize)
	}
	return secret, nil
}

// ParseSecrets decodes a list of serialized secrets, such as an endpoint's
// current and previous secret during a rotation. An error names the entry
// by position, never by value.
func ParseSecrets(list []string) ([][]byte, error) {
	secrets := make([][]byte, len(list))
	for i, s := range list {
		b, err := ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		secrets[i] = b
	}
	return secrets, nil
}

// FormatSecret serializes a secret as "whsec_<base64>".
func FormatSecret(secret []byte) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(secret)
}

// NewSecret returns a fresh random 32-byte secret, serialized.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webhooks: new secret: %w", err)
	}
	return FormatSecret(b), nil
}

// parseTimestamp accepts decimal digits only: strconv alone would also take
// a sign, which a sender never writes.
func parseTimestamp(s string) (int64, error) {
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q", ErrInvalidTimestamp, s)
		}
	}
	ts, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrInvalidTimestamp, s)
	}
	return ts, nil
}

func mac(secret []byte, id string, unix int64, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, unix, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}
