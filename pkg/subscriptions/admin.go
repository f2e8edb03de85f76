package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/bearer"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// AdminPrefix is where [NewAdminHandler] serves. Mount the handler at both
// AdminPrefix and AdminPrefix+"/": a POST to the bare prefix must not be
// redirected.
const AdminPrefix = "/v1/webhooks"

const (
	// adminMaxBody is far above any real endpoint, and small enough that
	// no client can make the handler buffer much.
	adminMaxBody       = 64 << 10
	adminMinToken      = 16
	defaultSecretGrace = 24 * time.Hour
)

// AdminOption configures [NewAdminHandler].
type AdminOption func(*adminConfig)

type adminConfig struct {
	tester   func(ctx context.Context, e Endpoint) (TestResult, error)
	onChange func()
	grace    time.Duration
	log      *slog.Logger
}

// WithTester sets how POST /v1/webhooks/{name}/test sends its ping,
// typically a closure over [Test] with the webhook options real deliveries
// use. Without it that route answers 501.
func WithTester(fn func(ctx context.Context, e Endpoint) (TestResult, error)) AdminOption {
	return func(c *adminConfig) { c.tester = fn }
}

// WithOnChange sets a func called after every successful change (add,
// update, remove, rotate-secret, replay), so that a running Herald can
// reconcile its relays at once instead of at its next refresh. It must not
// block.
func WithOnChange(fn func()) AdminOption { return func(c *adminConfig) { c.onChange = fn } }

// WithSecretGrace sets how long a rotated-out secret keeps signing when a
// rotate-secret request does not say (default 24h); 0 drops it at once.
func WithSecretGrace(d time.Duration) AdminOption { return func(c *adminConfig) { c.grace = d } }

// WithAdminLogger sets the logger (default slog.Default()).
func WithAdminLogger(l *slog.Logger) AdminOption { return func(c *adminConfig) { c.log = l } }

// NewAdminHandler returns the admin API over store: JSON in and out, every
// request authenticated with "Authorization: Bearer <token>". The token
// must be at least 16 characters.
//
//	GET    /v1/webhooks                       {"endpoints": [endpoint…]}
//	POST   /v1/webhooks                       201 {"endpoint": …, "secret": "whsec_…"}
//	GET    /v1/webhooks/{name}                {"endpoint": …}
//	PATCH  /v1/webhooks/{name}                {"endpoint": …, "replayed": n}
//	DELETE /v1/webhooks/{name}                {"removed": name, "discarded": n}
//	POST   /v1/webhooks/{name}/rotate-secret  {"endpoint": …, "secret": "whsec_…"}
//	POST   /v1/webhooks/{name}/test           {"result": TestResult}
//	POST   /v1/webhooks/{name}/replay         {"replayed": n}
//
// An endpoint is shown as [Endpoint.Redacted], plus its outbox
// "destination": no header value, no URL query, and each secret only as
// its fingerprint. A secret's value is in exactly two responses: the one
// that created the endpoint and the one that rotated it in. Give it to the
// receiver then; it cannot be read back. Responses say Cache-Control:
// no-store for that reason.
//
// POST /v1/webhooks takes {"name", "url", "types", "headers", "secret",
// "enabled"}: without "secret" one is generated, and "enabled" defaults to
// true. PATCH takes any of {"url", "types", "headers", "enabled",
// "replay"}; a field left out (or null) stays as it is, "types": [] means
// every event and "headers": {} none. Enabling a disabled endpoint first
// replays its dead letters unless "replay" is false. rotate-secret takes
// {"secret", "grace"}, both optional, grace as a Go duration ("24h").
//
// Errors are {"error": "…", "field": "…"}: 400 for an invalid request
// (field names what is wrong, including an unknown one), 401 without the
// token, 404 for an unknown endpoint, 409 when the name is taken, 413 for
// a body over 64 KiB, 415 for a body that is not JSON, 501 for test
// without [WithTester], 503 when the server has no key to seal a new secret
// with ([ErrPlaintextRefused]), and 500, with the detail only in the log, for
// anything else. Every change is logged at Info with the endpoint's name
// and the operation, never with a secret or header value.
func NewAdminHandler(store *Store, token string, opts ...AdminOption) (http.Handler, error) {
	if store == nil {
		return nil, errors.New("webhooks admin: store required")
	}
	// The token itself never goes into an error: this one may be logged.
	if len(token) < adminMinToken {
		return nil, fmt.Errorf("webhooks admin: token must be at least %d characters (got %d)", adminMinToken, len(token))
	}
	if strings.TrimSpace(token) != token {
		// Authorization is compared trimmed, so such a token could never match.
		return nil, errors.New("webhooks admin: token must not start or end with white space")
	}
	cfg := adminConfig{grace: defaultSecretGrace}
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.grace < 0 {
		return nil, fmt.Errorf("webhooks admin: secret grace must not be negative (got %s)", cfg.grace)
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	a := &admin{store: store, token: bearer.New(token), cfg: cfg, mux: http.NewServeMux()}
	for _, rt := range []struct {
		pattern, op string
		fn          adminFunc
	}{
		{"GET " + AdminPrefix, "list", a.list},
		{"POST " + AdminPrefix, "add", a.add},
		{"GET " + AdminPrefix + "/{name}", "get", a.get},
		{"PATCH " + AdminPrefix + "/{name}", "update", a.update},
		{"DELETE " + AdminPrefix + "/{name}", "remove", a.remove},
		{"POST " + AdminPrefix + "/{name}/rotate-secret", "rotate-secret", a.rotate},
		{"POST " + AdminPrefix + "/{name}/test", "test", a.test},
		{"POST " + AdminPrefix + "/{name}/replay", "replay", a.replay},
	} {
		a.mux.Handle(rt.pattern, a.route(rt.op, rt.fn))
	}
	return a, nil
}

type admin struct {
	store *Store
	token bearer.Token
	cfg   adminConfig
	mux   *http.ServeMux
}

// adminFunc serves one route; r.Body is already limited.
type adminFunc func(r *http.Request) (status int, body any, err error)

// apiError is an answer other than the Store's own errors.
type apiError struct {
	status int
	msg    string
	field  string
}

func (e *apiError) Error() string { return e.msg }

func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.authorized(r) {
		a.cfg.log.LogAttrs(r.Context(), slog.LevelWarn, "webhooks admin: unauthorized request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr))
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
		writeError(w, &apiError{status: http.StatusUnauthorized, msg: "a valid bearer token is required", field: "Authorization"})
		return
	}
	if _, pattern := a.mux.Handler(r); pattern == "" {
		a.unrouted(w, r)
		return
	}
	a.mux.ServeHTTP(w, r)
}

func (a *admin) authorized(r *http.Request) bool { return a.token.Authorized(r) }

// unrouted answers a request no route takes with the mux's own verdict
// (404, or 405 with Allow), in JSON like every other answer.
func (a *admin) unrouted(w http.ResponseWriter, r *http.Request) {
	h, _ := a.mux.Handler(r)
	rec := &statusRecorder{header: http.Header{}, status: http.StatusNotFound}
	h.ServeHTTP(rec, r)
	if allow := rec.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	writeError(w, &apiError{status: rec.status, msg: fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, strings.ToLower(http.StatusText(rec.status)))})
}

