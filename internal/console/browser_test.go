package console_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// chromium returns the browser to drive: HERALD_CHROMIUM, else Debian's
// (.ci/browser.sh installs it). Without one the test skips, or fails under
// HERALD_REQUIRE_SERVICES=1.
func chromium(t *testing.T) string {
	t.Helper()
	path := os.Getenv("HERALD_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("HERALD_REQUIRE_SERVICES") == "1" {
			t.Fatalf("no browser at %s (HERALD_REQUIRE_SERVICES=1; run .ci/browser.sh): %v", path, err)
		}
		t.Skipf("no browser at %s (run .ci/browser.sh): %v", path, err)
	}
	return path
}

// receiver is a webhook receiver whose answer the test sets.
type receiver struct {
	status   atomic.Int32
	requests atomic.Int32
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	r.requests.Add(1)
	w.Header().Set("Retry-After", "600")
	w.WriteHeader(int(r.status.Load()))
}

// closedPort is a 127.0.0.1 address nothing listens on: a destination that
// refuses every connection.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestConsoleInABrowser(t *testing.T) {
	browser := chromium(t)
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) { browse(t, browser, dialect) })
	}
}

func browse(t *testing.T, browser, dialect string) {
	ctx := context.Background()
	picky := &receiver{}
	picky.status.Store(http.StatusUnprocessableEntity) // dead at once: a permanent refusal
	pickySrv := httptest.NewServer(picky)
	t.Cleanup(pickySrv.Close)
	shop := &receiver{}
	shop.status.Store(http.StatusNoContent)
	shopSrv := httptest.NewServer(shop)
	t.Cleanup(shopSrv.Close)

	db := testdb.New(t, dialect)
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Database = config.Database{Driver: dialect, DSN: db.DSN}
	cfg.NATS.EmbeddedStoreDir = filepath.Join(dir, "js")
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.AdminToken = token
	cfg.HTTP.ConsoleSampleEvery = 200 * time.Millisecond
	cfg.Relay.PollInterval = 20 * time.Millisecond
	// A retried dead letter that fails again waits a minute: long enough
	// to see it pending.
	cfg.Relay.BackoffMin, cfg.Relay.BackoffMax = time.Minute, time.Minute
	cfg.Subscriptions.SecretsKey = "XI83WkSVvoWO1NOiqjCb0f/mMIQ9BKHO4DgiY7Bnw/Q="
	cfg.Subscriptions.AllowCIDRs = []string{"127.0.0.0/8"}
	cfg.Subscriptions.RefreshInterval = 100 * time.Millisecond
	encoded, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	hook := func(u string) config.Webhook {
		h := config.Default().Webhook
		h.URL, h.Secrets, h.AllowCIDRs = u, []string{encoded}, []string{"127.0.0.0/8"}
		return h
	}
	cfg.Destinations = []config.Destination{
		{Name: "partner", Types: []string{"shop.order.*"}, Adapter: "webhook", Webhook: hook("http://" + closedPort(t) + "/hook")},
		{Name: "picky", Types: []string{"shop.refund.*"}, Adapter: "webhook", Webhook: hook(pickySrv.URL)},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(ctx, cfg, app.Options{Migrate: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Run(runCtx) })
	t.Cleanup(func() { stop(); wg.Wait() })
	base := "http://" + a.HTTPAddr + "/console"

	write := func(typ string, n int) []string {
		t.Helper()
		var ids []string
		for i := range n {
			ev, err := event.New(typ, "/shop", map[string]int{"n": i})
			if err != nil {
				t.Fatal(err)
			}
			if err := outbox.Write(ctx, a.DB, ev); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, ev.ID)
		}
		a.Notify()
		return ids
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1400, 900))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	bctx, cancelTimeout := context.WithTimeout(bctx, 3*time.Minute)
	t.Cleanup(cancelTimeout)
	// Started here, on the test's context: a browser started by a step's
	// shorter context would end with that step.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}
	shots := t.TempDir()
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			body, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("body")))
			url, _ := chromedp.Run(bctx, chromedp.Location())
			t.Fatalf("%s: %v; the page (%s) shows:\n%s", what, err, url, body)
		}
	}
	shot := func(name string) {
		t.Helper()
		// Quality 100 is a PNG; below it chromedp writes a JPEG.
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	// until reloads url until sel's text satisfies ok.
	until := func(what, u, sel string, ok func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			run("open "+u, chromedp.Navigate(u), chromedp.WaitReady(chromedp.CSS("body")))
			s := text(sel)
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %s shows %q", what, sel, s)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Sign in.
	run("sign-in page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	shot("sign-in")
	run("sign in", chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS("#destinations")))

	// The partner refuses every connection: down, and its backlog grows.
	write("shop.order.created", 3)
	until("the partner to be seen down", base+"/", "#dest-partner .health", func(s string) bool { return s == "paused" || s == "failing" })
	until("a backlog of 3", base+"/", "#dest-partner .pending", func(s string) bool { return s == "3" })
	write("shop.order.created", 2)
	until("the backlog to grow to 5", base+"/", "#dest-partner .pending", func(s string) bool { return s == "5" })
	if h := text("#dest-main .health"); h != "up" {
		t.Errorf("main shows %q, want up", h)
	}
	// Let the plot gather a few samples.
	time.Sleep(time.Second)
	run("reload", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#dest-partner svg")))
	shot("overview")

	// A refund the picky receiver refuses is a dead letter; retry it.
	refund := write("shop.refund.issued", 1)[0]
	until("the dead letter", base+"/dead-letters?destination=picky", "tbody", func(s string) bool { return strings.Contains(s, refund) })
	shot("dead-letters")
	run("open the dead letter", chromedp.Click(chromedp.CSS("a.dead-letter")), chromedp.WaitVisible(chromedp.CSS("#payload")))
	if r := text("#reason"); !strings.Contains(r, "422") {
		t.Errorf("reason %q does not show the receiver's 422", r)
	}
	if s := text("#state"); s != "dead" {
		t.Fatalf("state %q, want dead", s)
	}
	shot("dead-letter")
	picky.status.Store(http.StatusServiceUnavailable) // from now on a transient failure: the retry waits
	run("retry it", chromedp.Click(chromedp.CSS("#retry-one")), chromedp.WaitVisible(chromedp.CSS("#flash")))
	if f := text("#flash"); !strings.Contains(f, "1 dead letter(s) retried") {
		t.Errorf("flash %q", f)
	}
	if s := text("#state"); s != "pending" {
		t.Errorf("after the retry the state is %q, want pending", s)
	}

	// Add a webhook endpoint, test it, see its attempts.
	run("endpoints", chromedp.Navigate(base+"/endpoints"), chromedp.WaitVisible(chromedp.CSS("#ep-name")))
	shot("endpoints")
	run("add an endpoint", chromedp.SendKeys(chromedp.CSS("#ep-name"), "shop"),
		chromedp.SendKeys(chromedp.CSS("#ep-url"), shopSrv.URL+"/hook"),
		chromedp.SendKeys(chromedp.CSS("#ep-types"), "shop.order.*"),
		chromedp.Click(chromedp.CSS("#ep-add")), chromedp.WaitVisible(chromedp.CSS("#secret")))
	if s := text("#secret"); !strings.HasPrefix(s, webhooks.SecretPrefix) {
		t.Errorf("the new secret shows as %q", s)
	}
	shot("secret")
	run("to the endpoint", chromedp.Click(chromedp.CSS("#to-endpoint")), chromedp.WaitVisible(chromedp.CSS("#ep-test")),
		chromedp.Click(chromedp.CSS("#ep-test")), chromedp.WaitVisible(chromedp.CSS("#flash")))
	if f := text("#flash"); !strings.Contains(f, "delivered: HTTP 204") {
		t.Errorf("test result %q", f)
	}
	if shop.requests.Load() != 1 {
		t.Errorf("the receiver got %d requests, want the test event", shop.requests.Load())
	}
	order := write("shop.order.created", 1)[0]
	until("the endpoint's attempt", base+"/endpoints/shop", "#ep-attempts", func(s string) bool {
		return strings.Contains(s, order) && strings.Contains(s, "delivered")
	})
	shot("endpoint")

	run("event story", chromedp.Navigate(base+"/events?id="+order), chromedp.WaitVisible(chromedp.CSS("#event-id")))
	shot("events")
	run("enricher", chromedp.Navigate(base+"/enricher"), chromedp.WaitReady(chromedp.CSS("main")))
	shot("enricher")

	// Without the session cookie, or without the CSRF token, a change is refused.
	for _, signedIn := range []bool{false, true} {
		c := client(t)
		if signedIn {
			if resp, _ := do(t, c, http.MethodPost, base+"/sign-in", url.Values{"token": {token}}); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("sign-in: %d", resp.StatusCode)
			}
		}
		resp, _ := do(t, c, http.MethodPost, base+"/dead-letters/retry", url.Values{"all": {"1"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST (signed in: %v, no CSRF token): %d, want 403", signedIn, resp.StatusCode)
		}
	}

	if dst := os.Getenv("HERALD_CONSOLE_SCREENSHOTS"); dst != "" && dialect == "sqlite" {
		for _, name := range []string{"overview", "dead-letter"} {
			b, err := os.ReadFile(filepath.Join(shots, name+".png"))
			if err == nil {
				err = os.WriteFile(filepath.Join(dst, fmt.Sprintf("console-%s.png", name)), b, 0o644) //nolint:gosec // docs images
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}
