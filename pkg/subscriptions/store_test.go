package subscriptions_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/subscriptions"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// Two fixed secrets, so a test can look for their values in error text and
// JSON; fresh ones come from webhooks.NewSecret.
const (
	secretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretB = "whsec_c2Vjb25kLXNlY3JldC1mb3ItaGVyYWxkLXRlc3Rz"
)

const testType = "io.herald.test.thing.created"

// clock is a Store clock a test moves by hand. It starts with sub-millisecond
// digits and outside UTC, so the tests see the Store normalize times.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// stored is how the Store keeps a time: Unix milliseconds, read back in UTC.
func stored(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// fixture is one dialect's fresh database with a Store over it.
type fixture struct {
	db    testdb.DB
	ob    *outbox.Store
	store *subscriptions.Store
	clock *clock
}

// eachDialect runs fn against a fresh, migrated database of every dialect,
// in parallel: each has a database of its own.
func eachDialect(t *testing.T, fn func(t *testing.T, f fixture)) {
	t.Helper()
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			db := testdb.Migrated(t, dialect)
			ob, err := outbox.NewStore(db.Gorm)
			if err != nil {
				t.Fatal(err)
			}
			c := newClock()
			fn(t, fixture{db: db, ob: ob, clock: c,
				store: subscriptions.NewStore(db.Gorm, ob, subscriptions.WithClock(c.Now), subscriptions.WithKeyring(testKeyring(t, keyOne)))})
		})
	}
}

func (f fixture) add(t *testing.T, e subscriptions.Endpoint) subscriptions.Endpoint {
	t.Helper()
	got, err := f.store.Add(context.Background(), e)
	if err != nil {
		t.Fatalf("Add(%s) = %v", e.Name, err)
	}
	return got
}

func (f fixture) get(t *testing.T, name string) subscriptions.Endpoint {
	t.Helper()
	got, err := f.store.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("Get(%s) = %v", name, err)
	}
	return got
}

// write puts n events into the outbox, routed to dests besides main, all
// of one partition key so that replay order matters.
func (f fixture) write(t *testing.T, n int, dests ...string) {
	t.Helper()
	var routes outbox.Routes
	for _, d := range dests {
		routes = append(routes, outbox.Route{Destination: d})
	}
	for i := range n {
		ev, err := event.New(testType, "/test", map[string]int{"n": i}, event.WithPartitionKey("k"))
		if err != nil {
			t.Fatal(err)
		}
		if err := outbox.Write(context.Background(), f.db.Gorm, ev); err != nil {
			t.Fatal(err)
		}
	}
	f.route(t, routes)
}