type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(status int)      { s.status = status }

func (a *admin) route(op string, fn adminFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, adminMaxBody)
		status, body, err := fn(r)
		if err != nil {
			if status = errorStatus(err); status == http.StatusInternalServerError {
				// Store errors name the endpoint and the database's
				// complaint, never a secret or header value.
				a.cfg.log.LogAttrs(r.Context(), slog.LevelError, "webhooks admin: request failed",
					slog.String("op", op), slog.String("endpoint", r.PathValue("name")), slog.Any("error", err))
				err = errors.New("internal error; the details are in Herald's log")
			}
			writeJSON(w, status, errorBody(err))
			return
		}
		writeJSON(w, status, body)
	})
}

func errorStatus(err error) int {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrExists):
		return http.StatusConflict
	case errors.Is(err, ErrPlaintextRefused):
		// Herald's configuration, not the request, has to change; the
		// message says how, and holds no secret.
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

type errorJSON struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func errorBody(err error) errorJSON {
	var ae *apiError
	var fe *FieldError
	switch {
	case errors.As(err, &ae):
		return errorJSON{Error: ae.msg, Field: ae.field}
	case errors.As(err, &fe):
		return errorJSON{Error: fe.Error(), Field: fe.Field}
	}
	return errorJSON{Error: err.Error()}
}

func writeError(w http.ResponseWriter, err error) { writeJSON(w, errorStatus(err), errorBody(err)) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Two responses carry a secret; no cache should keep any of them.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client is gone if this fails
}

// changed logs a successful change and tells the owner.
func (a *admin) changed(r *http.Request, op, name string, attrs ...slog.Attr) {
	attrs = append([]slog.Attr{slog.String("op", op), slog.String("endpoint", name), slog.String("remote", r.RemoteAddr)}, attrs...)
	a.cfg.log.LogAttrs(r.Context(), slog.LevelInfo, "webhooks admin: endpoint changed", attrs...)
	if a.cfg.onChange != nil {
		a.cfg.onChange()
	}
}

