package webhooks_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/webhooks"
)

// The specification's published test vector (its reference libraries'
// signing test).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustSecret(t *testing.T, s string) []byte {
	t.Helper()
	b, err := webhooks.ParseSecret(s)
	if err != nil {
		t.Fatalf("ParseSecret(%q): %v", s, err)
	}
	return b
}

func newSecret(t *testing.T) []byte {
	t.Helper()
	s, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return mustSecret(t, s)
}

func headers(id string, ts time.Time, sig string) http.Header {
	h := http.Header{}
	h.Set(webhooks.HeaderID, id)
	h.Set(webhooks.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(webhooks.HeaderSignature, sig)
	return h
}

func TestSignTestVector(t *testing.T) {
	secret := mustSecret(t, vectorSecret)
	ts := time.Unix(vectorTimestamp, 0)
	if got := webhooks.Sign(secret, vectorID, ts, []byte(vectorBody)); got != vectorSignature {
		t.Fatalf("Sign = %s, want %s", got, vectorSignature)
	}
	h := headers(vectorID, ts, vectorSignature)
	if err := webhooks.Verify([][]byte{secret}, h, []byte(vectorBody), ts.Add(time.Minute), 0); err != nil {
		t.Fatalf("Verify(test vector): %v", err)
	}
}

func TestVerifyRotation(t *testing.T) {
	oldSecret, newSecretB := newSecret(t), newSecret(t)
	now := time.Now()
	body := []byte(`{"specversion":"1.0","id":"e1"}`)
	sig := webhooks.SignAll([][]byte{newSecretB, oldSecret}, "e1", now, body)
	if n := len(strings.Fields(sig)); n != 2 {
		t.Fatalf("SignAll gave %d signatures, want 2: %q", n, sig)
	}
	h := headers("e1", now, sig)
	for name, secrets := range map[string][][]byte{
		"old only": {oldSecret},
		"new only": {newSecretB},
		"both":     {oldSecret, newSecretB},
	} {
		if err := webhooks.Verify(secrets, h, body, now, time.Minute); err != nil {
			t.Errorf("receiver holding %s: %v", name, err)
		}
	}
	if err := webhooks.Verify([][]byte{newSecret(t)}, h, body, now, time.Minute); !errors.Is(err, webhooks.ErrNoMatchingSignature) {
		t.Errorf("unrelated secret: err = %v, want ErrNoMatchingSignature", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	secret := newSecret(t)
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"a":1}`)
	valid := func() http.Header { return headers("e1", now, webhooks.Sign(secret, "e1", now, body)) }
	tests := []struct {
		name   string
		header func() http.Header
		body   []byte
		now    time.Time
		want   error
	}{
		{"tampered body", valid, []byte(`{"a":2}`), now, webhooks.ErrNoMatchingSignature},
		{"other id", func() http.Header { h := valid(); h.Set(webhooks.HeaderID, "e2"); return h }, body, now, webhooks.ErrNoMatchingSignature},
		{"shifted timestamp", func() http.Header {
			h := valid()
			h.Set(webhooks.HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10))
			return h
		}, body, now, webhooks.ErrNoMatchingSignature},
		{"replayed late", valid, body, now.Add(6 * time.Minute), webhooks.ErrTimestampOutOfTolerance},
		{"from the future", valid, body, now.Add(-6 * time.Minute), webhooks.ErrTimestampOutOfTolerance},
		{"signed timestamp", func() http.Header { h := valid(); h.Set(webhooks.HeaderTimestamp, "+1700000000"); return h }, body, now, webhooks.ErrInvalidTimestamp},
		{"no id", func() http.Header { h := valid(); h.Del(webhooks.HeaderID); return h }, body, now, webhooks.ErrMissingHeader},
		{"no timestamp", func() http.Header { h := valid(); h.Del(webhooks.HeaderTimestamp); return h }, body, now, webhooks.ErrMissingHeader},
		{"no signature", func() http.Header { h := valid(); h.Del(webhooks.HeaderSignature); return h }, body, now, webhooks.ErrMissingHeader},
		{"wrong version", func() http.Header {
			h := valid()
			h.Set(webhooks.HeaderSignature, strings.Replace(h.Get(webhooks.HeaderSignature), "v1,", "v1a,", 1))
			return h
		}, body, now, webhooks.ErrNoMatchingSignature},
		{"garbage signatures", func() http.Header { h := valid(); h.Set(webhooks.HeaderSignature, "v1,%%% v1 ,, v1,"); return h }, body, now, webhooks.ErrNoMatchingSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhooks.Verify([][]byte{secret}, tt.header(), tt.body, tt.now, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if err := webhooks.Verify(nil, valid(), body, now, 0); !errors.Is(err, webhooks.ErrNoSecrets) {
		t.Errorf("no secrets: err = %v, want ErrNoSecrets", err)
	}
}

func TestVerifyAcceptsAnyOfSeveral(t *testing.T) {
	secret := newSecret(t)
	now := time.Now()
	body := []byte("x")
	sig := strings.Join([]string{
		"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
		"v1a,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
		webhooks.Sign(secret, "id", now, body),
	}, " ")
	if err := webhooks.Verify([][]byte{secret}, headers("id", now, sig), body, now, 0); err != nil {
		t.Fatal(err)
	}
}

func TestParseSecret(t *testing.T) {
	for _, bad := range []string{
		"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", // no prefix
		"whsec_not base64!",                // not base64
		"whsec_c2hvcnQ=",                   // 5 bytes
		"whsec_" + strings.Repeat("A", 88), // 66 bytes
	} {
		if _, err := webhooks.ParseSecret(bad); !errors.Is(err, webhooks.ErrInvalidSecret) {
			t.Errorf("ParseSecret(%q): err = %v, want ErrInvalidSecret", bad, err)
		}
	}
	s, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b := mustSecret(t, s)
	if got := webhooks.FormatSecret(b); got != s {
		t.Errorf("FormatSecret(ParseSecret(%q)) = %q", s, got)
	}
}

func TestParseSecretsNamesTheEntryNotTheSecret(t *testing.T) {
	current, _ := webhooks.NewSecret()
	previous, _ := webhooks.NewSecret()
	got, err := webhooks.ParseSecrets([]string{current, previous})
	if err != nil || len(got) != 2 || webhooks.FormatSecret(got[1]) != previous {
		t.Fatalf("ParseSecrets = %d secrets, %v; want both, in order", len(got), err)
	}
	const leaked = "whsec_c2hvcnQ="
	_, err = webhooks.ParseSecrets([]string{current, leaked})
	if !errors.Is(err, webhooks.ErrInvalidSecret) || !strings.HasPrefix(err.Error(), "entry 2: ") || strings.Contains(err.Error(), "c2hvcnQ") {
		t.Errorf("err = %v; want ErrInvalidSecret for entry 2, without the secret", err)
	}
}
