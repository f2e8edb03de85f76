package subscriptions_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/subscriptions"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// Fixed secrets keys (subscriptions.secrets_key), so that a test can look
// for them in output; each is 32 bytes in base64.
const (
	keyOne   = "XI83WkSVvoWO1NOiqjCb0f/mMIQ9BKHO4DgiY7Bnw/Q="
	keyTwo   = "YauWDKm/usVvTk9S5Olt/RGKTJ7ulcVErkE/L90sbKs="
	keyThree = "wADgWXc9KIui7fZlMK19AuWlWLLv+RV6adlVTxsjNTs="
)

// testKeyring seals under current and opens with previous too.
func testKeyring(t testing.TB, current string, previous ...string) *subscriptions.Keyring {
	t.Helper()
	parse := func(s string) []byte {
		b, err := subscriptions.ParseSecretsKey(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var prev [][]byte
	for _, p := range previous {
		prev = append(prev, parse(p))
	}
	k, err := subscriptions.NewKeyring(parse(current), prev...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// storeWith is a Store over f's database with opts (and f's clock).
func (f fixture) storeWith(opts ...subscriptions.Option) *subscriptions.Store {
	return subscriptions.NewStore(f.db.Gorm, f.ob, append([]subscriptions.Option{subscriptions.WithClock(f.clock.Now)}, opts...)...)
}

// rawRow is a row of the endpoints table as plain SQL reads it.
type rawRow struct {
	Name      string
	URL       string
	Secrets   string
	Revision  int64
	UpdatedAt int64
}

// rawRows reads the whole table with plain SQL, by name.
func (f fixture) rawRows(t *testing.T) []rawRow {
	t.Helper()
	var rows []rawRow
	if err := f.db.Gorm.Raw(`SELECT name, url, secrets, revision, updated_at FROM ` + subscriptions.Table + ` ORDER BY name`).
		Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	return rows
}

func (f fixture) setColumn(t *testing.T, name, column string) {
	t.Helper()
	if err := f.db.Gorm.Exec(`UPDATE `+subscriptions.Table+` SET secrets = ? WHERE name = ?`, column, name).Error; err != nil {
		t.Fatal(err)
	}
}

var envelope = regexp.MustCompile(`^v1:([0-9a-f]{8}):([A-Za-z0-9+/]+=*)$`)

// sealedKey returns the key id a column is sealed under, failing the test
// if it is not a v1 envelope, or shows any of secrets: as they are,
// without their prefix, or inside the decoded payload.
func sealedKey(t *testing.T, name, column string, secrets ...string) string {
	t.Helper()
	m := envelope.FindStringSubmatch(column)
	if m == nil {
		t.Fatalf("endpoint %s: column secrets %q is not a v1 envelope", name, column)
	}
	payload, err := base64.StdEncoding.DecodeString(m[2])
	if err != nil {
		t.Fatalf("endpoint %s: payload is not base64: %v", name, err)
	}
	for _, s := range secrets {
		key := strings.TrimPrefix(s, webhooks.SecretPrefix)
		raw, _ := base64.StdEncoding.DecodeString(key)
		for what, v := range map[string]string{"secret": s, "its base64": key, "its bytes": string(raw)} {
			if strings.Contains(column, v) || strings.Contains(string(payload), v) {
				t.Errorf("endpoint %s: column secrets shows the %s", name, what)
			}
		}
	}
	for _, word := range []string{"whsec_", "expires_at", "secret"} {
		if strings.Contains(column, word) || strings.Contains(string(payload), word) {
			t.Errorf("endpoint %s: column secrets shows %q: %s", name, word, column)
		}
	}
	return m[1]
}

func TestParseSecretsKey(t *testing.T) {
	for _, tc := range []struct {
		name, key, err string
	}{
		{"32 bytes", keyOne, ""},
		{"surrounding white space, as a file or a Secret may add", " " + keyOne + "\n", ""},
		{"not base64", "not a key at all, not base64!", "it is not base64"},
		{"16 bytes", "MDEyMzQ1Njc4OWFiY2RlZg==", "got 16 bytes"},
		{"33 bytes", base64.StdEncoding.EncodeToString(make([]byte, 33)), "got 33 bytes"},
		{"empty", "", "got 0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := subscriptions.ParseSecretsKey(tc.key)
			switch {
			case tc.err == "" && (err != nil || len(b) != subscriptions.SecretsKeySize):
				t.Fatalf("ParseSecretsKey = %d bytes, %v", len(b), err)
			case tc.err == "":
				return
			case err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "openssl rand -base64 32"):
				t.Fatalf("ParseSecretsKey = %v, want an error saying %q and how to make a key", err, tc.err)
			case tc.key != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.key)):
				t.Errorf("the error quotes the key: %v", err)
			}
		})
	}
}