// endpointJSON is how the API shows an endpoint: redacted, with the
// destination its outbox rows carry, for `herald outbox` commands.
type endpointJSON struct {
	Endpoint
	Destination string `json:"destination"`
}

func show(e Endpoint) endpointJSON {
	r := e.Redacted()
	if r.Types == nil {
		// Every event, as read back from the Store: the same answer
		// whichever route returned the endpoint.
		r.Types = []string{}
	}
	return endpointJSON{Endpoint: r, Destination: e.Destination()}
}

type addRequest struct {
	Name    string            `json:"name"`
	URL     string            `json:"url"`
	Types   []string          `json:"types"`
	Headers map[string]string `json:"headers"`
	Secret  string            `json:"secret"`
	Enabled *bool             `json:"enabled"`
}

type patchRequest struct {
	URL     *string            `json:"url"`
	Types   *[]string          `json:"types"`
	Headers *map[string]string `json:"headers"`
	Enabled *bool              `json:"enabled"`
	Replay  *bool              `json:"replay"`
}

type rotateRequest struct {
	Secret string `json:"secret"`
	Grace  string `json:"grace"`
}

func (a *admin) list(r *http.Request) (int, any, error) {
	eps, err := a.store.List(r.Context())
	if err != nil {
		return 0, nil, err
	}
	out := make([]endpointJSON, len(eps))
	for i, e := range eps {
		out[i] = show(e)
	}
	return http.StatusOK, struct {
		Endpoints []endpointJSON `json:"endpoints"`
	}{out}, nil
}

func (a *admin) add(r *http.Request) (int, any, error) {
	var req addRequest
	if err := decodeBody(r, &req, false); err != nil {
		return 0, nil, err
	}
	e := Endpoint{Name: req.Name, URL: req.URL, Types: req.Types, Headers: req.Headers, Enabled: req.Enabled == nil || *req.Enabled}
	if req.Secret != "" {
		// Checked here so that the error names the request's field, not
		// the endpoint's "secrets".
		if _, err := webhooks.ParseSecret(req.Secret); err != nil {
			return 0, nil, &FieldError{Field: "secret", Reason: err.Error()}
		}
		e.Secrets = []Secret{{Value: req.Secret}}
	}
	e, err := a.store.Add(r.Context(), e)
	if err != nil {
		return 0, nil, err
	}
	secret := e.Secrets[0]
	a.changed(r, "add", e.Name, slog.String("url", e.Redacted().URL), slog.Bool("enabled", e.Enabled),
		slog.String("secret_fingerprint", secret.Fingerprint()))
	return http.StatusCreated, struct {
		Endpoint endpointJSON `json:"endpoint"`
		Secret   string       `json:"secret"`
	}{show(e), secret.Value}, nil
}

func (a *admin) get(r *http.Request) (int, any, error) {
	e, err := a.store.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct {
		Endpoint endpointJSON `json:"endpoint"`
	}{show(e)}, nil
}

func (a *admin) update(r *http.Request) (int, any, error) {
	var req patchRequest
	if err := decodeBody(r, &req, false); err != nil {
		return 0, nil, err
	}
	var fields []string
	for _, f := range []struct {
		name string
		set  bool
	}{{"url", req.URL != nil}, {"types", req.Types != nil}, {"headers", req.Headers != nil}, {"enabled", req.Enabled != nil}} {
		if f.set {
			fields = append(fields, f.name)
		}
	}
	if len(fields) == 0 {
		return 0, nil, &apiError{status: http.StatusBadRequest, msg: "nothing to change: give url, types, headers or enabled"}
	}
	name := r.PathValue("name")
	p := Patch{URL: req.URL, Types: req.Types, Headers: req.Headers, Enabled: req.Enabled, NoReplay: req.Replay != nil && !*req.Replay}
	e, replayed, err := a.store.Update(r.Context(), name, p)
	if err != nil {
		if replayed > 0 {
			// The Store replays before it checks the patch: those rows
			// now wait, pending, for the endpoint to be enabled.
			a.cfg.log.LogAttrs(r.Context(), slog.LevelWarn, "webhooks admin: dead letters replayed but the update failed",
				slog.String("endpoint", name), slog.Int("replayed", replayed), slog.Any("error", err))
		}
		return 0, nil, err
	}
	a.changed(r, "update", name, slog.Any("fields", fields), slog.String("url", e.Redacted().URL),
		slog.Bool("enabled", e.Enabled), slog.Int("replayed", replayed))
	return http.StatusOK, struct {
		Endpoint endpointJSON `json:"endpoint"`
		Replayed int          `json:"replayed"`
	}{show(e), replayed}, nil
}