// route fans the written events out as the main relay does.
func (f fixture) route(t *testing.T, r outbox.Router) {
	t.Helper()
	store, err := outbox.NewStore(f.db.Gorm)
	if err != nil {
		t.Fatal(err)
	}
	for {
		n, err := store.Route(context.Background(), outbox.AllBuckets(), r, 500)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// kill turns every row of dest into a dead letter, as a relay giving up
// would.
func (f fixture) kill(t *testing.T, dest string) {
	t.Helper()
	if err := f.db.Gorm.Exec(`UPDATE herald_outbox SET state = 'dead' WHERE destination = ?`, dest).Error; err != nil {
		t.Fatal(err)
	}
}

func (f fixture) count(t *testing.T, dest string, state outbox.State) int {
	t.Helper()
	n, err := f.ob.Count(context.Background(), outbox.Filter{Destination: dest, State: state})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// canon puts every time of e in the form the Store reads it back in, so
// DeepEqual compares instants, not representations.
func canon(e subscriptions.Endpoint) subscriptions.Endpoint {
	e.DisabledAt, e.CreatedAt, e.UpdatedAt = stored(e.DisabledAt), stored(e.CreatedAt), stored(e.UpdatedAt)
	e.Status.LastAttemptAt, e.Status.LastSuccessAt, e.Status.FailingSince =
		stored(e.Status.LastAttemptAt), stored(e.Status.LastSuccessAt), stored(e.Status.FailingSince)
	e.Secrets = slices.Clone(e.Secrets)
	for i := range e.Secrets {
		e.Secrets[i].ExpiresAt = stored(e.Secrets[i].ExpiresAt)
	}
	return e
}

func assertEndpoint(t *testing.T, what string, got, want subscriptions.Endpoint) {
	t.Helper()
	if g, w := canon(got), canon(want); !reflect.DeepEqual(g, w) {
		// %+v prints secrets by fingerprint only, which is enough to tell
		// them apart.
		t.Errorf("%s =\n%+v\nwant\n%+v", what, g, w)
	}
}

func assertField(t *testing.T, err error, field string, never ...string) {
	t.Helper()
	if !errors.Is(err, subscriptions.ErrInvalid) {
		t.Errorf("error %v is not ErrInvalid", err)
	}
	var fe *subscriptions.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a *FieldError", err)
	}
	if fe.Field != field {
		t.Errorf("FieldError.Field = %q (%v), want %q", fe.Field, err, field)
	}
	for _, s := range never {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q quotes the secret %q", err, s)
		}
	}
}

func TestStoreAdd(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		now := f.clock.Now()

		t.Run("generates a secret", func(t *testing.T) {
			got := f.add(t, subscriptions.Endpoint{Name: "generated", URL: "https://a.example/h", Enabled: true})
			if len(got.Secrets) != 1 || !strings.HasPrefix(got.Secrets[0].Value, webhooks.SecretPrefix) ||
				!got.Secrets[0].ExpiresAt.IsZero() {
				t.Fatalf("Secrets = %v, want one fresh whsec_ secret that never expires", got.Secrets)
			}
			if _, err := webhooks.ParseSecret(got.Secrets[0].Value); err != nil {
				t.Errorf("generated secret does not parse: %v", err)
			}
			if again := f.get(t, "generated"); again.Secrets[0].Value != got.Secrets[0].Value {
				t.Error("Get returns another secret than Add generated")
			}
			other := f.add(t, subscriptions.Endpoint{Name: "generated-2", URL: "https://a.example/h", Enabled: true})
			if other.Secrets[0].Value == got.Secrets[0].Value {
				t.Error("two Adds generated the same secret")
			}
		})

		t.Run("round trip", func(t *testing.T) {
			in := subscriptions.Endpoint{
				Name:    "partner-1.a_b",
				URL:     "https://partner.example/hook?token=t0ps3cret",
				Types:   []string{"io.herald.portal.input_port.*", testType},
				Headers: map[string]string{"X-Api-Key": "key-123", "X-Tenant": "acme"},
				Secrets: []subscriptions.Secret{{Value: secretA}, {Value: secretB, ExpiresAt: now.Add(90*time.Minute + 123456789)}},
				Enabled: true,
				// Set by the Store, whatever the caller says.
				Revision: 42, CreatedAt: now.Add(-time.Hour), Status: subscriptions.Status{Attempts: 9},
			}
			want := in
			want.Revision, want.CreatedAt, want.UpdatedAt, want.Status = 1, now, now, subscriptions.Status{}

			got := f.add(t, in)
			assertEndpoint(t, "Add", got, want)
			if got.CreatedAt.Location() != time.UTC || !got.CreatedAt.Equal(now.Truncate(time.Millisecond)) {
				t.Errorf("CreatedAt = %v, want %v in UTC at millisecond precision", got.CreatedAt, now)
			}
			stored := f.get(t, in.Name)
			if !reflect.DeepEqual(stored, canon(want)) {
				t.Errorf("Get =\n%+v\nwant\n%+v", stored, canon(want))
			}

			list, err := f.store.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range list {
				names = append(names, e.Name)
				if e.Name == in.Name && !reflect.DeepEqual(e, stored) {
					t.Errorf("List entry =\n%+v\nGet =\n%+v", e, stored)
				}
			}
			if !slices.IsSorted(names) || !slices.Contains(names, in.Name) {
				t.Errorf("List names = %v, want sorted and holding %s", names, in.Name)
			}
		})

		t.Run("added disabled", func(t *testing.T) {
			got := f.add(t, subscriptions.Endpoint{Name: "off", URL: "https://a.example/h", Secrets: []subscriptions.Secret{{Value: secretA}}})
			want := subscriptions.Endpoint{Name: "off", URL: "https://a.example/h", Types: []string{}, Secrets: []subscriptions.Secret{{Value: secretA}},
				DisabledReason: "added disabled", DisabledAt: now, Revision: 1, CreatedAt: now, UpdatedAt: now}
			assertEndpoint(t, "Get", f.get(t, "off"), want)
			if got.Enabled || got.DisabledReason != "added disabled" {
				t.Errorf("Add = %+v, want disabled", got)
			}
		})

		t.Run("longest name", func(t *testing.T) {
			f.add(t, subscriptions.Endpoint{Name: strings.Repeat("n", 64), URL: "https://a.example/h", Enabled: true})
		})

		t.Run("duplicate", func(t *testing.T) {
			f.add(t, subscriptions.Endpoint{Name: "dup", URL: "https://a.example/1", Enabled: true})
			_, err := f.store.Add(ctx, subscriptions.Endpoint{Name: "dup", URL: "https://b.example/2", Enabled: true})
			if !errors.Is(err, subscriptions.ErrExists) {
				t.Fatalf("second Add = %v, want ErrExists", err)
			}
			if got := f.get(t, "dup"); got.URL != "https://a.example/1" {
				t.Errorf("the failed Add changed the endpoint: %+v", got)
			}
		})

		t.Run("unknown", func(t *testing.T) {
			if _, err := f.store.Get(ctx, "nobody"); !errors.Is(err, subscriptions.ErrNotFound) {
				t.Errorf("Get(nobody) = %v, want ErrNotFound", err)
			}
		})
	})
}

