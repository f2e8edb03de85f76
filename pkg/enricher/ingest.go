package enricher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/heraldhq/herald/internal/bearer"
	"gorm.io/gorm"
)

// IngestPath is where [NewIngestHandler] expects to be mounted.
const IngestPath = "/v1/audit-records"

// WithMaxBodyBytes caps an ingest request's body (default 1 MiB); a larger
// one is refused with 413.
func WithMaxBodyBytes(n int64) SourceOption {
	return func(c *sourceConfig) {
		if n > 0 {
			c.maxBody = n
		}
	}
}

// WithMaxRecords caps the records of one ingest request (default 500).
func WithMaxRecords(n int) SourceOption {
	return func(c *sourceConfig) {
		if n > 0 {
			c.maxRecords = n
		}
	}
}

// IngestRequest is the body of POST /v1/audit-records: audit records in the
// audit table's column names, created_on in RFC 3339.
//
//	{"records": [{"id": "…", "name": "data_product_created", "subject_id": "…",
//	  "subject_type": "data_product", "actor_id": "…", "created_on": "2026-11-01T10:00:00Z"}]}
type IngestRequest struct {
	Records []json.RawMessage `json:"records"`
}

// IngestResponse answers an accepted batch: one result per record, in order.
type IngestResponse struct {
	Results []IngestResult `json:"results"`
}

// IngestResult is what happened to one record of a batch.
type IngestResult struct {
	Index        int       `json:"index"`
	ID           string    `json:"id,omitempty"`
	Status       Status    `json:"status"` // enriched, quarantined, duplicate; "error" when not stored
	EventIDs     []string  `json:"event_ids,omitempty"`
	QuarantineID string    `json:"quarantine_id,omitempty"`
	Error        *APIError `json:"error,omitempty"`
}

// StatusError marks a record of an ingest batch that was not stored at all
// (the database failed); posting the batch again is safe.
const StatusError Status = "error"

// APIError is an error in an ingest response.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"` // e.g. "records[2].subject_id"
	Kind    string `json:"kind,omitempty"`  // the quarantine kind, for a record
}

// NewIngestHandler returns the handler of POST /v1/audit-records, which
// feeds a batch of audit records through the enricher into the outbox of db.
//
// Requests must carry "Authorization: Bearer <token>" (compared in constant
// time) and "Content-Type: application/json" (parameters such as
// charset=utf-8 allowed; anything else, or none, is 415). The body is
// exactly one JSON object: anything but white space after it is 400, and
// such a request writes nothing. Each record is handled in its own transaction like a tailed row:
// enriched and written, or quarantined with its reason; either way its id is
// marked processed, so re-posting a record is acknowledged as "duplicate"
// and not enriched again. A bad record never fails the batch: the response
// (200) has a status per record. When the database fails for some record,
// or the portal cannot be read ([ErrPortalUnavailable]: unreachable, or its
// tables missing or not readable, which is a setting to fix and no fault of
// the record), that record is not recorded at all, neither quarantined nor
// marked processed, and the response is 503 with the per-record statuses;
// the client posts the batch again. It accepts [WithPortal],
// [WithSourceLogger], [WithMaxBodyBytes], [WithMaxRecords],
// [WithMaxEventBytes] and [WithObserver].
func NewIngestHandler(db *gorm.DB, e *Enricher, token string, opts ...SourceOption) (http.Handler, error) {
	if token == "" {
		return nil, errors.New("enricher ingest: token required")
	}
	cfg := newSourceConfig(opts)
	p, err := newPipeline(db, e, cfg)
	if err != nil {
		return nil, err
	}
	return &ingest{p: p, cfg: cfg, token: bearer.New(token)}, nil
}

type ingest struct {
	p     *pipeline
	cfg   sourceConfig
	token bearer.Token
}

