package app

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldhq/herald/internal/bearer"
	"github.com/heraldhq/herald/internal/redact"
	"github.com/heraldhq/herald/pkg/outbox"
)

// AttemptsPath is where the admin API serves the delivery log.
const AttemptsPath = "/v1/attempts"

// AttemptJSON is one delivery-log attempt as `herald outbox attempts
// --output json` and GET /v1/attempts show it; its field names are a
// contract with scripts. Optional values are null rather than absent.
type AttemptJSON struct {
	ID          int64                 `json:"id"`
	At          time.Time             `json:"at"`
	Destination string                `json:"destination"`
	EventID     string                `json:"event_id"`
	Type        string                `json:"type"`
	Attempt     int                   `json:"attempt"`
	Outcome     outbox.AttemptOutcome `json:"outcome"`
	Status      *int                  `json:"status"` // the webhook receiver's HTTP status
	Answer      *string               `json:"answer"`
	LatencyMS   float64               `json:"latency_ms"`
}

// NewAttemptJSON shows a, its answer redacted once more with secrets: the
// relay that logged it may have known fewer secrets than this process.
func NewAttemptJSON(a outbox.Attempt, secrets *redact.Secrets) AttemptJSON {
	j := AttemptJSON{ID: a.ID, At: a.At.UTC(), Destination: a.Destination, EventID: a.EventID, Type: a.EventType,
		Attempt: a.Number, Outcome: a.Outcome, LatencyMS: float64(a.Latency.Microseconds()) / 1000}
	if a.Status != 0 {
		j.Status = &a.Status
	}
	if a.Answer != "" {
		answer := secrets.Text(a.Answer)
		j.Answer = &answer
	}
	return j
}

// ParseSince reads a --since or since= value: a Go duration back from now
// ("90m", "24h") or an RFC 3339 time.
func ParseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%q: a duration must be positive", v)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (24h) nor an RFC 3339 time", v)
	}
	return t, nil
}

// attemptsHandler serves GET /v1/attempts:
//
//	GET /v1/attempts?event=&destination=&failed=true&since=24h&limit=100&before=<id>
//	    {"attempts": [attempt…], "next_before": id or null}
//
// newest first; next_before pages back in time. Errors are {"error",
// "field"} like the webhooks admin API's: 400 for a bad parameter, 405 for
// another method, 500 with the detail only in the log.
type attemptsHandler struct {
	store   *outbox.Store
	secrets *redact.Secrets
	log     *slog.Logger
	now     func() time.Time
}

type attemptsPage struct {
	Attempts   []AttemptJSON `json:"attempts"`
	NextBefore *int64        `json:"next_before"`
}

func (h *attemptsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeAPIError(w, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": method not allowed", "")
		return
	}
	f, field, err := h.filter(r)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, err.Error(), field)
		return
	}
	attempts, err := h.store.Attempts(r.Context(), f)
	if err != nil {
		h.log.Error("GET "+AttemptsPath, "error", h.secrets.Error(err))
		writeAPIError(w, http.StatusInternalServerError, "reading the delivery log failed; the log has the detail", "")
		return
	}
	page := attemptsPage{Attempts: make([]AttemptJSON, 0, len(attempts))}
	for _, a := range attempts {
		page.Attempts = append(page.Attempts, NewAttemptJSON(a, h.secrets))
	}
	if len(attempts) == f.Limit {
		last := attempts[len(attempts)-1].ID
		page.NextBefore = &last
	}
	writeAPIJSON(w, http.StatusOK, page)
}

// filter reads the query; on error it names the parameter.
func (h *attemptsHandler) filter(r *http.Request) (outbox.AttemptFilter, string, error) {
	q := r.URL.Query()
	f := outbox.AttemptFilter{EventID: q.Get("event"), Destination: q.Get("destination"), Limit: outbox.DefaultAttemptsLimit}
	for name := range q {
		switch name {
		case "event", "destination", "failed", "since", "limit", "before":
		default:
			return f, name, fmt.Errorf("unknown parameter %q (known: event, destination, failed, since, limit, before)", name)
		}
	}
	if v := q.Get("failed"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, "failed", fmt.Errorf("failed: %q is not true or false", v)
		}
		f.FailedOnly = b
	}
	if v := q.Get("since"); v != "" {
		t, err := ParseSince(v, h.now())
		if err != nil {
			return f, "since", fmt.Errorf("since: %w", err)
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > outbox.MaxAttemptsLimit {
			return f, "limit", fmt.Errorf("limit: must be a number from 1 to %d (got %q)", outbox.MaxAttemptsLimit, v)
		}
		f.Limit = n
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return f, "before", fmt.Errorf("before: must be an attempt id (got %q)", v)
		}
		f.Before = n
	}
	return f, "", nil
}

// requireToken lets through only requests with "Authorization: Bearer
// <token>", as the webhooks admin API does.
func requireToken(token string, log *slog.Logger, next http.Handler) http.Handler {
	want := bearer.New(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !want.Authorized(r) {
			log.LogAttrs(r.Context(), slog.LevelWarn, "admin API: unauthorized request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr))
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
			writeAPIError(w, http.StatusUnauthorized, "a valid bearer token is required", "Authorization")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeAPIError(w http.ResponseWriter, status int, msg, field string) {
	body := struct {
		Error string `json:"error"`
		Field string `json:"field,omitempty"`
	}{msg, field}
	writeAPIJSON(w, status, body)
}

func writeAPIJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// An error here is a client that went away: nothing left to tell it.
	_ = json.NewEncoder(w).Encode(body)
}