// TestStoreAddInvalid needs no database to refuse, but runs on one anyway
// to prove nothing is written.
func TestStoreAddInvalid(t *testing.T) {
	short := webhooks.FormatSecret([]byte("only-sixteen-byt"))
	valid := func(mod func(*subscriptions.Endpoint)) subscriptions.Endpoint {
		e := subscriptions.Endpoint{Name: "bad", URL: "https://a.example/h", Types: []string{testType},
			Secrets: []subscriptions.Secret{{Value: secretA}}, Enabled: true}
		mod(&e)
		return e
	}
	tests := []struct {
		name  string
		e     subscriptions.Endpoint
		field string
		never string // a secret the error must not quote
	}{
		{"empty name", valid(func(e *subscriptions.Endpoint) { e.Name = "" }), "name", ""},
		{"upper-case name", valid(func(e *subscriptions.Endpoint) { e.Name = "Partner" }), "name", ""},
		{"name starting with a dash", valid(func(e *subscriptions.Endpoint) { e.Name = "-x" }), "name", ""},
		{"name with a colon", valid(func(e *subscriptions.Endpoint) { e.Name = "a:b" }), "name", ""},
		{"name too long", valid(func(e *subscriptions.Endpoint) { e.Name = strings.Repeat("n", 65) }), "name", ""},
		{"no url", valid(func(e *subscriptions.Endpoint) { e.URL = "" }), "url", ""},
		{"ftp url", valid(func(e *subscriptions.Endpoint) { e.URL = "ftp://a.example/h" }), "url", ""},
		{"url without host", valid(func(e *subscriptions.Endpoint) { e.URL = "https:///h" }), "url", ""},
		{"unparsable url", valid(func(e *subscriptions.Endpoint) { e.URL = "https://a b.example/%zz" }), "url", ""},
		{"malformed glob", valid(func(e *subscriptions.Endpoint) { e.Types = []string{"io.[x"} }), "types", ""},
		{"empty glob", valid(func(e *subscriptions.Endpoint) { e.Types = []string{testType, ""} }), "types", ""},
		{"secret without prefix", valid(func(e *subscriptions.Endpoint) {
			e.Secrets = []subscriptions.Secret{{Value: "hunter2hunter2hunter2hunter2"}}
		}), "secrets", "hunter2hunter2hunter2hunter2"},
		{"secret not base64", valid(func(e *subscriptions.Endpoint) {
			e.Secrets = []subscriptions.Secret{{Value: secretA}, {Value: "whsec_n0t!base64?s3cr3tv4lue"}}
		}), "secrets", "n0t!base64?s3cr3tv4lue"},
		{"secret too short", valid(func(e *subscriptions.Endpoint) { e.Secrets = []subscriptions.Secret{{Value: short}} }),
			"secrets", strings.TrimPrefix(short, webhooks.SecretPrefix)},
		{"every secret expired", valid(func(e *subscriptions.Endpoint) {
			// Expired a second before every fixture's clock starts.
			e.Secrets = []subscriptions.Secret{{Value: secretA, ExpiresAt: newClock().Now().Add(-time.Second)}}
		}), "secrets", strings.TrimPrefix(secretA, webhooks.SecretPrefix)},
	}
	eachDialect(t, func(t *testing.T, f fixture) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := f.store.Add(context.Background(), tt.e)
				if err == nil {
					t.Fatalf("Add(%+v) = nil, want a %s error", tt.e, tt.field)
				}
				assertField(t, err, tt.field, tt.never)
			})
		}
		if list, err := f.store.List(context.Background()); err != nil || len(list) != 0 {
			t.Errorf("List after invalid Adds = %v, %v; want nothing stored", list, err)
		}
	})
}

// TestStoreAddConcurrent: of several processes adding one name at once,
// one wins and the others are told it exists, whichever way the database
// serializes them.
func TestStoreAddConcurrent(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		const n = 4
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, errs[i] = f.store.Add(context.Background(), subscriptions.Endpoint{
					Name: "race", URL: fmt.Sprintf("https://a.example/%d", i), Enabled: true})
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, subscriptions.ErrExists):
				t.Errorf("concurrent Add = %v, want nil or ErrExists", err)
			}
		}
		if won != 1 {
			t.Errorf("%d concurrent Adds succeeded, want 1: %v", won, errs)
		}
	})
}