func TestNewKeyring(t *testing.T) {
	one, two := testKeyring(t, keyOne), testKeyring(t, keyTwo, keyOne, keyTwo)
	if !regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(one.KeyID()) {
		t.Errorf("KeyID = %q, want 8 hex digits", one.KeyID())
	}
	if again := testKeyring(t, keyOne); again.KeyID() != one.KeyID() {
		t.Errorf("KeyID of the same key = %q then %q, want it stable", one.KeyID(), again.KeyID())
	}
	if two.KeyID() == one.KeyID() {
		t.Error("two keys have the same id")
	}
	if got, want := two.KeyIDs(), []string{two.KeyID(), one.KeyID()}; !reflect.DeepEqual(got, want) {
		t.Errorf("KeyIDs = %v, want %v (current first, the repeated current key once)", got, want)
	}
	if _, err := subscriptions.NewKeyring(make([]byte, 32), make([]byte, 16)); err == nil || !strings.Contains(err.Error(), "previous key 1 is 16 bytes") {
		t.Errorf("NewKeyring with a short previous key = %v", err)
	}
}

// A row read with plain SQL shows no secret, in any form, nor when it
// expires; the Store reads the secrets back, and they still sign.
func TestSecretsAreSealedAtRest(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		f.add(t, subscriptions.Endpoint{Name: "given", URL: "https://a.example/h", Secrets: []subscriptions.Secret{{Value: secretA}}})
		generated := f.add(t, subscriptions.Endpoint{Name: "generated", URL: "https://b.example/h"})
		_, rotated, err := f.store.RotateSecret(ctx, "given", secretB, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		planted := []string{secretA, secretB, rotated.Value, generated.Secrets[0].Value}
		id := testKeyring(t, keyOne).KeyID()
		for _, row := range f.rawRows(t) {
			if got := sealedKey(t, row.Name, row.Secrets, planted...); got != id {
				t.Errorf("endpoint %s sealed under key %s, want %s", row.Name, got, id)
			}
		}

		got := f.get(t, "given")
		if len(got.Secrets) != 2 || got.Secrets[0].Value != secretB || got.Secrets[1].Value != secretA ||
			!got.Secrets[1].ExpiresAt.Equal(stored(f.clock.Now().Add(time.Hour))) {
			t.Errorf("Get(given).Secrets = %+v, want secret B, then A expiring in an hour", got.Secrets)
		}
		if _, err := got.Webhook(f.clock.Now()); err != nil {
			t.Errorf("Webhook() = %v", err)
		}
		if g := f.get(t, generated.Name); g.Secrets[0].Value != generated.Secrets[0].Value {
			t.Error("the generated secret does not read back")
		}
		// Each write seals afresh, with its own nonce: the same secrets
		// never seal to the same text.
		column := f.rawRows(t)[1].Secrets
		url := "https://c.example/h"
		if _, _, err := f.store.Update(ctx, "given", subscriptions.Patch{URL: &url}); err != nil {
			t.Fatal(err)
		}
		if again := f.rawRows(t)[1].Secrets; again == column {
			t.Error("the same secrets sealed twice give the same text")
		}
		if g := f.get(t, "given"); !reflect.DeepEqual(g.Secrets, got.Secrets) {
			t.Errorf("after a re-seal: %v, want %v", g.Secrets, got.Secrets)
		}
		// A router needs no key.
		eps, err := f.storeWith().ListForRouting(ctx)
		if err != nil || len(eps) != 2 || eps[0].Secrets != nil {
			t.Errorf("ListForRouting without a key = %d endpoints, %v", len(eps), err)
		}
	})
}

