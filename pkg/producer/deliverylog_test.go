package producer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// scripted answers each event with the results queued for its id, then
// delivers it with a 200. Like every adapter it holds back the later
// messages of a failed message's key in the same call.
type scripted struct {
	mu     sync.Mutex
	script map[string][]adapters.Result
}

var errScriptedHeldBack = errors.New("not sent, an earlier message with the same key failed")

func (s *scripted) Publish(_ context.Context, msgs []adapters.Message) []adapters.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := make([]adapters.Result, len(msgs))
	failed := map[string]error{}
	for i, m := range msgs {
		if cause, ok := failed[m.PartitionKey]; ok && m.PartitionKey != "" {
			res[i].Err = adapters.HeldBack(errScriptedHeldBack, m.PartitionKey, cause)
			continue
		}
		res[i] = adapters.Result{Status: 200}
		if q := s.script[m.ID]; len(q) > 0 {
			res[i], s.script[m.ID] = q[0], q[1:]
		}
		if res[i].Err != nil {
			failed[m.PartitionKey] = res[i].Err
		}
	}
	return res
}

func (s *scripted) Close() error { return nil }

// logRig is an outbox on one dialect with events written by name.
type logRig struct {
	t     *testing.T
	db    *gorm.DB
	store *outbox.Store
	ids   map[string]string // name → event id
}

func newLogRig(t *testing.T, dialect string) *logRig {
	db := testdb.Migrated(t, dialect).Gorm
	store, err := outbox.NewStore(db, outbox.WithOrdering(true))
	if err != nil {
		t.Fatal(err)
	}
	return &logRig{t: t, db: db, store: store, ids: map[string]string{}}
}

// write stores one event per name, in one transaction and in order, each
// with the partition key keys gives it.
func (l *logRig) write(keys map[string]string, names ...string) {
	l.t.Helper()
	var evs []event.Event
	for _, name := range names {
		ev, err := event.New("io.herald.test.thing.created", "/test", map[string]string{"name": name},
			event.WithSubject("things/"+name), event.WithPartitionKey(keys[name]))
		if err != nil {
			l.t.Fatal(err)
		}
		l.ids[name] = ev.ID
		evs = append(evs, ev)
	}
	if err := outbox.Write(context.Background(), l.db, evs...); err != nil {
		l.t.Fatal(err)
	}
}

// story is one event's attempts, oldest first, as "outcome#number/status".
func (l *logRig) story(name string) ([]string, []outbox.Attempt) {
	l.t.Helper()
	got, err := l.store.Attempts(context.Background(), outbox.AttemptFilter{EventID: l.ids[name]})
	if err != nil {
		l.t.Fatal(err)
	}
	var out []string
	for i := len(got) - 1; i >= 0; i-- {
		out = append(out, fmt.Sprintf("%s#%d/%d", got[i].Outcome, got[i].Number, got[i].Status))
	}
	return out, got
}

func redactHunter2(s string) string { return strings.ReplaceAll(s, "hunter2", "[REDACTED]") }

// Every publish result is an attempt in the log: delivered, failed and
// then delivered, dead; an event the adapter held back behind its key's
// failing head made no attempt then. Answers are redacted.
func TestDeliveryLogRecordsEachAttempt(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(d, func(t *testing.T) {
			l := newLogRig(t, d)
			keys := map[string]string{"ok": "a", "retry": "b", "dead": "c", "head": "K", "behind": "K"}
			l.write(keys, "ok", "retry", "dead", "head", "behind")
			pub := &scripted{script: map[string][]adapters.Result{
				l.ids["retry"]: {{Err: errors.New("503 busy"), Status: 503}},
				l.ids["dead"]:  {{Err: adapters.Permanent(errors.New(`422 Unprocessable Entity "bad token hunter2"`)), Status: 422}},
				l.ids["head"]:  {{Err: errors.New("500 boom"), Status: 500}},
			}}
			relay := producer.New(l.store, pub, producer.WithPollInterval(20*time.Millisecond),
				producer.WithBackoff(10*time.Millisecond, 10*time.Millisecond), producer.WithLogger(quiet()),
				producer.WithDeliveryLog(redactHunter2))
			stop := runRelay(t, relay)
			eventually(t, "everything but the dead letter to be delivered", func() bool {
				st, err := l.store.Stats(context.Background())
				return err == nil && st.Pending == 0 && st.Dead == 1
			})
			stop()

			for name, want := range map[string][]string{
				"ok":     {"delivered#1/200"},
				"retry":  {"failed#1/503", "delivered#2/200"},
				"dead":   {"dead#1/422"},
				"head":   {"failed#1/500", "delivered#2/200"},
				"behind": {"delivered#1/200"}, // held back behind head: no attempt until it went
			} {
				got, attempts := l.story(name)
				if strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("%s's attempts = %v, want %v", name, got, want)
				}
				for _, a := range attempts {
					if a.Destination != outbox.MainDestination || a.EventType != "io.herald.test.thing.created" || a.At.IsZero() || a.Latency < 0 {
						t.Errorf("%s: attempt %+v: want destination main, the type, a time and a latency", name, a)
					}
				}
			}
			_, dead := l.story("dead")
			if len(dead) == 1 && (strings.Contains(dead[0].Answer, "hunter2") || !strings.Contains(dead[0].Answer, "[REDACTED]") ||
				!strings.Contains(dead[0].Answer, "422 Unprocessable Entity")) {
				t.Errorf("dead letter's answer = %q, want the receiver's answer with the secret redacted", dead[0].Answer)
			}
			_, retry := l.story("retry")
			if len(retry) == 2 && (retry[1].Answer != "503 busy" || retry[0].Answer != "") {
				t.Errorf("retry's answers = %q then %q, want \"503 busy\" then none", retry[1].Answer, retry[0].Answer)
			}
		})
	}
}