func TestStoreUpdate(t *testing.T) {
	newURL := "https://b.example/new"
	newTypes := []string{"io.herald.portal.*"}
	newHeaders := map[string]string{"Authorization": "Bearer xyz"}
	tests := []struct {
		name  string
		patch subscriptions.Patch
		want  func(*subscriptions.Endpoint)
	}{
		{"url", subscriptions.Patch{URL: &newURL}, func(e *subscriptions.Endpoint) { e.URL = newURL }},
		{"types", subscriptions.Patch{Types: &newTypes}, func(e *subscriptions.Endpoint) { e.Types = newTypes }},
		{"headers", subscriptions.Patch{Headers: &newHeaders}, func(e *subscriptions.Endpoint) { e.Headers = newHeaders }},
		{"all three", subscriptions.Patch{URL: &newURL, Types: &newTypes, Headers: &newHeaders}, func(e *subscriptions.Endpoint) {
			e.URL, e.Types, e.Headers = newURL, newTypes, newHeaders
		}},
	}
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				name := fmt.Sprintf("update-%d", i)
				before := f.add(t, subscriptions.Endpoint{Name: name, URL: "https://a.example/h", Types: []string{testType},
					Headers: map[string]string{"X-Old": "1"}, Secrets: []subscriptions.Secret{{Value: secretA}}, Enabled: true})
				f.clock.Advance(time.Minute)
				got, replayed, err := f.store.Update(ctx, name, tt.patch)
				if err != nil || replayed != 0 {
					t.Fatalf("Update = %d, %v", replayed, err)
				}
				want := before
				tt.want(&want)
				want.Revision, want.UpdatedAt = 2, f.clock.Now()
				assertEndpoint(t, "Update", got, want)
				assertEndpoint(t, "Get after Update", f.get(t, name), want)
			})
		}

		t.Run("disable", func(t *testing.T) {
			f.add(t, subscriptions.Endpoint{Name: "to-disable", URL: "https://a.example/h", Enabled: true})
			f.clock.Advance(time.Second)
			off := false
			got, _, err := f.store.Update(ctx, "to-disable", subscriptions.Patch{Enabled: &off})
			if err != nil {
				t.Fatal(err)
			}
			stored := f.get(t, "to-disable")
			for _, e := range []subscriptions.Endpoint{got, stored} {
				if e.Enabled || e.DisabledReason != "disabled by an operator" || !e.DisabledAt.Equal(stored.UpdatedAt) ||
					!e.DisabledAt.Equal(f.clock.Now().Truncate(time.Millisecond)) || e.Revision != 2 {
					t.Errorf("disabled endpoint = %+v, want disabled by an operator now at revision 2", e)
				}
			}
			on := true
			got, _, err = f.store.Update(ctx, "to-disable", subscriptions.Patch{Enabled: &on})
			if err != nil {
				t.Fatal(err)
			}
			if !got.Enabled || got.DisabledReason != "" || !got.DisabledAt.IsZero() || got.Revision != 3 {
				t.Errorf("re-enabled endpoint = %+v, want enabled with no reason at revision 3", got)
			}
		})

		t.Run("invalid", func(t *testing.T) {
			f.add(t, subscriptions.Endpoint{Name: "keep", URL: "https://a.example/h", Types: []string{testType}, Enabled: true})
			badTypes, badURL := []string{"io.[x"}, "gopher://a.example"
			for _, c := range []struct {
				patch subscriptions.Patch
				field string
			}{{subscriptions.Patch{Types: &badTypes}, "types"}, {subscriptions.Patch{URL: &badURL}, "url"}} {
				_, _, err := f.store.Update(ctx, "keep", c.patch)
				assertField(t, err, c.field)
			}
			if got := f.get(t, "keep"); got.Revision != 1 || got.URL != "https://a.example/h" || !slices.Equal(got.Types, []string{testType}) {
				t.Errorf("a refused Update changed the endpoint: %+v", got)
			}
		})

		t.Run("unknown", func(t *testing.T) {
			if _, _, err := f.store.Update(ctx, "nobody", subscriptions.Patch{URL: &newURL}); !errors.Is(err, subscriptions.ErrNotFound) {
				t.Errorf("Update(nobody) = %v, want ErrNotFound", err)
			}
			on := true
			if _, _, err := f.store.Update(ctx, "nobody", subscriptions.Patch{Enabled: &on}); !errors.Is(err, subscriptions.ErrNotFound) {
				t.Errorf("Update(nobody, enable) = %v, want ErrNotFound", err)
			}
		})
	})
}

