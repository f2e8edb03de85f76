// Package bearer checks the static tokens that guard Herald's HTTP
// endpoints: the audit-record ingest, the admin API, the delivery log and
// the console's sign-in. One rule for all of them, so that a token accepted
// by one is accepted the same way by the others: the presented value is
// trimmed of surrounding white space, and compared by its SHA-256 against
// the configured token's, in constant time whatever its length.
package bearer

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Token is a configured token, kept only as its hash.
type Token struct{ sum [sha256.Size]byte }

// New keeps token for comparisons.
func New(token string) Token { return Token{sum: sha256.Sum256([]byte(token))} }

// Matches reports whether got, trimmed, is the token.
func (t Token) Matches(got string) bool {
	sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
	return subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1
}

// Authorized reports whether r carries "Authorization: Bearer <token>"; the
// scheme's case does not matter (RFC 9110 makes it case-insensitive).
func (t Token) Authorized(r *http.Request) bool {
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && t.Matches(got)
}
