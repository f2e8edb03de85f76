package enricher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/enricher"
)

const ingestToken = "s3cret-token"

func post(t *testing.T, h http.Handler, token, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	return postAs(t, h, token, "application/json", body)
}

// postAs posts body with the given Content-Type; "" sends none.
func postAs(t *testing.T, h http.Handler, token, contentType, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, enricher.IngestPath, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not JSON (%d): %q", rec.Code, rec.Body.String())
	}
	return rec, out
}

func TestIngest(t *testing.T) {
	for _, dialect := range tailDialects() {
		t.Run(dialect, func(t *testing.T) {
			db := portalOutbox(t, dialect)
			e := enricher.New()
			h, err := enricher.NewIngestHandler(db.Gorm, e, ingestToken, enricher.WithMaxBodyBytes(4096))
			if err != nil {
				t.Fatal(err)
			}
			tmpl := template(t, e, db.Gorm)
			good := map[string]any{
				"id": uuid.NewString(), "name": tmpl.Name, "subject_id": tmpl.SubjectID, "subject_type": tmpl.SubjectType,
				"actor_id": tmpl.ActorID, "created_on": time.Now().UTC().Format(time.RFC3339Nano),
			}
			unknown := map[string]any{
				"id": uuid.NewString(), "name": "data_product_frobnicated", "subject_id": tmpl.SubjectID,
				"subject_type": tmpl.SubjectType, "actor_id": tmpl.ActorID, "created_on": "2026-11-02T10:00:00Z",
			}
			badTime := map[string]any{
				"id": uuid.NewString(), "name": tmpl.Name, "subject_id": tmpl.SubjectID, "subject_type": tmpl.SubjectType,
				"actor_id": tmpl.ActorID, "created_on": "yesterday",
			}
			badType := map[string]any{"id": uuid.NewString(), "name": 42}
			batch, _ := json.Marshal(map[string]any{"records": []any{good, unknown, badTime, badType}})

			// Authentication.
			for _, tok := range []string{"", "wrong"} {
				if rec, out := post(t, h, tok, string(batch)); rec.Code != http.StatusUnauthorized || out["error"] == nil {
					t.Errorf("token %q: %d %v, want 401 with an error", tok, rec.Code, out)
				}
			}
			if n := len(eventsByAudit(t, db.Gorm)); n != 0 {
				t.Fatalf("unauthorized requests wrote %d events", n)
			}

			rec, out := post(t, h, ingestToken, string(batch))
			if rec.Code != http.StatusOK {
				t.Fatalf("batch: %d %s", rec.Code, rec.Body)
			}
			results := out["results"].([]any)
			status := func(i int) map[string]any { return results[i].(map[string]any) }
			if status(0)["status"] != "enriched" || len(status(0)["event_ids"].([]any)) != 1 {
				t.Errorf("good record: %v", status(0))
			}
			wantErr := map[int]string{1: "records[1]", 2: "records[2].created_on", 3: "records[3].name"}
			for i, field := range wantErr {
				r := status(i)
				e, _ := r["error"].(map[string]any)
				if r["status"] != "quarantined" || e == nil || e["field"] != field {
					t.Errorf("record %d: %v, want quarantined naming %s", i, r, field)
				}
			}
			q := quarantinedIDs(t, db.Gorm)
			if len(q) != 3 || q[unknown["id"].(string)].Kind != enricher.KindUnmapped {
				t.Errorf("quarantine after ingest: %+v", q)
			}

			// Idempotent: the same batch again is acknowledged, nothing new.
			rec, out = post(t, h, ingestToken, string(batch))
			if rec.Code != http.StatusOK {
				t.Fatalf("re-post: %d %s", rec.Code, rec.Body)
			}
			for i, r := range out["results"].([]any) {
				if s := r.(map[string]any)["status"]; s != "duplicate" {
					t.Errorf("re-posted record %d: %v, want duplicate", i, s)
				}
			}
			if got := eventsByAudit(t, db.Gorm); len(got) != 1 || len(got[good["id"].(string)]) != 1 {
				t.Errorf("outbox after re-post: %v", got)
			}
			if n := len(quarantinedIDs(t, db.Gorm)); n != 3 {
				t.Errorf("%d quarantined after re-post, want 3", n)
			}

			// Body cap, malformed bodies, method.
			big := fmt.Sprintf(`{"records": [{"id": %q}]}`, strings.Repeat("x", 5000))
			if rec, _ := post(t, h, ingestToken, big); rec.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("oversized body: %d, want 413", rec.Code)
			}
			for body, field := range map[string]string{`{"records": 3}`: "records", `{}`: "records", `{"recs": []}`: "recs"} {
				rec, out := post(t, h, ingestToken, body)
				e, _ := out["error"].(map[string]any)
				if rec.Code != http.StatusBadRequest || e == nil || e["field"] != field {
					t.Errorf("body %s: %d %v, want 400 naming %s", body, rec.Code, out, field)
				}
			}
			req := httptest.NewRequest(http.MethodGet, enricher.IngestPath, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusMethodNotAllowed {
				t.Errorf("GET: %d, want 405", w.Code)
			}
		})
	}
}