// TestStoreReenableReplays: an endpoint that was disabled has dead letters;
// enabling it must put them back in the queue, and only its own.
func TestStoreReenableReplays(t *testing.T) {
	on, off := true, false
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		f.add(t, subscriptions.Endpoint{Name: "a", URL: "https://a.example/h", Enabled: true})
		f.add(t, subscriptions.Endpoint{Name: "b", URL: "https://b.example/h", Enabled: true})
		a, b := subscriptions.Destination("a"), subscriptions.Destination("b")
		f.write(t, 3, a)
		f.write(t, 2, b)
		// Every destination's rows dead, main too: only a's may come back.
		for _, d := range []string{a, b, outbox.MainDestination} {
			f.kill(t, d)
		}
		others := func(t *testing.T) {
			t.Helper()
			if n := f.count(t, b, outbox.StateDead); n != 2 {
				t.Errorf("%s has %d dead rows, want its 2 untouched", b, n)
			}
			if n := f.count(t, outbox.MainDestination, outbox.StateDead); n != 5 {
				t.Errorf("main has %d dead rows, want its 5 untouched", n)
			}
		}

		t.Run("enabled endpoint is not replayed by Update", func(t *testing.T) {
			_, replayed, err := f.store.Update(ctx, "a", subscriptions.Patch{Enabled: &on})
			if err != nil || replayed != 0 || f.count(t, a, outbox.StateDead) != 3 {
				t.Errorf("Update(enable) of an enabled endpoint = %d, %v; want no replay", replayed, err)
			}
		})

		t.Run("no replay", func(t *testing.T) {
			if _, _, err := f.store.Update(ctx, "a", subscriptions.Patch{Enabled: &off}); err != nil {
				t.Fatal(err)
			}
			got, replayed, err := f.store.Update(ctx, "a", subscriptions.Patch{Enabled: &on, NoReplay: true})
			if err != nil || replayed != 0 || !got.Enabled {
				t.Fatalf("Update(enable, NoReplay) = %+v, %d, %v", got, replayed, err)
			}
			if n := f.count(t, a, outbox.StateDead); n != 3 {
				t.Errorf("NoReplay left %d dead rows, want 3", n)
			}
			others(t)
		})

		t.Run("replay", func(t *testing.T) {
			if _, _, err := f.store.Update(ctx, "a", subscriptions.Patch{Enabled: &off}); err != nil {
				t.Fatal(err)
			}
			got, replayed, err := f.store.Update(ctx, "a", subscriptions.Patch{Enabled: &on})
			if err != nil || !got.Enabled || got.DisabledReason != "" {
				t.Fatalf("Update(enable) = %+v, %v", got, err)
			}
			if replayed != 3 {
				t.Errorf("replayed = %d, want 3", replayed)
			}
			if dead, pending := f.count(t, a, outbox.StateDead), f.count(t, a, outbox.StatePending); dead != 0 || pending != 3 {
				t.Errorf("after replay %s has %d dead, %d pending rows; want 0, 3", a, dead, pending)
			}
			others(t)
		})

		t.Run("Replay", func(t *testing.T) {
			f.kill(t, a)
			n, err := f.store.Replay(ctx, "a")
			if err != nil || n != 3 || f.count(t, a, outbox.StatePending) != 3 {
				t.Errorf("Replay = %d, %v; want 3 rows pending again", n, err)
			}
			others(t)
			if _, err := f.store.Replay(ctx, "nobody"); !errors.Is(err, subscriptions.ErrNotFound) {
				t.Errorf("Replay(nobody) = %v, want ErrNotFound", err)
			}
		})
	})
}

// TestStoreRefusedReenable: an Update that is refused must change
// nothing, its dead letters included, so the operator who reads the error
// and fixes the patch gets the replay, and its count, on the next try.
func TestStoreRefusedReenable(t *testing.T) {
	on, bad := true, "ftp://x"
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		f.add(t, subscriptions.Endpoint{Name: "a", URL: "https://a.example/h"})
		a := subscriptions.Destination("a")
		f.write(t, 3, a)
		f.kill(t, a)
		_, replayed, err := f.store.Update(ctx, "a", subscriptions.Patch{Enabled: &on, URL: &bad})
		var fe *subscriptions.FieldError
		if !errors.As(err, &fe) || fe.Field != "url" || replayed != 0 {
			t.Fatalf("Update = %d replayed, %v; want a url error and nothing replayed", replayed, err)
		}
		if n := f.count(t, a, outbox.StateDead); n != 3 {
			t.Errorf("dead letters after a refused re-enable = %d, want 3", n)
		}
		if _, replayed, err = f.store.Update(ctx, "a", subscriptions.Patch{Enabled: &on}); err != nil || replayed != 3 {
			t.Errorf("the fixed re-enable = %d replayed, %v; want 3", replayed, err)
		}
	})
}

