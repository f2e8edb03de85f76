package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/outbox"
)

// Record writes the attempts with the outcomes, in one transaction: an
// attempt whose outcome was not stored is not in the log either.
func TestRecordLogsAttemptsWithTheOutcomes(t *testing.T) {
	ctx := context.Background()
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		store, err := outbox.NewStore(db)
		if err != nil {
			t.Fatal(err)
		}
		writeN(t, db, 3)
		rows := readAll(t, store)
		at := time.Now().UTC().Truncate(time.Millisecond)
		attempt := func(r outbox.Row, o outbox.AttemptOutcome, status int, answer string) outbox.Attempt {
			return outbox.Attempt{At: at, Destination: r.Destination, EventID: r.EventID, EventType: r.EventType,
				Number: r.Attempts + 1, Outcome: o, Status: status, Answer: answer, Latency: 1500 * time.Microsecond}
		}
		outcomes := []outbox.Outcome{
			{Seq: rows[0].Seq},
			{Seq: rows[1].Seq, Err: errors.New("503 from broker"), RetryAt: time.Now().Add(time.Hour)},
			{Seq: rows[2].Seq, Err: errors.New("too large"), Dead: true},
		}
		attempts := []outbox.Attempt{
			attempt(rows[0], outbox.AttemptDelivered, 200, ""),
			attempt(rows[1], outbox.AttemptFailed, 503, "503 from broker"),
			attempt(rows[2], outbox.AttemptDead, 0, "too large"),
			// Unavailable changes no row, and is logged all the same.
			attempt(rows[1], outbox.AttemptUnavailable, 0, "connection refused"),
		}
		if err := store.Record(ctx, outcomes, attempts...); err != nil {
			t.Fatal(err)
		}
		got, err := store.Attempts(ctx, outbox.AttemptFilter{Destination: outbox.MainDestination})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(attempts) {
			t.Fatalf("Attempts = %d rows, want %d: %+v", len(got), len(attempts), got)
		}
		for i, g := range got {
			want := attempts[len(attempts)-1-i] // newest first
			if i > 0 && g.ID >= got[i-1].ID {
				t.Errorf("attempt %d has id %d after %d: not newest first", i, g.ID, got[i-1].ID)
			}
			want.ID = g.ID
			if !g.At.Equal(want.At) {
				t.Errorf("attempt %d at %v, want %v", i, g.At, want.At)
			}
			g.At = want.At
			if g != want {
				t.Errorf("attempt %d = %+v\nwant %+v", i, g, want)
			}
		}

		// A transaction that fails logs nothing: the outcome is not stored
		// (the row is pending again), and neither is its attempt.
		bad := attempt(rows[1], outbox.AttemptFailed, 0, "again")
		bad.Outcome = "bogus" // refused by the column's CHECK
		if err := store.Record(ctx, []outbox.Outcome{{Seq: rows[1].Seq, Err: errors.New("again"), RetryAt: time.Now()}}, bad); err == nil {
			t.Fatal("Record with an invalid outcome succeeded")
		}
		if r, _ := store.Get(ctx, rows[1].EventID); r.Attempts != 1 || r.LastError != "503 from broker" {
			t.Errorf("after a failed Record the row has attempts %d, last error %q: want 1 and the first error", r.Attempts, r.LastError)
		}
		if got, _ := store.Attempts(ctx, outbox.AttemptFilter{}); len(got) != len(attempts) {
			t.Errorf("after a failed Record the log has %d attempts, want %d", len(got), len(attempts))
		}
	})
}