// A sealed value belongs to its row: copied into another row, changed or
// cut short, it does not open, with an error naming the endpoint and the
// key id and quoting no secret.
func TestSealedSecretsDoNotOpenElsewhere(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		f.add(t, subscriptions.Endpoint{Name: "alpha", URL: "https://a.example/h", Secrets: []subscriptions.Secret{{Value: secretA}}})
		f.add(t, subscriptions.Endpoint{Name: "beta", URL: "https://b.example/h", Secrets: []subscriptions.Secret{{Value: secretB}}})
		alpha := f.rawRows(t)[0].Secrets
		id := testKeyring(t, keyOne).KeyID()
		flipped := []byte(alpha)
		flipped[len(flipped)-3] ^= 1
		for _, tc := range []struct {
			name, column string
			want         error
			says         string
		}{
			{"alpha's value in beta's row", alpha, subscriptions.ErrTampered, id},
			{"a changed byte", string(flipped), subscriptions.ErrTampered, id},
			{"cut short", alpha[:20], subscriptions.ErrTampered, id},
			{"an unknown key id", "v1:0badc0de:" + alpha[12:], subscriptions.ErrUnknownKey, "0badc0de"},
			{"an unknown format", "v9:" + alpha[3:], nil, "neither a JSON list nor sealed"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f.setColumn(t, "beta", tc.column)
				_, err := f.store.Get(ctx, "beta")
				if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
					t.Fatalf("Get(beta) = %v, want %v", err, tc.want)
				}
				for _, want := range []string{`webhook endpoint "beta"`, tc.says} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
				for _, s := range []string{secretA, secretB, keyOne} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q quotes a secret", err)
					}
				}
				if _, err := f.store.List(ctx); err == nil {
					t.Error("List = nil error, want beta's")
				}
			})
		}
	})
}

// reencryptFixture has plaintext rows from before there was a key, and
// rows sealed under keyOne, the key before keyTwo.
func reencryptFixture(t *testing.T, f fixture) map[string][]subscriptions.Secret {
	t.Helper()
	ctx := context.Background()
	want := map[string][]subscriptions.Secret{}
	plain := f.storeWith(subscriptions.WithPlaintextSecrets())
	for _, name := range []string{"legacy-1", "legacy-2"} {
		e, err := plain.Add(ctx, subscriptions.Endpoint{Name: name, URL: "https://a.example/" + name})
		if err != nil {
			t.Fatal(err)
		}
		want[name] = e.Secrets
	}
	for _, name := range []string{"one-a", "one-b", "one-c"} {
		e := f.add(t, subscriptions.Endpoint{Name: name, URL: "https://a.example/" + name})
		if _, s, err := f.store.RotateSecret(ctx, name, "", time.Hour); err != nil {
			t.Fatal(err)
		} else {
			want[name] = []subscriptions.Secret{s, {Value: e.Secrets[0].Value, ExpiresAt: stored(f.clock.Now().Add(time.Hour))}}
		}
	}
	for _, row := range f.rawRows(t) {
		if strings.HasPrefix(row.Name, "legacy") != strings.HasPrefix(row.Secrets, "[") {
			t.Fatalf("fixture: %s's column is %.12q…", row.Name, row.Secrets)
		}
	}
	return want
}