// TestStoreRecordAttemptsMixedWindow: a window can hold a success followed
// by failures (serve flushes every few seconds). The success broke the run
// that an earlier window started, so FailingSince must become the window's
// FirstFailure, the start of the failures after that success.
func TestStoreRecordAttemptsMixedWindow(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		f.add(t, subscriptions.Endpoint{Name: "mixed", URL: "https://a.example/h", Enabled: true})
		t0 := f.clock.Now()
		windows := []subscriptions.Attempts{
			{Attempts: 1, Failures: 1, Last: t0, LastStatusCode: 503, LastError: "503", FirstFailure: t0},
			// t0+1m succeeded, t0+2m failed: the run of t0 is over.
			{Attempts: 2, Failures: 1, Last: t0.Add(2 * time.Minute), LastStatusCode: 503, LastError: "503",
				FirstFailure: t0.Add(2 * time.Minute)},
		}
		for _, w := range windows {
			if err := f.store.RecordAttempts(ctx, "mixed", w); err != nil {
				t.Fatal(err)
			}
		}
		got := f.get(t, "mixed").Status
		if want := stored(t0.Add(2 * time.Minute)); !got.FailingSince.Equal(want) {
			t.Errorf("FailingSince = %v, want %v: the success at t0+1m ended the run that began at t0", got.FailingSince, want)
		}
	})
}

// TestEndpointJSON: an endpoint goes into API answers and log lines as
// JSON or text; no secret value may go with it.
func TestEndpointJSON(t *testing.T) {
	e := subscriptions.Endpoint{
		Name:    "partner",
		URL:     "https://user:p4ssw0rd@partner.example/hook?token=qu3ryt0ken&x=1",
		Types:   []string{testType},
		Headers: map[string]string{"X-Api-Key": "h3ad3rk3y"},
		Secrets: []subscriptions.Secret{{Value: secretA}, {Value: secretB, ExpiresAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}},
		Enabled: true,
	}
	secretParts := []string{secretA, secretB, strings.TrimPrefix(secretA, "whsec_"), strings.TrimPrefix(secretB, "whsec_")}

	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	red, err := json.Marshal(e.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"json": string(raw), "redacted json": string(red),
		"%v": fmt.Sprintf("%v", e), "%+v": fmt.Sprintf("%+v", e), "%s of the secrets": fmt.Sprintf("%s", e.Secrets)} {
		for _, secret := range secretParts {
			if strings.Contains(s, secret) {
				t.Errorf("%s of an endpoint shows a secret: %s", what, s)
			}
		}
		for _, fp := range []string{e.Secrets[0].Fingerprint(), e.Secrets[1].Fingerprint()} {
			if !strings.Contains(s, fp) {
				t.Errorf("%s lacks the fingerprint %s that tells the secrets apart: %s", what, fp, s)
			}
		}
	}
	for _, leak := range []string{"h3ad3rk3y", "qu3ryt0ken", "p4ssw0rd"} {
		if strings.Contains(string(red), leak) {
			t.Errorf("redacted JSON shows %q: %s", leak, red)
		}
	}

	var back struct {
		URL     string
		Headers map[string]string
		Secrets []struct {
			Fingerprint string    `json:"fingerprint"`
			ExpiresAt   time.Time `json:"expires_at"`
		}
	}
	if err := json.Unmarshal(red, &back); err != nil {
		t.Fatal(err)
	}
	if back.URL != "https://user:xxxxx@partner.example/hook?token=xxxxx&x=xxxxx" || back.Headers["X-Api-Key"] != "(redacted)" {
		t.Errorf("redacted URL and headers = %q, %v", back.URL, back.Headers)
	}
	if len(back.Secrets) != 2 || back.Secrets[0].Fingerprint != e.Secrets[0].Fingerprint() ||
		!back.Secrets[1].ExpiresAt.Equal(e.Secrets[1].ExpiresAt) || len(back.Secrets[0].Fingerprint) != 12 {
		t.Errorf("redacted secrets = %+v, want fingerprints and expiries", back.Secrets)
	}
	if e.Headers["X-Api-Key"] != "h3ad3rk3y" || !strings.Contains(e.URL, "qu3ryt0ken") {
		t.Error("Redacted changed the endpoint it copied")
	}
}

