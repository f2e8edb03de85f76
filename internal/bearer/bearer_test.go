package bearer_test

import (
	"net/http"
	"testing"

	"github.com/heraldhq/herald/internal/bearer"
)

func TestAuthorized(t *testing.T) {
	tok := bearer.New("s3cret-token-0123456789")
	for _, tc := range []struct {
		name, header string
		want         bool
	}{
		{"the token", "Bearer s3cret-token-0123456789", true},
		{"scheme in any case", "bearer s3cret-token-0123456789", true},
		{"white space around the token", "Bearer  s3cret-token-0123456789 ", true},
		{"no header", "", false},
		{"another scheme", "Basic s3cret-token-0123456789", false},
		{"no scheme", "s3cret-token-0123456789", false},
		{"a prefix of the token", "Bearer s3cret-token-012345678", false},
		{"the token and more", "Bearer s3cret-token-0123456789x", false},
		{"empty token", "Bearer ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			if got := tok.Authorized(r); got != tc.want {
				t.Errorf("Authorized(%q) = %v, want %v", tc.header, got, tc.want)
			}
		})
	}
}
