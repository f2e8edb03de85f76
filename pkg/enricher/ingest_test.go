package enricher_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/pkg/enricher"
)

const ingestToken = "s3cret-token"

func post(t *testing.T, h http.Handler, token, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, enricher.IngestPath, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
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