func TestEndpointDestination(t *testing.T) {
	if got := (subscriptions.Endpoint{Name: "partner"}).Destination(); got != "webhook:partner" {
		t.Errorf("Destination = %q", got)
	}
	for _, c := range []struct {
		dest string
		name string
		ok   bool
	}{{"webhook:partner", "partner", true}, {"webhook:", "", false}, {"main", "", false}, {"partner", "", false}} {
		// The name is only promised with ok.
		if name, ok := subscriptions.NameOf(c.dest); ok != c.ok || ok && name != c.name {
			t.Errorf("NameOf(%q) = %q, %v; want %q, %v", c.dest, name, ok, c.name, c.ok)
		}
	}
}

func TestRouter(t *testing.T) {
	var r subscriptions.Router
	if got := r.Destinations(testType); len(got) != 0 {
		t.Errorf("zero Router routes %s to %v", testType, got)
	}
	portal := []string{"io.herald.portal.input_port.*"}
	r.Set([]subscriptions.Endpoint{
		{Name: "ports", Types: portal, Enabled: true},
		{Name: "all", Enabled: true},
		// Disabled endpoints collect their events for when they come back.
		{Name: "paused", Types: []string{"io.herald.test.*", "io.herald.portal.input_port.deleted"}},
	})
	portal[0] = "io.herald.nothing" // Set keeps its own copy
	for _, c := range []struct {
		typ  string
		want []string
	}{
		{"io.herald.portal.input_port.created", []string{"webhook:ports", "webhook:all"}},
		{"io.herald.portal.input_port.deleted", []string{"webhook:ports", "webhook:all", "webhook:paused"}},
		{testType, []string{"webhook:all", "webhook:paused"}},
		{"io.herald.portal.output_port.created", []string{"webhook:all"}},
	} {
		if got := r.Destinations(c.typ); !slices.Equal(got, c.want) {
			t.Errorf("Destinations(%s) = %v, want %v", c.typ, got, c.want)
		}
	}
	r.Set(nil)
	if got := r.Destinations(testType); len(got) != 0 {
		t.Errorf("after Set(nil) Destinations = %v", got)
	}
}

// TestRouterRoutes: the Router is what the main relay asks when it fans an
// event out, so an event gets a row for each matching stored endpoint,
// disabled ones included.
func TestRouterRoutes(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		f.add(t, subscriptions.Endpoint{Name: "on", URL: "https://a.example/h", Types: []string{"io.herald.test.*"}, Enabled: true})
		f.add(t, subscriptions.Endpoint{Name: "off", URL: "https://a.example/h"})
		f.add(t, subscriptions.Endpoint{Name: "other", URL: "https://a.example/h", Types: []string{"io.herald.portal.*"}, Enabled: true})
		list, err := f.store.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var r subscriptions.Router
		r.Set(list)
		ev, err := event.New(testType, "/test", map[string]int{"n": 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := outbox.Write(ctx, f.db.Gorm, ev); err != nil {
			t.Fatal(err)
		}
		f.route(t, &r)
		for dest, want := range map[string]int{"main": 1, "webhook:on": 1, "webhook:off": 1, "webhook:other": 0} {
			if got := f.count(t, dest, ""); got != want {
				t.Errorf("%s has %d rows, want %d", dest, got, want)
			}
		}
	})
}

// TestRouterConcurrent: the owner refreshes the snapshot while producers'
// transactions ask it; the race detector checks the locking.
func TestRouterConcurrent(t *testing.T) {
	var r subscriptions.Router
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 100 {
				r.Set([]subscriptions.Endpoint{{Name: fmt.Sprintf("e%d-%d", i, j)}})
				if got := r.Destinations(testType); len(got) != 1 {
					t.Errorf("Destinations = %v, want one endpoint", got)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestStoreConcurrentUpdates: Herald replicas and operators change one
// endpoint at once. Each change either lands whole, counted in Revision,
// or is refused as concurrent; none is lost silently.
func TestStoreConcurrentUpdates(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		f.add(t, subscriptions.Endpoint{Name: "busy", URL: "https://a.example/h", Types: []string{testType}, Enabled: true})
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				types := []string{fmt.Sprintf("io.herald.test.t%d.*", i)}
				_, _, errs[i] = f.store.Update(ctx, "busy", subscriptions.Patch{Types: &types})
			})
		}
		wg.Wait()
		var won []string
		for i, err := range errs {
			switch {
			case err == nil:
				won = append(won, fmt.Sprintf("io.herald.test.t%d.*", i))
			case !strings.Contains(err.Error(), "changed concurrently"):
				t.Errorf("Update #%d = %v, want nil or changed concurrently", i, err)
			}
		}
		t.Logf("%d of %d concurrent updates landed", len(won), n)
		got := f.get(t, "busy")
		if got.Revision != int64(1+len(won)) {
			t.Errorf("Revision = %d after %d successful updates, want %d", got.Revision, len(won), 1+len(won))
		}
		if len(won) == 0 || len(got.Types) != 1 || !slices.Contains(won, got.Types[0]) {
			t.Errorf("Types = %v, want those of one successful update of %v", got.Types, won)
		}
	})
}

