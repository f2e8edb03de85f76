// Command webhook-consumer receives Herald's signed webhooks and provisions
// infrastructure from them: each event exactly once, although Herald
// delivers at least once and retries a webhook until it gets a 2xx.
//
// Each request's Standard Webhooks signature and timestamp are verified
// (pkg/webhooks) before its body is read as a CloudEvent; then a
// consumer.Ledger runs the side effect at most once per event id, in the
// transaction that records the id, in this consumer's own SQLite database.
// Answers:
//
//   - 204 when the ledger is done with the event: applied, a duplicate, or
//     stale;
//   - 500 when it failed: nothing was recorded, and Herald retries later;
//   - 400 for a request without the webhook headers or whose body is not a
//     CloudEvent, 401 for a bad signature or a timestamp outside the
//     tolerance (a replay): Herald does not retry those.
//
// The signing secrets come from WEBHOOK_SECRET: "whsec_…", or during a
// rotation several separated by spaces. How to run it: README.md.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/heraldhq/herald/examples/internal/provision"
	"github.com/heraldhq/herald/pkg/consumer"
	"github.com/heraldhq/herald/pkg/webhooks"
)

type config struct {
	Listen    string
	Path      string
	Name      string
	DBPath    string
	Secrets   [][]byte
	Tolerance time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "address to listen on")
	flag.StringVar(&cfg.Path, "path", "/webhooks/herald", "the endpoint's URL path")
	flag.StringVar(&cfg.Name, "name", "provisioner", "this consumer's name in the ledger")
	flag.StringVar(&cfg.DBPath, "db", "consumer.db", "SQLite file holding the ledger and the provisioned table")
	flag.DurationVar(&cfg.Tolerance, "tolerance", webhooks.DefaultTolerance, "how far a request's webhook-timestamp may be from this clock")
	flag.Parse()
	// A secret belongs in the environment (or a secret store), not on a
	// command line that every user of the machine can read.
	secrets, err := webhooks.ParseSecrets(strings.Fields(os.Getenv("WEBHOOK_SECRET")))
	if err != nil {
		fmt.Fprintf(os.Stderr, "webhook-consumer: WEBHOOK_SECRET: %v\n", err)
		os.Exit(2)
	}
	cfg.Secrets = secrets
	if len(cfg.Secrets) == 0 {
		fmt.Fprintln(os.Stderr, "webhook-consumer: WEBHOOK_SECRET is required (whsec_…, the endpoint's signing secret)")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, provision.Provision)
	stop()
	if err != nil {
		slog.Error("webhook-consumer stopped", "error", err)
		os.Exit(1)
	}
}

// run serves the webhook endpoint until ctx is cancelled, then lets the
// requests in flight finish.
func run(ctx context.Context, cfg config, apply provision.Func) error {
	db, ledger, err := provision.Open(ctx, cfg.DBPath, cfg.Name)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()

	mux := http.NewServeMux()
	mux.Handle("POST "+cfg.Path, &handler{secrets: cfg.Secrets, tolerance: cfg.Tolerance, ledger: ledger, apply: apply})
	srv := &http.Server{Addr: cfg.Listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	slog.Info("listening", "addr", cfg.Listen, "path", cfg.Path, "db", cfg.DBPath)
	select {
	case err := <-served:
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	shutdownErr := srv.Shutdown(shutdownCtx)
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	return nil
}

// maxBody bounds a request body. Herald sends at most 256 KiB by default
// (the webhook adapter's WithMaxBodySize).
const maxBody = 1 << 20

// handler receives one event per request.
type handler struct {
	secrets   [][]byte
	tolerance time.Duration
	ledger    *consumer.Ledger
	apply     provision.Func
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := slog.With("webhook_id", r.Header.Get(webhooks.HeaderID))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	// Verify the raw bytes before anything reads them.
	if err := webhooks.Verify(h.secrets, r.Header, body, time.Now(), h.tolerance); err != nil {
		status := http.StatusUnauthorized
		if errors.Is(err, webhooks.ErrMissingHeader) || errors.Is(err, webhooks.ErrInvalidTimestamp) {
			status = http.StatusBadRequest
		}
		log.Warn("request refused", "status", status, "error", err, "remote", r.RemoteAddr)
		http.Error(w, http.StatusText(status), status)
		return
	}
	ev, outcome, err := h.process(r.Context(), body, r.Header.Get(webhooks.HeaderID))
	log = log.With("event_id", ev.ID, "type", ev.Type)
	switch {
	case errors.Is(err, consumer.ErrInvalid):
		// Herald dead-letters an event answered with a 4xx: sending the
		// same bytes again cannot help.
		log.Error("invalid event", "error", err)
		http.Error(w, "invalid event: "+err.Error(), http.StatusBadRequest)
	case err != nil:
		// Nothing was recorded: Herald's retry runs the side effect again.
		log.Warn("event failed; Herald will retry", "error", err)
		http.Error(w, "event failed, try again later", http.StatusInternalServerError)
	default:
		// Applied, Duplicate and Stale all mean the event is done with.
		log.Info("event done", "outcome", outcome)
		w.WriteHeader(http.StatusNoContent)
	}
}

// process parses a verified body and lets the ledger run the side effect
// for it. An error wrapping consumer.ErrInvalid means the request can never
// succeed.
func (h *handler) process(ctx context.Context, body []byte, webhookID string) (consumer.Event, consumer.Outcome, error) {
	ev, err := consumer.Parse(body)
	if err != nil {
		return ev, 0, err
	}
	if ev.ID != webhookID {
		// Herald sends, and signs, the event id as the webhook-id.
		return ev, 0, fmt.Errorf("%w: webhook-id %q is not the event id %q", consumer.ErrInvalid, webhookID, ev.ID)
	}
	outcome, err := h.ledger.Process(ctx, ev, func(ctx context.Context, tx *sql.Tx) error {
		return h.apply(ctx, tx, ev)
	})
	return ev, outcome, err
}