// A destination down as a whole is logged as unavailable, without costing
// the event an attempt: the delivery after it is still attempt 1. The
// event held back behind it made no attempt.
func TestDeliveryLogUnavailableCountsNoAttempt(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(d, func(t *testing.T) {
			l := newLogRig(t, d)
			l.write(map[string]string{"first": "K", "second": "K"}, "first", "second")
			down := adapters.Result{Err: adapters.Unavailable(errors.New("dial tcp 10.0.0.1:4222: connection refused"))}
			pub := &scripted{script: map[string][]adapters.Result{l.ids["first"]: {down}}}
			relay := producer.New(l.store, pub, producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()),
				producer.WithDeliveryLog(nil))
			stop := runRelay(t, relay)
			eventually(t, "both events to be delivered", func() bool {
				st, err := l.store.Stats(context.Background())
				return err == nil && st.Pending == 0
			})
			stop()
			if got, _ := l.story("first"); strings.Join(got, " ") != "unavailable#1/0 delivered#1/200" {
				t.Errorf("first's attempts = %v, want unavailable#1 then delivered#1", got)
			}
			if got, _ := l.story("second"); strings.Join(got, " ") != "delivered#1/200" {
				t.Errorf("second's attempts = %v, want only delivered#1", got)
			}
			_, first := l.story("first")
			if len(first) == 2 && !strings.Contains(first[1].Answer, "connection refused") {
				t.Errorf("unavailable answer = %q, want the broker's error", first[1].Answer)
			}
		})
	}
}

// A relay with a retention prunes old attempts and keeps recent ones; one
// without the log writes none.
func TestDeliveryLogRetentionPrunes(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(d, func(t *testing.T) {
			l := newLogRig(t, d)
			ctx := context.Background()
			now := time.Now().UTC()
			var seeded []outbox.Attempt
			for i, age := range []time.Duration{10 * 24 * time.Hour, 8 * 24 * time.Hour, time.Hour} {
				seeded = append(seeded, outbox.Attempt{At: now.Add(-age), Destination: "main", EventID: fmt.Sprint("old-", i),
					EventType: "t", Number: 1, Outcome: outbox.AttemptDelivered})
			}
			if err := l.store.Record(ctx, nil, seeded...); err != nil {
				t.Fatal(err)
			}
			l.write(nil, "unlogged")
			relay := producer.New(l.store, &scripted{}, producer.WithPollInterval(20*time.Millisecond), producer.WithLogger(quiet()),
				producer.WithDeliveryLogRetention(7*24*time.Hour), producer.WithPruneEvery(20*time.Millisecond))
			stop := runRelay(t, relay)
			eventually(t, "the old attempts to be pruned", func() bool {
				got, err := l.store.Attempts(ctx, outbox.AttemptFilter{})
				return err == nil && len(got) == 1
			})
			eventually(t, "the event to be delivered", func() bool {
				st, err := l.store.Stats(ctx)
				return err == nil && st.Pending == 0
			})
			stop()
			got, err := l.store.Attempts(ctx, outbox.AttemptFilter{})
			if err != nil || len(got) != 1 || got[0].EventID != "old-2" {
				t.Errorf("attempts left = %+v, %v; want only the hour-old one (the relay without the log adds none)", got, err)
			}
		})
	}
}
