package webhooks_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/webhooks"
)

// TestVerifyRecipes runs the Python and Node verification recipes shipped in
// docs/examples against requests signed by Sign, so the documentation cannot
// drift from what Herald sends.
func TestVerifyRecipes(t *testing.T) {
	examples := filepath.Join("..", "..", "docs", "examples")
	recipes := []struct {
		name, interpreter, script string
	}{
		{"python", "/usr/bin/python3", "webhook_verify.py"},
		{"node", "node", "webhook_verify.mjs"},
	}
	for _, r := range recipes {
		t.Run(r.name, func(t *testing.T) {
			interp, err := exec.LookPath(r.interpreter)
			if err != nil {
				if os.Getenv("HERALD_REQUIRE_SERVICES") == "1" {
					t.Fatalf("%s not found and HERALD_REQUIRE_SERVICES=1: %v", r.interpreter, err)
				}
				t.Skipf("%s not found: %v", r.interpreter, err)
			}
			script := filepath.Join(examples, r.script)
			runRecipeCases(t, interp, script)
		})
	}
}

func runRecipeCases(t *testing.T, interp, script string) {
	oldSecret, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	newSecretS, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	oldB, newB := mustSecret(t, oldSecret), mustSecret(t, newSecretS)
	id := "0190b6a5-7c1e-7aa0-8f53-2d1b9e0c4f11"
	// Non-ASCII and a trailing newline: the recipe must sign the raw bytes.
	body := []byte(`{"specversion":"1.0","id":"` + id + `","data":{"name":"h\u00e9llo ✓"}}` + "\n")
	now := time.Now()
	sig := webhooks.SignAll([][]byte{newB, oldB}, id, now, body)
	stale := now.Add(-10 * time.Minute)

	tests := []struct {
		name      string
		secretEnv bool
		secret    string
		ts        time.Time
		sig       string
		body      []byte
		valid     bool
	}{
		{"valid with the old secret", false, oldSecret, now, sig, body, true},
		{"valid with the new secret from the environment", true, newSecretS, now, sig, body, true},
		{"tampered body", false, oldSecret, now, sig, append(bytes.Clone(body[:len(body)-1]), ' ', '\n'), false},
		{"replayed: stale timestamp", false, oldSecret, stale, webhooks.Sign(oldB, id, stale, body), body, false},
		{"wrong secret", false, mustFormat(t), now, sig, body, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{script, "--id", id, "--timestamp", strconv.FormatInt(tt.ts.Unix(), 10), "--signature", tt.sig}
			cmd := exec.Command(interp, args...)
			cmd.Env = append(os.Environ(), "WEBHOOK_SECRET=")
			if tt.secretEnv {
				cmd.Env = append(cmd.Env, "WEBHOOK_SECRET="+tt.secret)
			} else {
				cmd.Args = append(cmd.Args, "--secret", tt.secret)
			}
			cmd.Stdin = bytes.NewReader(tt.body)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			switch {
			case tt.valid && err != nil:
				t.Fatalf("want exit 0, got %v: %s", err, out)
			case !tt.valid && err == nil:
				t.Fatalf("want a non-zero exit, got 0: %s", out)
			case !tt.valid && (!errors.As(err, &exit) || exit.ExitCode() != 1):
				// 1 is "invalid"; anything else (2: usage) is the test's fault.
				t.Fatalf("want exit 1 (invalid), got %v: %s", err, out)
			}
		})
	}
}

func mustFormat(t *testing.T) string {
	t.Helper()
	s, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