func TestIngestNeedsToken(t *testing.T) {
	db := portalOutbox(t, "sqlite")
	if _, err := enricher.NewIngestHandler(db.Gorm, enricher.New(), ""); err == nil {
		t.Fatal("an empty token was accepted")
	}
}

// writtenRows counts what an ingest request can leave behind: outbox rows,
// processed ids and quarantined records.
func writtenRows(t *testing.T, db *gorm.DB) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, table := range []string{"herald_outbox", enricher.ProcessedTable, enricher.QuarantineTable} {
		var n int64
		if err := db.Raw("SELECT COUNT(*) FROM " + table).Scan(&n).Error; err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		out[table] = n
	}
	return out
}

// A request is one JSON document of Content-Type application/json, or it
// is refused whole: none of its records is written, not even the good
// ones before the fault.
func TestIngestRefusesWholeRequest(t *testing.T) {
	for _, dialect := range tailDialects() {
		t.Run(dialect, func(t *testing.T) {
			db := portalOutbox(t, dialect)
			e := enricher.New()
			h, err := enricher.NewIngestHandler(db.Gorm, e, ingestToken)
			if err != nil {
				t.Fatal(err)
			}
			tmpl := template(t, e, db.Gorm)
			record := func() string {
				b, err := json.Marshal(map[string]any{
					"id": uuid.NewString(), "name": tmpl.Name, "subject_id": tmpl.SubjectID, "subject_type": tmpl.SubjectType,
					"actor_id": tmpl.ActorID, "created_on": time.Now().UTC().Format(time.RFC3339Nano),
				})
				if err != nil {
					t.Fatal(err)
				}
				return `{"records": [` + string(b) + `]}`
			}
			none := writtenRows(t, db.Gorm)

			for _, tt := range []struct {
				name, contentType, body string
				code                    int
				message, field          string
			}{
				{"two JSON values", "application/json", record() + " " + record(), http.StatusBadRequest, "data after the JSON document", ""},
				{"two JSON values without a space", "application/json", record() + record(), http.StatusBadRequest, "data after the JSON document", ""},
				{"trailing garbage", "application/json", `{"records": []} garbage`, http.StatusBadRequest, "data after the JSON document", ""},
				{"trailing garbage after a record", "application/json", record() + "\n}", http.StatusBadRequest, "data after the JSON document", ""},
				{"no Content-Type", "", record(), http.StatusUnsupportedMediaType, "Content-Type: required", "Content-Type"},
				{"wrong Content-Type", "text/plain", record(), http.StatusUnsupportedMediaType, "want application/json", "Content-Type"},
				{"a JSON look-alike", "application/jsonx", record(), http.StatusUnsupportedMediaType, "want application/json", "Content-Type"},
				{"form", "application/x-www-form-urlencoded", record(), http.StatusUnsupportedMediaType, "want application/json", "Content-Type"},
				{"unparsable Content-Type", "application/json; charset", record(), http.StatusUnsupportedMediaType, "want application/json", "Content-Type"},
			} {
				t.Run(tt.name, func(t *testing.T) {
					rec, out := postAs(t, h, ingestToken, tt.contentType, tt.body)
					apiErr, _ := out["error"].(map[string]any)
					if rec.Code != tt.code || apiErr == nil {
						t.Fatalf("%d %v, want %d with an error", rec.Code, out, tt.code)
					}
					if msg, _ := apiErr["message"].(string); !strings.Contains(msg, tt.message) {
						t.Errorf("message %q does not say %q", msg, tt.message)
					}
					if field, _ := apiErr["field"].(string); field != tt.field {
						t.Errorf("field = %q, want %q", field, tt.field)
					}
					if got := writtenRows(t, db.Gorm); !maps.Equal(got, none) {
						t.Errorf("a refused request wrote rows: %v, before %v", got, none)
					}
				})
			}

			// White space after the document, and Content-Type parameters,
			// are fine.
			for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"} {
				rec, out := postAs(t, h, ingestToken, ct, record()+" \r\n\t ")
				results, _ := out["results"].([]any)
				if rec.Code != http.StatusOK || len(results) != 1 || results[0].(map[string]any)["status"] != "enriched" {
					t.Errorf("Content-Type %q: %d %v, want 200 with the record enriched", ct, rec.Code, out)
				}
			}
			if got := writtenRows(t, db.Gorm); got["herald_outbox"] != none["herald_outbox"]+3 || got[enricher.ProcessedTable] != none[enricher.ProcessedTable]+3 {
				t.Errorf("after three good requests: %v, before %v", got, none)
			}
		})
	}
}