func (h *ingest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeAPIError(w, http.StatusMethodNotAllowed, APIError{Code: "method_not_allowed", Message: "use POST"})
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
		writeAPIError(w, http.StatusUnauthorized, APIError{Code: "unauthorized", Message: "a valid bearer token is required", Field: "Authorization"})
		return
	}
	if msg := checkContentType(r.Header.Get("Content-Type")); msg != "" {
		writeAPIError(w, http.StatusUnsupportedMediaType, APIError{Code: "unsupported_media_type", Message: msg, Field: "Content-Type"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeAPIError(w, http.StatusRequestEntityTooLarge, APIError{Code: "body_too_large",
				Message: fmt.Sprintf("body exceeds %d bytes: send fewer records per request", h.cfg.maxBody)})
			return
		}
		writeAPIError(w, http.StatusBadRequest, APIError{Code: "bad_request", Message: "read body: " + err.Error()})
		return
	}
	var req IngestRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		field := ""
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field = te.Field
		}
		if strings.HasPrefix(err.Error(), "json: unknown field ") {
			field = strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		}
		writeAPIError(w, http.StatusBadRequest, APIError{Code: "invalid_body", Message: "body: " + jsonReason(err), Field: field})
		return
	}
	// A second document would otherwise be dropped unread while the client
	// is told 200: the whole request is refused before any record is
	// handled, so nothing of it is written.
	if rest := body[dec.InputOffset():]; len(bytes.TrimLeft(rest, jsonSpace)) > 0 {
		writeAPIError(w, http.StatusBadRequest, APIError{Code: "invalid_body",
			Message: fmt.Sprintf("body: data after the JSON document at byte %d: send exactly one JSON object per request", dec.InputOffset())})
		return
	}
	switch {
	case req.Records == nil:
		writeAPIError(w, http.StatusBadRequest, APIError{Code: "invalid_body", Message: "records: required", Field: "records"})
		return
	case len(req.Records) > h.cfg.maxRecords:
		writeAPIError(w, http.StatusRequestEntityTooLarge, APIError{Code: "too_many_records",
			Message: fmt.Sprintf("records: %d records, at most %d per request", len(req.Records), h.cfg.maxRecords), Field: "records"})
		return
	}

	ctx := r.Context()
	resp := IngestResponse{Results: make([]IngestResult, 0, len(req.Records))}
	code := http.StatusOK
	portalErr := &APIError{Code: "portal_unavailable", Message: "not stored: the portal's database cannot be read; post the batch again"}
	portalDown := false
	for i, raw := range req.Records {
		rec, decodeErr := decodeRecord(raw)
		if portalDown {
			// The rest would wait on the same portal one by one, each
			// to the same end.
			resp.Results = append(resp.Results, IngestResult{Index: i, ID: auditKey(rec.ID), Status: StatusError, Error: portalErr})
			continue
		}
		res, err := h.p.handle(ctx, "ingest", incoming{rec: rec, raw: raw, badErr: decodeErr}, nil)
		out := IngestResult{Index: i, ID: res.AuditID, Status: res.Status, EventIDs: res.EventIDs, QuarantineID: res.QuarantineID}
		switch {
		case errors.Is(err, ErrPortalUnavailable):
			// The portal's fault, not the record's: nothing is written, and
			// the details (table names, hosts) stay in the log.
			h.p.log.ErrorContext(ctx, "ingest: records not stored: the portal cannot be read", slog.Int("from_index", i), slog.Any("error", err))
			out.Status, out.Error, portalDown = StatusError, portalErr, true
			code = http.StatusServiceUnavailable
		case err != nil:
			h.p.log.ErrorContext(ctx, "ingest: record not stored", slog.Int("index", i), slog.Any("error", err))
			out.Status = StatusError
			out.Error = &APIError{Code: "unavailable", Message: "not stored: the database failed; post the batch again"}
			code = http.StatusServiceUnavailable
		case res.Status == StatusQuarantined:
			out.Error = &APIError{Code: "quarantined", Message: res.Reason.Error(), Kind: res.Kind, Field: recordField(i, res.Reason)}
		}
		if err == nil && h.cfg.observer != nil {
			h.cfg.observer(res)
		}
		resp.Results = append(resp.Results, out)
	}
	writeJSON(w, code, resp)
}

// jsonSpace is the white space JSON allows around a value (RFC 8259).
const jsonSpace = " \t\r\n"

// checkContentType returns why a request's Content-Type is refused, or ""
// for application/json with any parameters (charset=utf-8). A missing one
// is refused too: a client that does not say what it sends may not be
// sending what it thinks.
func checkContentType(ct string) string {
	if ct == "" {
		return "Content-Type: required, want application/json"
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return fmt.Sprintf("Content-Type %q: want application/json", ct)
	}
	return ""
}

func (h *ingest) authorized(r *http.Request) bool { return h.token.Authorized(r) }

// recordField names the first bad field of record i, when the error has one.
func recordField(i int, err error) string {
	var re *RecordError
	if errors.As(err, &re) {
		return fmt.Sprintf("records[%d].%s", i, re.Field)
	}
	return fmt.Sprintf("records[%d]", i)
}

func writeAPIError(w http.ResponseWriter, code int, e APIError) {
	writeJSON(w, code, struct {
		Error APIError `json:"error"`
	}{e})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client is gone if this fails
}
