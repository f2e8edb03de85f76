//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rig is one scenario's world: its own PostgreSQL cluster and nats-server,
// the herald config pointing at them, the load generator, and the relay
// processes (not started yet).
type rig struct {
	t      *testing.T
	dir    string // logs and config, kept with HERALD_CHAOS_DIR
	pg     *postgres
	nats   *natsServer
	config string
	load   *load
	relays *relays
	rep    *report
}

type rigOptions struct {
	keys, writers, relays int
	// extraConfig is appended to the herald config: more top-level blocks.
	extraConfig string
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	r := &rig{t: t, rep: newReport(t)} // first, so that its figures are logged last
	r.dir = scenarioDir(t)
	r.pg = startPostgres(t, r.dir)
	r.nats = startNATS(t, r.dir)
	r.config = filepath.Join(r.dir, "herald.yaml")
	if err := os.WriteFile(r.config, []byte(heraldConfig(r.pg.DSN(), r.nats.URL(), o.extraConfig)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if _, err := runHerald(ctx, "migrate", "-c", r.config); err != nil {
		t.Fatal(err)
	}
	var err error
	if r.load, err = newLoad(ctx, r.pg.DSN(), o.keys, o.writers); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.load.Close)
	r.relays = newRelays(t, r.config, r.dir, o.relays)
	t.Logf("postgres %s, nats-server %s, logs in %s", r.pg.DSN(), r.nats.URL(), r.dir)
	return r
}

// scenarioDir is where a scenario's logs go: under HERALD_CHAOS_DIR to
// keep them, else a temporary directory.
func scenarioDir(t *testing.T) string {
	if suite.dir == "" {
		return t.TempDir()
	}
	dir := filepath.Join(suite.dir, strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// finish stops the relays and checks the whole stream against what
// committed, with the targets every scenario shares: nothing lost, stored
// twice, out of order, never committed, dead in main or still pending, and
// no relay that exited by itself.
func (r *rig) finish(ctx context.Context, dr drainResult) (verdict, outboxState, []storedMsg) {
	r.t.Helper()
	switch {
	case dr.Drained:
		r.rep.add("outbox drained", "%s after the load ended", ms(dr.Took))
	case dr.Parked:
		r.rep.add("outbox drained", "no: %d rows parked behind dead letters after %s", dr.Pending, ms(dr.Took))
	default:
		r.rep.add("outbox drained", "no: %d rows still pending after %s", dr.Pending, ms(dr.Took))
	}
	exits := r.relays.unexpectedExits()
	took, err := r.relays.stopAll()
	r.rep.add("longest SIGTERM shutdown", "%s", ms(took))
	if err != nil {
		r.t.Error(err)
	}
	r.rep.zero("relays that exited by themselves", len(exits), strings.Join(exits, "; "))

	truth, err := r.load.truth(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	msgs, err := readStream(ctx, r.nats.URL())
	if err != nil {
		r.t.Fatal(err)
	}
	ob, err := readOutbox(ctx, r.load.db)
	if err != nil {
		r.t.Fatal(err)
	}
	v := verify(truth, msgs, ob)
	r.rep.add("events committed", "%d (%d of them with the commit's answer lost)", v.Committed, v.Unanswered)
	r.rep.add("messages in the stream", "%d", v.Stored)
	r.rep.zero("lost", v.Lost, fmt.Sprintf("%d dead, %d pending, %d gone from the outbox", v.LostDead, v.LostPending, v.LostGone))
	r.rep.zero("duplicates stored", v.Duplicates, fmt.Sprintf("of %d events", v.DuplicatedEvents))
	r.rep.zero("order violations", v.OrderViolations, v.FirstViolation)
	r.rep.zero("stored but never committed", v.Unknown, "")
	r.rep.zero("malformed messages", v.Malformed, "no Nats-Msg-Id, or not the body's id")
	r.rep.zero("dead letters (main)", ob.Dead["main"], reasons(ob, "main"))
	r.rep.zero("rows still pending", total(ob.Pending), fmt.Sprint(ob.Pending))
	return v, ob, msgs
}

// latency adds the commit → stream figures.
func (r *rig) latency(v verdict) {
	r.rep.add("commit→stream p50 / p99 / max", "%s / %s / %s (%d events)",
		ms(percentile(v.Latencies, 0.5)), ms(percentile(v.Latencies, 0.99)), ms(percentile(v.Latencies, 1)), len(v.Latencies))
}

// logs adds the relays' most frequent warnings and errors.
func (r *rig) logs() {
	for i, c := range r.relays.logSummary() {
		if i == 8 {
			break
		}
		r.rep.add("herald log: "+truncate(c.Key, 90), "×%d", c.N)
	}
}

func reasons(ob outboxState, destination string) string {
	var out []string
	for _, rc := range ob.DeadReasons {
		if rc.Destination == destination && len(out) < 3 {
			out = append(out, fmt.Sprintf("%d× %q", rc.N, rc.Reason))
		}
	}
	return strings.Join(out, ", ")
}

// watchOutbox samples the outbox every interval until ctx ends, logging
// each sample; the samples show when dead letters began during a fault.
type outboxSample struct {
	At            time.Time
	Pending, Dead int64
}

func (r *rig) watchOutbox(ctx context.Context, every time.Duration) <-chan []outboxSample {
	out := make(chan []outboxSample, 1)
	go func() {
		var samples []outboxSample
		defer func() { out <- samples }()
		start := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
			var s outboxSample
			q := r.load.db.WithContext(ctx)
			if q.Raw("SELECT count(*) FROM herald_outbox WHERE state = 'pending'").Scan(&s.Pending).Error != nil ||
				q.Raw("SELECT count(*) FROM herald_outbox WHERE state = 'dead'").Scan(&s.Dead).Error != nil {
				continue // the database restarting: the next sample will do
			}
			s.At = time.Now()
			samples = append(samples, s)
			r.t.Logf("+%s: %d pending, %d dead", time.Since(start).Round(time.Second), s.Pending, s.Dead)
		}
	}()
	return out
}

// readiness polls a relay's /readyz until ctx ends and records each
// change of its answer.
type readyzChange struct {
	At   time.Time
	Code int
}

func watchReadyz(ctx context.Context, rl *relay) <-chan []readyzChange {
	out := make(chan []readyzChange, 1)
	go func() {
		var changes []readyzChange
		defer func() { out <- changes }()
		last := -1
		for ctx.Err() == nil {
			code := rl.readyz(ctx)
			if ctx.Err() != nil {
				return
			}
			if code != last {
				changes = append(changes, readyzChange{At: time.Now(), Code: code})
				last = code
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return out
}

// firstChange is when /readyz first answered code after t.
func firstChange(changes []readyzChange, code int, after time.Time) (time.Duration, bool) {
	for _, c := range changes {
		if c.Code == code && !c.At.Before(after) {
			return c.At.Sub(after), true
		}
	}
	return 0, false
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