// A portal that cannot be read is a setting to fix, not a bad record: a
// valid record is answered 503 and recorded nowhere, neither quarantined
// nor marked processed, so posting it again once the portal is readable
// enriches it.
func TestIngestPortalUnreadable(t *testing.T) {
	// A PostgreSQL portal at a port where nothing listens, opened without
	// the ping outbox.Open makes, as serve opens a portal.
	unreachable, err := gorm.Open(postgres.Open("postgres://herald@127.0.0.1:1/portal?sslmode=disable&connect_timeout=2"),
		&gorm.Config{DisableAutomaticPing: true, Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	for _, dialect := range testdb.Dialects() {
		for _, tt := range []struct {
			name   string
			portal *gorm.DB // nil: the outbox's database, without the portal's tables
		}{
			{"tables missing", nil},
			{"unreachable", unreachable},
		} {
			t.Run(dialect+"/"+tt.name, func(t *testing.T) {
				ctx := context.Background()
				db := testdb.Migrated(t, dialect)
				var opts []enricher.SourceOption
				if tt.portal != nil {
					opts = append(opts, enricher.WithPortal(tt.portal))
				}
				e := enricher.New()
				h, err := enricher.NewIngestHandler(db.Gorm, e, ingestToken, opts...)
				if err != nil {
					t.Fatal(err)
				}
				record := func(action string) string {
					return fmt.Sprintf(`{"id": %q, "name": %q,
  "subject_id": "10000000-0000-4000-8000-000000000001", "subject_type": "data_product",
  "actor_id": "00000000-0000-4000-8000-000000000001", "created_on": "2026-11-01T10:00:00Z"}`, uuid.NewString(), action)
				}
				body := `{"records": [` + record("data_product_created") + `, ` + record("data_product_updated") + `]}`
				none := writtenRows(t, db.Gorm)

				rec, out := post(t, h, ingestToken, body)
				results, _ := out["results"].([]any)
				if rec.Code != http.StatusServiceUnavailable || len(results) != 2 {
					t.Fatalf("%d %v, want 503 with two results", rec.Code, out)
				}
				for _, r := range results {
					r := r.(map[string]any)
					apiErr, _ := r["error"].(map[string]any)
					if r["status"] != string(enricher.StatusError) || r["id"] == "" || apiErr == nil || apiErr["code"] != "portal_unavailable" {
						t.Errorf("result %v, want status error with code portal_unavailable", r)
					}
				}
				if got := writtenRows(t, db.Gorm); !maps.Equal(got, none) {
					t.Fatalf("a record the portal could not be read for was recorded: %v, before %v", got, none)
				}

				// Once the portal is readable, the same post enriches it.
				if tt.portal != nil {
					return
				}
				if err := portalsample.Load(ctx, db.Gorm); err != nil {
					t.Fatal(err)
				}
				rec, out = post(t, h, ingestToken, body)
				results, _ = out["results"].([]any)
				if rec.Code != http.StatusOK || len(results) != 2 || results[0].(map[string]any)["status"] != "enriched" ||
					results[1].(map[string]any)["status"] != "enriched" {
					t.Fatalf("after the portal's tables exist: %d %v, want the records enriched", rec.Code, out)
				}
			})
		}
	}
}

// Ingest keeps an event larger than the main destination takes out of the
// outbox: the record is quarantined as too_large, in a 200 response.
func TestIngestQuarantinesOversizeEvents(t *testing.T) {
	db := portalOutbox(t, "sqlite")
	e := enricher.New()
	h, err := enricher.NewIngestHandler(db.Gorm, e, ingestToken, enricher.WithMaxBodyBytes(16<<20), enricher.WithMaxEventBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := template(t, e, db.Gorm)
	record, _ := json.Marshal(map[string]any{"records": []any{map[string]any{
		"id": uuid.NewString(), "name": "data_product_removed", "subject_id": uuid.NewString(), "subject_type": "data_product",
		"actor_id": tmpl.ActorID, "deleted_subject_identifier": strings.Repeat("n", 6<<20), "created_on": "2026-11-02T10:00:00Z",
	}}})
	none := writtenRows(t, db.Gorm)
	rec, out := post(t, h, ingestToken, string(record))
	results, _ := out["results"].([]any)
	if rec.Code != http.StatusOK || len(results) != 1 {
		t.Fatalf("%d, want 200 with one result", rec.Code)
	}
	r := results[0].(map[string]any)
	apiErr, _ := r["error"].(map[string]any)
	if r["status"] != "quarantined" || apiErr == nil || apiErr["kind"] != enricher.KindTooLarge ||
		!strings.Contains(apiErr["message"].(string), "at most 1048576") {
		t.Fatalf("result %.300v, want quarantined as too_large naming the limit", r)
	}
	if got := writtenRows(t, db.Gorm); got["herald_outbox"] != none["herald_outbox"] || got[enricher.QuarantineTable] != none[enricher.QuarantineTable]+1 {
		t.Errorf("rows after the oversize record: %v, before %v; want one quarantined and no event", got, none)
	}
}
