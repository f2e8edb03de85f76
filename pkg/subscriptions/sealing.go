package subscriptions

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Secrets at rest.
//
// What is sealed is the whole secrets column of a row (the JSON list of
// {secret, expires_at}), not each secret within it. Sealing the list
// authenticates all of it: someone who can write the table but holds no
// key can neither make a rotated-out secret sign for ever by clearing its
// expires_at, nor reorder or drop entries unnoticed, and a row shows no
// more than that it has secrets, not how many or when they rotate. One
// value per row also makes the row's state one prefix to look at: a
// column starting with "v1:" is sealed, one starting with "[" is a
// plaintext row from before (or from allow_plaintext_secrets). The expiry
// that sealing hides is shown by `herald webhooks list`.
//
// The envelope is
//
//	v1:<key id>:<base64 of nonce || AES-256-GCM ciphertext and tag>
//
// with a random 96-bit nonce per seal. The key id is derived from the key
// (see [Keyring.KeyID]), so that a row says which key sealed it without
// operators naming keys, and a wrong key is told apart from a tampered
// value. The additional data binds the ciphertext to its endpoint's name
// and to the envelope's version and key id: a sealed value copied into
// another row does not open.

// SecretsKeySize is the size of a secrets key: AES-256.
const SecretsKeySize = 32

// sealVersion starts every sealed column; a later format gets "v2:".
const sealVersion = "v1"

// Errors of sealing. Each is wrapped in an error naming the endpoint and
// the key id, never a secret.
var (
	// ErrUnknownKey: a row is sealed under a key the Store was not
	// given, as current or previous key.
	ErrUnknownKey = errors.New("unknown secrets key")
	// ErrTampered: a row names a key the Store holds, but does not open
	// with it: changed, truncated, or copied from another endpoint.
	ErrTampered = errors.New("sealed secrets do not open")
	// ErrPlaintextRefused: a Store without a key was asked to store a new
	// secret, and was not allowed to store it unencrypted.
	ErrPlaintextRefused = errors.New("refusing to store a webhook signing secret unencrypted: " +
		"set subscriptions.secrets_key (or, knowingly, subscriptions.allow_plaintext_secrets: true)")
)

// ParseSecretsKey decodes a secrets key: 32 random bytes in standard
// base64, as `openssl rand -base64 32` prints them. Its errors never quote
// the value.
func ParseSecretsKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("must be %d bytes in base64, as `openssl rand -base64 %d` prints them (it is not base64)",
			SecretsKeySize, SecretsKeySize)
	}
	if len(b) != SecretsKeySize {
		return nil, fmt.Errorf("must be %d bytes in base64, as `openssl rand -base64 %d` prints them (got %d bytes)",
			SecretsKeySize, SecretsKeySize, len(b))
	}
	return b, nil
}

// Keyring holds the key that seals and the keys that still open: the
// current one, and the previous ones during a rotation until every row is
// sealed again under the current one ([Store.Reencrypt]).
type Keyring struct {
	current string // key id
	keys    map[string]cipher.AEAD
	order   []string // key ids, current first, for error messages
}

// NewKeyring returns the keyring sealing with current and opening with it
// and every previous key. Each key is [SecretsKeySize] bytes; a previous
// key equal to current is ignored.
func NewKeyring(current []byte, previous ...[]byte) (*Keyring, error) {
	k := &Keyring{keys: map[string]cipher.AEAD{}}
	for i, key := range append([][]byte{current}, previous...) {
		if len(key) != SecretsKeySize {
			which := "the current key"
			if i > 0 {
				which = fmt.Sprintf("previous key %d", i)
			}
			return nil, fmt.Errorf("secrets keyring: %s is %d bytes, want %d", which, len(key), SecretsKeySize)
		}
		id := keyID(key)
		if _, dup := k.keys[id]; dup {
			continue
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("secrets keyring: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secrets keyring: %w", err)
		}
		k.keys[id] = aead
		k.order = append(k.order, id)
	}
	k.current = k.order[0]
	return k, nil
}