func TestAttemptsFilters(t *testing.T) {
	ctx := context.Background()
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		store, err := outbox.NewStore(db)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		var attempts []outbox.Attempt
		add := func(age time.Duration, dest, id string, o outbox.AttemptOutcome) {
			attempts = append(attempts, outbox.Attempt{At: now.Add(-age), Destination: dest, EventID: id, EventType: "t",
				Number: 1, Outcome: o})
		}
		add(3*time.Hour, "main", "e1", outbox.AttemptFailed)
		add(2*time.Hour, "main", "e1", outbox.AttemptDelivered)
		add(2*time.Hour, "partner", "e1", outbox.AttemptDead)
		add(time.Hour, "main", "e2", outbox.AttemptUnavailable)
		add(time.Minute, "main", "e2", outbox.AttemptDelivered)
		add(time.Second, "partner", "e3", outbox.AttemptDelivered)
		if err := store.Record(ctx, nil, attempts...); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			f    outbox.AttemptFilter
			want []string // destination/event/outcome, newest first
		}{
			{"an event everywhere", outbox.AttemptFilter{EventID: "e1"},
				[]string{"partner/e1/dead", "main/e1/delivered", "main/e1/failed"}},
			{"a destination", outbox.AttemptFilter{Destination: "main"},
				[]string{"main/e2/delivered", "main/e2/unavailable", "main/e1/delivered", "main/e1/failed"}},
			{"failed only", outbox.AttemptFilter{Destination: "main", FailedOnly: true},
				[]string{"main/e2/unavailable", "main/e1/failed"}},
			{"since", outbox.AttemptFilter{Since: now.Add(-90 * time.Minute)},
				[]string{"partner/e3/delivered", "main/e2/delivered", "main/e2/unavailable"}},
			{"since before everything", outbox.AttemptFilter{Destination: "partner", Since: now.Add(-24 * time.Hour)},
				[]string{"partner/e3/delivered", "partner/e1/dead"}},
			{"since after everything", outbox.AttemptFilter{Since: now.Add(time.Hour)}, nil},
			{"event and destination", outbox.AttemptFilter{EventID: "e1", Destination: "partner"}, []string{"partner/e1/dead"}},
			{"limit", outbox.AttemptFilter{Limit: 2}, []string{"partner/e3/delivered", "main/e2/delivered"}},
		} {
			got, err := store.Attempts(ctx, tc.f)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			var names []string
			for _, a := range got {
				names = append(names, a.Destination+"/"+a.EventID+"/"+string(a.Outcome))
			}
			if strings.Join(names, " ") != strings.Join(tc.want, " ") {
				t.Errorf("%s: got %v, want %v", tc.name, names, tc.want)
			}
		}

		// Paging back with Before visits every attempt once.
		var seen int
		f := outbox.AttemptFilter{Limit: 4}
		for {
			page, err := store.Attempts(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			seen += len(page)
			if len(page) < f.Limit {
				break
			}
			f.Before = page[len(page)-1].ID
		}
		if seen != len(attempts) {
			t.Errorf("paging saw %d attempts, want %d", seen, len(attempts))
		}
		if _, err := store.Attempts(ctx, outbox.AttemptFilter{Limit: -1}); !errors.Is(err, outbox.ErrInvalidFilter) {
			t.Errorf("a negative limit: %v, want ErrInvalidFilter", err)
		}
	})
}

// Pruning deletes what is older than the cut-off in batches and keeps the
// rest, however many batches it takes.
func TestPruneAttemptsInBatches(t *testing.T) {
	ctx := context.Background()
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		store, err := outbox.NewStore(db)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		var attempts []outbox.Attempt
		const old, recent = 23, 5
		for i := range old + recent {
			age := 8 * 24 * time.Hour
			if i >= old {
				age = time.Hour
			}
			attempts = append(attempts, outbox.Attempt{At: now.Add(-age), Destination: "main", EventID: "e", EventType: "t",
				Number: i + 1, Outcome: outbox.AttemptFailed})
		}
		if err := store.Record(ctx, nil, attempts...); err != nil {
			t.Fatal(err)
		}
		var statements int
		countDeletes(t, db, &statements)
		n, err := store.PruneAttempts(ctx, now.Add(-7*24*time.Hour), 10)
		if err != nil {
			t.Fatal(err)
		}
		if n != old {
			t.Errorf("PruneAttempts deleted %d, want %d", n, old)
		}
		if statements != 3 {
			t.Errorf("PruneAttempts ran %d DELETEs for %d rows in batches of 10, want 3", statements, old)
		}
		left, err := store.Attempts(ctx, outbox.AttemptFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != recent {
			t.Fatalf("%d attempts left, want the %d recent ones", len(left), recent)
		}
		for _, a := range left {
			if a.Number <= old {
				t.Errorf("attempt %d, 8 days old, was kept", a.Number)
			}
		}
		if n, err := store.PruneAttempts(ctx, now.Add(-7*24*time.Hour), 10); err != nil || n != 0 {
			t.Errorf("second prune = %d, %v; want 0, nil", n, err)
		}
	})
}

// countDeletes counts the DELETE statements run on the delivery log.
func countDeletes(t *testing.T, db *gorm.DB, n *int) {
	t.Helper()
	err := db.Callback().Raw().After("gorm:raw").Register("count_attempt_deletes", func(tx *gorm.DB) {
		if sql := tx.Statement.SQL.String(); strings.HasPrefix(sql, "DELETE FROM "+outbox.AttemptsTable) {
			*n++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Callback().Raw().Remove("count_attempt_deletes") })
}

func TestBoundAnswer(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int // bytes kept
	}{
		{"short", "503 Service Unavailable", 23},
		{"exactly the bound", strings.Repeat("a", outbox.MaxAnswerBytes), outbox.MaxAnswerBytes},
		{"ascii over the bound", strings.Repeat("a", 600), outbox.MaxAnswerBytes},
		// 'é' is two bytes: the 512th byte is the first half of one.
		{"cut inside a rune", "a" + strings.Repeat("é", 300), outbox.MaxAnswerBytes - 1},
	} {
		got := outbox.BoundAnswer(tc.in)
		if len(got) != tc.want || !utf8.ValidString(got) || !strings.HasPrefix(tc.in, got) {
			t.Errorf("%s: BoundAnswer kept %d bytes (valid UTF-8: %v), want %d, a prefix", tc.name, len(got), utf8.ValidString(got), tc.want)
		}
	}
	if got := outbox.BoundAnswer("bad \xff byte"); !utf8.ValidString(got) {
		t.Errorf("BoundAnswer(invalid UTF-8) = %q, not valid UTF-8", got)
	}
}
