package metrics_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/outbox"
)

// scrape returns the /metrics page, as Prometheus would read it.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	return string(body)
}

func TestWebhookAttemptsAreCountedByOutcomeAndTimedPerDestination(t *testing.T) {
	store, err := outbox.NewStore(testdb.Migrated(t, "sqlite").Gorm)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(store)
	observe := m.WebhookAttempts("hooks")
	unavailable := &webhook.EndpointError{Endpoint: "crm", StatusCode: http.StatusServiceUnavailable, Err: webhook.ErrUnavailable}
	for _, a := range []webhook.Attempt{
		{Endpoint: "crm", EventID: "e1", StatusCode: http.StatusNoContent, Duration: 20 * time.Millisecond},
		{Endpoint: "crm", EventID: "e2", StatusCode: http.StatusOK, Duration: 30 * time.Millisecond},
		{Endpoint: "crm", EventID: "e3", StatusCode: http.StatusServiceUnavailable, Err: unavailable, Duration: 50 * time.Millisecond},
		{Endpoint: "crm", EventID: "e4", Err: errors.New("post: connection refused"), Duration: 400 * time.Millisecond},
	} {
		observe(a)
	}
	m.WebhookAttempts("other") // bound but never called: its series read 0

	page := scrape(t, m)
	for _, want := range []string{
		`herald_webhook_attempts_total{destination="hooks",outcome="delivered"} 2`,
		`herald_webhook_attempts_total{destination="hooks",outcome="failed"} 1`,
		`herald_webhook_attempts_total{destination="hooks",outcome="no_response"} 1`,
		`herald_webhook_attempts_total{destination="other",outcome="delivered"} 0`,
		`herald_webhook_attempt_seconds_count{destination="hooks"} 4`,
		`herald_webhook_attempt_seconds_sum{destination="hooks"} 0.5`,
		`herald_webhook_attempt_seconds_bucket{destination="hooks",le="0.04"} 2`,
		`herald_webhook_attempt_seconds_bucket{destination="hooks",le="40.96"} 4`,
	} {
		if !strings.Contains(page, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grep(page, "herald_webhook_"))
	}
}

// grep keeps the lines of s that contain substr.
func grep(s, substr string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) {
			b.WriteString(line)
		}
	}
	return b.String()
}