// KeyID names the key that seals: 8 hex digits of a SHA-256 over the key,
// which tells keys apart without revealing anything usable about them.
func (k *Keyring) KeyID() string { return k.current }

// KeyIDs names every key that opens, the current one first.
func (k *Keyring) KeyIDs() []string { return slices.Clone(k.order) }

var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{8}$`)

func keyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("herald webhook secrets key\x00"), key...))
	return hex.EncodeToString(sum[:4])
}

// additionalData binds a sealed value to its endpoint, and to the
// envelope's version and key id.
func additionalData(version, id, endpoint string) []byte {
	return []byte(Table + ".secrets\x00" + version + "\x00" + id + "\x00" + endpoint)
}

// seal returns plaintext sealed for endpoint under the current key.
func (k *Keyring) seal(endpoint string, plaintext []byte) (string, error) {
	aead := k.keys[k.current]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal secrets of webhook endpoint %q: %w", endpoint, err)
	}
	out := aead.Seal(nonce, nonce, plaintext, additionalData(sealVersion, k.current, endpoint))
	return sealVersion + ":" + k.current + ":" + base64.StdEncoding.EncodeToString(out), nil
}

// envelope is a column's text split into its parts.
type envelope struct {
	version, keyID, payload string
}

// parseEnvelope reports whether column is sealed, and its parts if so.
// Plaintext columns are JSON lists and start with "[".
func parseEnvelope(column string) (envelope, bool) {
	if strings.HasPrefix(strings.TrimSpace(column), "[") {
		return envelope{}, false
	}
	version, rest, _ := strings.Cut(column, ":")
	id, payload, _ := strings.Cut(rest, ":")
	return envelope{version: version, keyID: id, payload: payload}, true
}

// open returns the plaintext of a sealed column of endpoint. k may be nil:
// a Store given no key opens nothing.
func (k *Keyring) open(endpoint string, env envelope) ([]byte, error) {
	// Neither the version nor a malformed key id is quoted: a column that
	// is not an envelope may be anything, a secret too.
	if env.version != sealVersion {
		return nil, fmt.Errorf("webhook endpoint %q: column secrets is neither a JSON list nor sealed in a format this Herald reads", endpoint)
	}
	if !keyIDPattern.MatchString(env.keyID) {
		return nil, fmt.Errorf("webhook endpoint %q: secrets sealed under a malformed key id: %w: changed", endpoint, ErrTampered)
	}
	var aead cipher.AEAD
	var have []string
	if k != nil {
		aead, have = k.keys[env.keyID], k.order
	}
	if aead == nil {
		configured := "no key is configured (subscriptions.secrets_key)"
		if len(have) > 0 {
			configured = "the configured keys are " + strings.Join(have, ", ") +
				" (subscriptions.secrets_key, then subscriptions.previous_secrets_keys)"
		}
		return nil, fmt.Errorf("webhook endpoint %q: secrets sealed under key %s: %w: %s; give the key that sealed it as subscriptions.previous_secrets_keys",
			endpoint, env.keyID, ErrUnknownKey, configured)
	}
	raw, err := base64.StdEncoding.DecodeString(env.payload)
	if err == nil && len(raw) < aead.NonceSize()+aead.Overhead() {
		err = errors.New("too short")
	}
	var plain []byte
	if err == nil {
		n := aead.NonceSize()
		plain, err = aead.Open(nil, raw[:n], raw[n:], additionalData(env.version, env.keyID, endpoint))
	}
	if err != nil {
		// GCM's own error says nothing more; the cause is one of these.
		return nil, fmt.Errorf("webhook endpoint %q: secrets sealed under key %s: %w: changed, or copied from another endpoint",
			endpoint, env.keyID, ErrTampered)
	}
	return plain, nil
}