// One command seals the plaintext rows and moves the rows of the previous
// key to the current one, in batches; plain SQL then shows every row under
// the new key, the old key is no longer needed, the secrets are the same,
// and running it again changes nothing.
func TestReencryptSealsEveryRowUnderTheCurrentKey(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		want := reencryptFixture(t, f)
		before := f.rawRows(t)
		rotated := f.storeWith(subscriptions.WithKeyring(testKeyring(t, keyTwo, keyOne)))
		newID, oldID := testKeyring(t, keyTwo).KeyID(), testKeyring(t, keyOne).KeyID()

		dry, err := rotated.Reencrypt(ctx, subscriptions.ReencryptOptions{BatchSize: 2, DryRun: true})
		if err != nil || dry.Sealed != 2 || dry.Resealed != 3 || dry.Current != 0 {
			t.Fatalf("dry run = %+v, %v; want 2 to seal, 3 to re-seal", dry, err)
		}
		if !reflect.DeepEqual(f.rawRows(t), before) {
			t.Fatal("the dry run changed rows")
		}

		res, err := rotated.Reencrypt(ctx, subscriptions.ReencryptOptions{BatchSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		wantRes := subscriptions.Reencrypted{KeyID: newID, Sealed: 2, Resealed: 3, Batches: 3,
			Before: subscriptions.SecretsAtRest{Plaintext: 2, Sealed: map[string]int{oldID: 3}}}
		if !reflect.DeepEqual(res, wantRes) {
			t.Errorf("Reencrypt = %+v, want %+v", res, wantRes)
		}
		after := f.rawRows(t)
		var planted []string
		for _, secrets := range want {
			for _, s := range secrets {
				planted = append(planted, s.Value)
			}
		}
		for i, row := range after {
			if id := sealedKey(t, row.Name, row.Secrets, planted...); id != newID {
				t.Errorf("%s is under key %s after reencrypt, want %s", row.Name, id, newID)
			}
			if row.Revision != before[i].Revision || row.UpdatedAt != before[i].UpdatedAt {
				t.Errorf("%s: revision %d→%d, updated_at changed: running Heralds would reload for nothing",
					row.Name, before[i].Revision, row.Revision)
			}
		}
		// The old key is not needed any more.
		only := f.storeWith(subscriptions.WithKeyring(testKeyring(t, keyTwo)))
		eps, err := only.List(ctx)
		if err != nil {
			t.Fatalf("List with the new key only = %v", err)
		}
		for _, e := range eps {
			if !reflect.DeepEqual(e.Secrets, want[e.Name]) {
				t.Errorf("%s: secrets %v after reencrypt, want %v", e.Name, e.Secrets, want[e.Name])
			}
		}
		// Idempotent.
		again, err := only.Reencrypt(ctx, subscriptions.ReencryptOptions{BatchSize: 2})
		if err != nil || again.Sealed+again.Resealed != 0 || again.Current != 5 || again.Batches != 0 {
			t.Errorf("second Reencrypt = %+v, %v; want 5 left alone", again, err)
		}
		if !reflect.DeepEqual(f.rawRows(t), after) {
			t.Error("the second run changed rows")
		}
	})
}

// A row that does not open stops reencrypt before it writes anything,
// whichever batch the row is in; the error names the endpoint and the key.
func TestReencryptWithAWrongKeyChangesNothing(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		reencryptFixture(t, f)
		oneID := testKeyring(t, keyOne).KeyID()
		for _, tc := range []struct {
			name   string
			keys   *subscriptions.Keyring
			spoil  func(t *testing.T) // before the run; undone after
			want   error
			saying []string
		}{
			{name: "the previous key is missing", keys: testKeyring(t, keyTwo), want: subscriptions.ErrUnknownKey,
				saying: []string{`"one-a"`, `"one-c"`, oneID, testKeyring(t, keyTwo).KeyID(), "subscriptions.previous_secrets_keys"}},
			{name: "an entirely wrong key", keys: testKeyring(t, keyThree, keyTwo), want: subscriptions.ErrUnknownKey,
				saying: []string{`"one-b"`, oneID}},
			{name: "a tampered row in the last batch", keys: testKeyring(t, keyTwo, keyOne), want: subscriptions.ErrTampered,
				spoil: func(t *testing.T) {
					f.setColumn(t, "one-c", f.rawRows(t)[2].Secrets) // one-a's
				},
				saying: []string{`"one-c"`, oneID}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				clean := f.rawRows(t)
				if tc.spoil != nil {
					tc.spoil(t)
					defer f.setColumn(t, "one-c", clean[len(clean)-1].Secrets)
				}
				before := f.rawRows(t)
				store := f.storeWith(subscriptions.WithKeyring(tc.keys))
				_, err := store.Reencrypt(ctx, subscriptions.ReencryptOptions{BatchSize: 1})
				if !errors.Is(err, tc.want) {
					t.Fatalf("Reencrypt = %v, want %v", err, tc.want)
				}
				for _, s := range append(tc.saying, "nothing changed") {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error does not say %s: %v", s, err)
					}
				}
				if got := f.rawRows(t); !reflect.DeepEqual(got, before) {
					t.Errorf("rows changed:\nbefore %+v\nafter  %+v", before, got)
				}
			})
		}
	})
}

