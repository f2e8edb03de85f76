package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/pkg/outbox"
)

// `herald outbox attempts` shows an event's story and a destination's
// failures, newest first, as a table or as the JSON of GET /v1/attempts,
// with the config's secrets masked in the answers.
func TestOutboxAttempts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	config := writeFile(t, "herald.yaml", `
database:
  driver: sqlite
  dsn: `+filepath.Join(dir, "outbox.db")+`
nats:
  url: nats://alice:natsPw0123456789@broker:4222
log:
  level: warn
`)
	_, store := migrateAndOpen(t, config, dir)
	now := time.Now().UTC()
	attempts := []outbox.Attempt{
		{At: now.Add(-3 * time.Hour), Destination: "main", EventID: "evt-1", EventType: "io.herald.test.thing.created", Number: 1,
			Outcome: outbox.AttemptUnavailable, Answer: "nats: dial nats://alice:natsPw0123456789@broker:4222: connection refused", Latency: 2 * time.Millisecond},
		{At: now.Add(-2 * time.Hour), Destination: "main", EventID: "evt-1", EventType: "io.herald.test.thing.created", Number: 1,
			Outcome: outbox.AttemptDelivered, Latency: 1500 * time.Microsecond},
		{At: now.Add(-time.Hour), Destination: "webhook:crm", EventID: "evt-1", EventType: "io.herald.test.thing.created", Number: 1,
			Outcome: outbox.AttemptFailed, Status: 503, Answer: `503 Service Unavailable "try later"`, Latency: 30 * time.Millisecond},
		{At: now.Add(-time.Minute), Destination: "webhook:crm", EventID: "evt-2", EventType: "io.herald.test.thing.updated", Number: 1,
			Outcome: outbox.AttemptDelivered, Status: 204, Latency: 20 * time.Millisecond},
	}
	if err := store.Record(ctx, nil, attempts...); err != nil {
		t.Fatal(err)
	}

	res := herald(ctx, t, nil, "outbox", "attempts", "--event", "evt-1", "--config", config)
	if res.code != exitOK {
		t.Fatalf("attempts --event: %+v", res)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("attempts --event printed\n%s\nwant a header and 3 attempts", res.stdout)
	}
	for i, want := range []string{"webhook:crm", "main", "main"} { // newest first
		if !strings.Contains(lines[i+1], want) {
			t.Errorf("line %d = %q, want destination %s", i+1, lines[i+1], want)
		}
	}
	for _, want := range []string{"failed", "503", "delivered", "unavailable", "nats://alice:xxxxx@broker"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("attempts --event lacks %q:\n%s", want, res.stdout)
		}
	}
	if strings.Contains(res.stdout, "natsPw0123456789") {
		t.Errorf("attempts --event shows the NATS password:\n%s", res.stdout)
	}

	res = herald(ctx, t, nil, "outbox", "attempts", "--destination", "webhook:crm", "--failed", "--since", "2h", "--output", "json", "--config", config)
	if res.code != exitOK {
		t.Fatalf("attempts --destination --failed: %+v", res)
	}
	var doc struct {
		Attempts   []app.AttemptJSON `json:"attempts"`
		NextBefore *int64            `json:"next_before"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatalf("attempts --output json: %v\n%s", err, res.stdout)
	}
	if len(doc.Attempts) != 1 || doc.NextBefore != nil {
		t.Fatalf("failed attempts of webhook:crm = %+v, want the one 503", doc)
	}
	if a := doc.Attempts[0]; a.EventID != "evt-1" || a.Outcome != outbox.AttemptFailed || a.Status == nil || *a.Status != 503 ||
		a.Answer == nil || *a.Answer != `503 Service Unavailable "try later"` || a.LatencyMS != 30 || a.Attempt != 1 {
		t.Errorf("the failed attempt = %+v", a)
	}

	res = herald(ctx, t, nil, "outbox", "attempts", "--destination", "main", "--limit", "1", "--config", config)
	if res.code != exitOK || !strings.Contains(res.stderr, "--before") || strings.Count(strings.TrimSpace(res.stdout), "\n") != 1 {
		t.Errorf("a page of one: %+v, want one attempt and how to get the next page", res)
	}
	res = herald(ctx, t, nil, "outbox", "attempts", "--event", "nope", "--config", config)
	if res.code != exitOK || !strings.Contains(res.stdout, "no matching attempts") {
		t.Errorf("an event without attempts: %+v", res)
	}
}

func TestOutboxAttemptsRefusesBadFlags(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	config := sqliteConfig(t, dir)
	migrateAndOpen(t, config, dir)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--event ID, --destination NAME"},
		{[]string{"--event", "x", "--since", "yesterday"}, "--since"},
		{[]string{"--event", "x", "--limit", "0"}, "--limit"},
	} {
		res := herald(ctx, t, nil, append([]string{"outbox", "attempts", "--config", config}, tc.args...)...)
		if res.code != exitUsage || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("attempts %v: %+v, want a usage error naming %s", tc.args, res, tc.want)
		}
	}
}