func (a *admin) remove(r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	discarded, err := a.store.Remove(r.Context(), name)
	if err != nil {
		return 0, nil, err
	}
	a.changed(r, "remove", name, slog.Int("discarded", discarded))
	return http.StatusOK, struct {
		Removed   string `json:"removed"`
		Discarded int    `json:"discarded"`
	}{name, discarded}, nil
}

func (a *admin) rotate(r *http.Request) (int, any, error) {
	var req rotateRequest
	if err := decodeBody(r, &req, true); err != nil {
		return 0, nil, err
	}
	grace := a.cfg.grace
	if req.Grace != "" {
		d, err := time.ParseDuration(req.Grace)
		if err != nil {
			return 0, nil, &FieldError{Field: "grace", Reason: fmt.Sprintf("%q is not a duration such as \"24h\"", req.Grace)}
		}
		grace = d
	}
	name := r.PathValue("name")
	e, secret, err := a.store.RotateSecret(r.Context(), name, req.Secret, grace)
	if err != nil {
		return 0, nil, err
	}
	a.changed(r, "rotate-secret", name, slog.String("secret_fingerprint", secret.Fingerprint()), slog.Duration("grace", grace))
	return http.StatusOK, struct {
		Endpoint endpointJSON `json:"endpoint"`
		Secret   string       `json:"secret"`
	}{show(e), secret.Value}, nil
}

func (a *admin) test(r *http.Request) (int, any, error) {
	if err := decodeBody(r, &struct{}{}, true); err != nil {
		return 0, nil, err
	}
	if a.cfg.tester == nil {
		return 0, nil, &apiError{status: http.StatusNotImplemented, msg: "this server cannot send test deliveries"}
	}
	name := r.PathValue("name")
	e, err := a.store.Get(r.Context(), name)
	if err != nil {
		return 0, nil, err
	}
	res, err := a.cfg.tester(r.Context(), e)
	if err != nil {
		return 0, nil, fmt.Errorf("test webhook endpoint %q: %w", name, err)
	}
	// Not a change, but worth a line: it sent a request to the receiver.
	a.cfg.log.LogAttrs(r.Context(), slog.LevelInfo, "webhooks admin: endpoint tested",
		slog.String("endpoint", name), slog.Bool("delivered", res.Delivered), slog.Int("status", res.StatusCode),
		slog.String("remote", r.RemoteAddr))
	return http.StatusOK, struct {
		Result TestResult `json:"result"`
	}{res}, nil
}

func (a *admin) replay(r *http.Request) (int, any, error) {
	if err := decodeBody(r, &struct{}{}, true); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	n, err := a.store.Replay(r.Context(), name)
	if err != nil {
		return 0, nil, err
	}
	// OnChange too: the relay should pick the rows up now.
	a.changed(r, "replay", name, slog.Int("replayed", n))
	return http.StatusOK, struct {
		Replayed int `json:"replayed"`
	}{n}, nil
}

// decodeBody reads one JSON object into dst, refusing unknown fields. With
// optional, an empty body leaves dst as it is.
func decodeBody(r *http.Request, dst any, optional bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return &apiError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("Content-Type %q: want application/json", ct), field: "Content-Type"}
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		var extra json.RawMessage
		if err = dec.Decode(&extra); errors.Is(err, io.EOF) {
			return nil
		}
		if err == nil {
			return &apiError{status: http.StatusBadRequest, msg: "body: want one JSON object, got more"}
		}
	}
	if errors.Is(err, io.EOF) && optional {
		return nil
	}
	return bodyError(err)
}

// bodyError explains why a body could not be decoded without quoting it:
// it may hold a secret.
func bodyError(err error) error {
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &tooBig):
		return &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("body: larger than %d bytes", tooBig.Limit)}
	case errors.Is(err, io.EOF):
		return &apiError{status: http.StatusBadRequest, msg: "body: a JSON object is required"}
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return &apiError{status: http.StatusBadRequest, field: typeErr.Field,
			msg: fmt.Sprintf("%s: want %s", typeErr.Field, jsonKind(typeErr.Type))}
	case errors.As(err, &typeErr):
		return &apiError{status: http.StatusBadRequest, msg: "body: want a JSON object"}
	case errors.As(err, &syntaxErr):
		return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("body: invalid JSON at byte %d", syntaxErr.Offset)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &apiError{status: http.StatusBadRequest, msg: "body: JSON ends early"}
	}
	// encoding/json has no type for this one.
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field = strings.Trim(field, `"`)
		return &apiError{status: http.StatusBadRequest, field: field, msg: fmt.Sprintf("%s: unknown field", field)}
	}
	return &apiError{status: http.StatusBadRequest, msg: "body: cannot be read"}
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "an array of strings"
		}
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	default:
		return "a " + t.Kind().String()
	}
}