// Without a key, a Store refuses to store a new secret (unless allowed to
// keep it in plaintext), and keeps reading and changing the plaintext rows
// it has, so an upgrade breaks nothing.
func TestStoreWithoutAKey(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		allowed := f.storeWith(subscriptions.WithPlaintextSecrets())
		if _, err := allowed.Add(ctx, subscriptions.Endpoint{Name: "legacy", URL: "https://a.example/h", Secrets: []subscriptions.Secret{{Value: secretA}}}); err != nil {
			t.Fatalf("Add with plaintext allowed = %v", err)
		}
		if col := f.rawRows(t)[0].Secrets; !strings.HasPrefix(col, "[") || !strings.Contains(col, secretA) {
			t.Fatalf("plaintext allowed stored %q", col)
		}
		f.add(t, subscriptions.Endpoint{Name: "sealed", URL: "https://a.example/h"})

		keyless := f.storeWith()
		refused := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, subscriptions.ErrPlaintextRefused) {
				t.Errorf("%s = %v, want ErrPlaintextRefused", what, err)
				return
			}
			for _, s := range []string{"subscriptions.secrets_key", "subscriptions.allow_plaintext_secrets"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%s: error %q does not name %s", what, err, s)
				}
			}
			if strings.Contains(err.Error(), secretB) {
				t.Errorf("%s: error quotes the secret", what)
			}
		}
		_, err := keyless.Add(ctx, subscriptions.Endpoint{Name: "new", URL: "https://a.example/h", Secrets: []subscriptions.Secret{{Value: secretB}}})
		refused("Add", err)
		_, _, err = keyless.RotateSecret(ctx, "legacy", secretB, time.Hour)
		refused("RotateSecret", err)
		if _, err := keyless.Get(ctx, "new"); !errors.Is(err, subscriptions.ErrNotFound) {
			t.Errorf("the refused endpoint was stored: %v", err)
		}

		// The plaintext row keeps working.
		if e, err := keyless.Get(ctx, "legacy"); err != nil || e.Secrets[0].Value != secretA {
			t.Errorf("Get(legacy) = %v, %v", e.Secrets, err)
		}
		url := "https://b.example/h"
		if _, _, err := keyless.Update(ctx, "legacy", subscriptions.Patch{URL: &url}); err != nil {
			t.Errorf("Update of a plaintext row's URL = %v", err)
		}
		if _, err := keyless.Disable(ctx, "legacy", "test"); err != nil {
			t.Errorf("Disable = %v", err)
		}
		// A sealed row needs the key, and says which.
		_, err = keyless.Get(ctx, "sealed")
		if !errors.Is(err, subscriptions.ErrUnknownKey) || !strings.Contains(err.Error(), "no key is configured") ||
			!strings.Contains(err.Error(), testKeyring(t, keyOne).KeyID()) {
			t.Errorf("Get(sealed) without a key = %v", err)
		}
		if _, err := keyless.Reencrypt(ctx, subscriptions.ReencryptOptions{}); !errors.Is(err, subscriptions.ErrNoKeyring) {
			t.Errorf("Reencrypt without a key = %v", err)
		}
		// With the key, a change seals the plaintext row.
		if _, _, err := f.store.Update(ctx, "legacy", subscriptions.Patch{URL: &url, Types: &[]string{"io.herald.*"}}); err != nil {
			t.Fatal(err)
		}
		sealedKey(t, "legacy", f.rawRows(t)[0].Secrets, secretA)
	})
}

// The admin API answers a new secret it cannot seal with 503 and what to
// set, not a bare 500.
func TestAdminRefusesNewSecretsWithoutAKey(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		const token = "an-admin-token-of-32-characters!"
		h, err := subscriptions.NewAdminHandler(f.storeWith(), token)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, subscriptions.AdminPrefix,
			strings.NewReader(`{"name": "a", "url": "https://a.example/h", "secret": "`+secretA+`"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.String()
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(body, "subscriptions.secrets_key") || strings.Contains(body, secretA) {
			t.Errorf("POST without a key = %d %s", rec.Code, body)
		}
	})
}