// TestStoreWithValidator: the delivery rules serve adds are enforced when
// an endpoint is stored, and reported against the right field.
func TestStoreWithValidator(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		store := subscriptions.NewStore(f.db.Gorm, f.ob, subscriptions.WithClock(f.clock.Now), subscriptions.WithKeyring(testKeyring(t, keyOne)),
			subscriptions.WithValidator(subscriptions.Validator(webhook.WithAllowHTTPHosts("hooks.internal"))))
		if _, err := store.Add(ctx, subscriptions.Endpoint{Name: "internal", URL: "http://hooks.internal/h", Enabled: true}); err != nil {
			t.Fatalf("Add of an allowlisted http URL = %v", err)
		}
		for _, c := range []struct {
			name  string
			e     subscriptions.Endpoint
			field string
			never string
		}{
			{"http not allowlisted", subscriptions.Endpoint{Name: "v1", URL: "http://elsewhere.example/h"}, "url", ""},
			{"credentials in the URL", subscriptions.Endpoint{Name: "v2", URL: "https://user:p4ssw0rd@a.example/h"}, "url", "p4ssw0rd"},
			{"reserved header", subscriptions.Endpoint{Name: "v3", URL: "https://a.example/h",
				Headers: map[string]string{"Content-Type": "h3ad3rv4lue"}}, "headers", "h3ad3rv4lue"},
			{"header value with a line break", subscriptions.Endpoint{Name: "v4", URL: "https://a.example/h",
				Headers: map[string]string{"X-Key": "h3ad3r\r\nv4lue"}}, "headers", "h3ad3r"},
		} {
			t.Run(c.name, func(t *testing.T) {
				_, err := store.Add(ctx, c.e)
				if err == nil {
					t.Fatal("Add = nil, want an error")
				}
				assertField(t, err, c.field, c.never)
			})
		}
		// Update goes through the same rules.
		bad := "http://elsewhere.example/h"
		_, _, err := store.Update(ctx, "internal", subscriptions.Patch{URL: &bad})
		assertField(t, err, "url")
	})
}

// TestStoreValidatorOnDeliveryChanges: the validator runs when an endpoint
// would be delivered to differently (a new URL, types or headers, enabled
// again), not when it is only disabled or its secret rotated, so an
// operator can always stop deliveries to an endpoint whose URL has since
// been refused (here: the allowlist that let it in was removed).
func TestStoreValidatorOnDeliveryChanges(t *testing.T) {
	eachDialect(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		before := subscriptions.NewStore(f.db.Gorm, f.ob, subscriptions.WithClock(f.clock.Now), subscriptions.WithKeyring(testKeyring(t, keyOne)),
			subscriptions.WithValidator(subscriptions.Validator(webhook.WithAllowCIDRs("10.0.0.0/8"))))
		if _, err := before.Add(ctx, subscriptions.Endpoint{Name: "inside", URL: "https://10.1.2.3/h?token=t0k3n", Enabled: true}); err != nil {
			t.Fatalf("Add of an allowlisted address = %v", err)
		}
		store := subscriptions.NewStore(f.db.Gorm, f.ob, subscriptions.WithClock(f.clock.Now), subscriptions.WithKeyring(testKeyring(t, keyOne)),
			subscriptions.WithValidator(subscriptions.Validator()))
		off, on := false, true
		if _, _, err := store.Update(ctx, "inside", subscriptions.Patch{Enabled: &off}); err != nil {
			t.Fatalf("disabling = %v, want it allowed whatever the URL", err)
		}
		if _, _, err := store.RotateSecret(ctx, "inside", "", time.Hour); err != nil {
			t.Fatalf("rotating the secret = %v, want it allowed whatever the URL", err)
		}
		types := []string{"io.herald.*"}
		for name, p := range map[string]subscriptions.Patch{
			"re-enabling":      {Enabled: &on},
			"changing types":   {Types: &types},
			"changing headers": {Headers: &map[string]string{"X-Key": "v"}},
		} {
			_, _, err := store.Update(ctx, "inside", p)
			if err == nil || !strings.Contains(err.Error(), "10.1.2.3 is private") {
				t.Errorf("%s = %v, want the url refused", name, err)
				continue
			}
			assertField(t, err, "url", "t0k3n")
		}
		if got := f.get(t, "inside"); got.Enabled || len(got.Types) != 0 || got.Headers != nil {
			t.Errorf("after refused changes: %+v", got)
		}
	})
}
