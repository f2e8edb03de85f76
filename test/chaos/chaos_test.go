//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestChaos runs the scenarios of issue 18 one after another, each with its
// own servers; -run TestChaos/<name> picks one.
func TestChaos(t *testing.T) {
	t.Run("sigkill_relays", testSIGKILLRelays)
	t.Run("broker_down_short", func(t *testing.T) { testBrokerDown(t, suite.shortOutage, suite.shortRate, 1000) })
	t.Run("broker_down_long", func(t *testing.T) { testBrokerDown(t, suite.longOutage, suite.longRate, 100) })
	t.Run("database_restart", testDatabaseRestart)
	t.Run("slow_webhook", testSlowWebhook)
	t.Run("sustained_load", testSustainedLoad)
}

// writersFor sizes the load generator for a rate: about 25 commits a
// second per writer, which one keeps up with even while relays delete
// rows beside it and every commit waits for its WAL flush.
func writersFor(rate float64) int { return min(max(int(rate/25)+1, 2), 48) }

// a. Relays SIGKILLed while they drain a backlog: one of them, at random,
// every 1 to 3 s, restarted at once. Writers go on adding events for
// HERALD_CHAOS_SIGKILL_FOR, so that every kill finds work in flight even
// when the backlog goes fast; then the kills go on until the outbox is
// empty.
func testSIGKILLRelays(t *testing.T) {
	r := newRig(t, rigOptions{keys: suite.sigkillKeys, writers: max(4, writersFor(suite.sigkillRate)), relays: suite.sigkillRelays})
	ctx := t.Context()
	st := r.load.preload(ctx, suite.sigkillEvents, 100)
	r.rep.add("backlog written", "%d events over %d keys in %s (%.0f ev/s, 100 per transaction)",
		st.Events, suite.sigkillKeys, ms(st.Took), st.Rate())
	if st.Events != suite.sigkillEvents {
		t.Fatalf("preload committed %d of %d events: %s", st.Events, suite.sigkillEvents, st.LastError)
	}
	begin := time.Now()
	r.relays.startAll()
	chaos, stop := context.WithCancel(ctx)
	killed := make(chan []*kill, 1)
	go func() { killed <- r.killRelays(chaos) }()
	more := r.load.run(ctx, suite.sigkillRate, suite.sigkillFor)
	dr := drain(ctx, t, r.load.db, suite.sigkillDeadline)
	end := time.Now()
	stop()
	kills := <-killed
	v, _, _ := r.finish(ctx, dr)
	r.rep.add("relays", "%d, one SIGKILLed every 1–3 s and restarted at once", suite.sigkillRelays)
	r.rep.add("load while killing", "%d events at %.0f ev/s for %s, then none until drained", more.Events, more.Rate(), suite.sigkillFor)
	r.rep.add("kills", "%d", len(kills))
	r.rep.add("relayed with kills", "%d events in %s: %.0f ev/s", v.Committed, ms(end.Sub(begin)), float64(v.Committed)/end.Sub(begin).Seconds())
	restarts := make([]time.Duration, 0, len(kills))
	for _, k := range kills {
		restarts = append(restarts, k.Restart)
	}
	slices.Sort(restarts)
	r.rep.add("kill → new process relaying, p50 / max", "%s / %s", ms(percentile(restarts, 0.5)), ms(percentile(restarts, 1)))

	buckets, err := keyBuckets(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	fo := failovers(kills, v, buckets)
	r.rep.add("kills of a relay holding buckets", "%d (%d buckets)", fo.kills, fo.buckets)
	r.rep.add("killed relay's buckets owned by another, p50 / max", "%s / %s", ms(fo.takeoverP50), ms(fo.takeoverMax))
	r.rep.add("buckets with work pending: next message stored, slowest", "%s", ms(fo.flowMax))
	r.rep.add("buckets whose next owner was killed too before they flowed", "%d, slowest %s", fo.chained, ms(fo.chainedMax))
	r.rep.add("failover per kill, p50 / p90", "%s / %s", ms(fo.p50), ms(fo.p90))
	r.rep.within("failover, slowest kill", fo.max, suite.failoverTarget, fo.kills > 0)
	stall, key := longestKeyStall(v, begin)
	r.rep.add("longest wait of a key's head (events written while killing)", "%s (%s)", ms(stall), key)
	r.logs()
}

// kill is one SIGKILL and what followed it.
type kill struct {
	At      time.Time
	Victim  string // the relay's lease owner name
	Buckets []int  // the buckets it held
	// Takeover is, by bucket, how long after the kill another relay
	// owned it.
	Takeover  map[int]time.Duration
	NextOwner map[int]string
	Restart   time.Duration // until the new process ran its relay
}

// killRelays kills a random relay every 1 to 3 s until ctx ends, and
// restarts it at once; each kill is watched until its buckets have
// another owner.
func (r *rig) killRelays(ctx context.Context) []*kill {
	var kills []*kill
	var watching sync.WaitGroup
	defer watching.Wait()
	for {
		sleep(ctx, time.Second+rand.N(2*time.Second))
		if ctx.Err() != nil {
			return kills
		}
		slot := rand.IntN(len(r.relays.slots))
		victim := r.relays.current(slot)
		k := &kill{Victim: victim.Name(), Takeover: map[int]time.Duration{}, NextOwner: map[int]string{}}
		// Which of them had work pending is read from the stream
		// afterwards: asking the outbox now costs seconds of dead index
		// entries behind a fast drain.
		if err := r.load.db.WithContext(ctx).Raw(`SELECT bucket FROM herald_outbox_buckets
			WHERE destination = 'main' AND owner = ? AND expires_at > now() ORDER BY bucket`, k.Victim).Scan(&k.Buckets).Error; err != nil && ctx.Err() == nil {
			r.t.Logf("kill: buckets of %s: %v", k.Victim, err)
		}
		k.At = time.Now()
		r.relays.kill(slot)
		if len(k.Buckets) > 0 {
			watching.Go(func() { r.watchTakeover(k) })
		}
		if _, err := r.relays.start(slot); err != nil {
			r.t.Errorf("restart after kill: %v", err)
			return kills
		}
		k.Restart = time.Since(k.At)
		kills = append(kills, k)
	}
}

// watchTakeover polls the bucket leases until every one of the victim's
// buckets has another owner, for two minutes at most.
func (r *rig) watchTakeover(k *kill) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	left := slices.Clone(k.Buckets)
	for len(left) > 0 && ctx.Err() == nil {
		var owners []struct {
			Bucket int
			Owner  *string
		}
		if err := r.load.db.WithContext(ctx).Raw(`SELECT bucket, owner FROM herald_outbox_buckets
			WHERE destination = 'main' AND bucket IN ?`, left).Scan(&owners).Error; err != nil {
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		now := time.Since(k.At)
		for _, o := range owners {
			if o.Owner != nil && *o.Owner != k.Victim {
				k.Takeover[o.Bucket] = now
				k.NextOwner[o.Bucket] = *o.Owner
				left = slices.DeleteFunc(left, func(b int) bool { return b == o.Bucket })
			}
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// keyBuckets maps each key to its bucket, as the outbox computes it.
func keyBuckets(ctx context.Context, r *rig) (map[string]int, error) {
	var rows []struct {
		Key    string
		Bucket int
	}
	if err := r.load.db.WithContext(ctx).Raw("SELECT DISTINCT key, hashtext(key) & 63 AS bucket FROM " + itemsTable).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("buckets of the keys: %w", err)
	}
	out := make(map[string]int, len(rows))
	for _, row := range rows {
		out[row.Key] = row.Bucket
	}
	return out, nil
}

type failoverFigures struct {
	kills, buckets, chained int
	// A kill's failover is its slowest bucket's: the next message stored
	// for a bucket with work pending at the kill, the takeover of its
	// lease for one without.
	p50, p90, max time.Duration
	// flowMax is the slowest of the buckets with work pending.
	flowMax                  time.Duration
	takeoverP50, takeoverMax time.Duration
	// chainedMax is the slowest bucket whose next owner was killed too
	// before it flowed: the wait of two kills in a row, left out above.
	chainedMax time.Duration
}

// failovers measures how long each kill's buckets took to be served again.
// A bucket had work pending when one of its events committed before the
// kill was stored after it; such a bucket flowed again when the stream
// stored its next message (one stored within 100 ms of the kill may still
// be the victim's, leaving its socket, and does not count). A bucket
// without work was served again when another relay owned it: an event
// arriving earlier would have waited that long.
func failovers(kills []*kill, v verdict, buckets map[string]int) failoverFigures {
	type span struct{ committed, stored time.Time }
	work := map[int][]span{}
	stored := map[int][]time.Time{}
	for _, c := range v.truth {
		at, ok := v.stored(c.ID)
		if !ok {
			at = time.Unix(1<<40, 0) // never: pending for ever
		}
		b := buckets[c.Key]
		work[b] = append(work[b], span{c.At, at})
		if ok {
			stored[b] = append(stored[b], at)
		}
	}
	for _, ts := range stored {
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	}
	pendingAt := func(b int, t time.Time) bool {
		return slices.ContainsFunc(work[b], func(s span) bool { return s.committed.Before(t) && s.stored.After(t) })
	}
	killedAt := map[string]time.Time{}
	for _, k := range kills {
		killedAt[k.Victim] = k.At
	}
	// never is what a bucket gets that was not served again while watched.
	const never = 2 * time.Minute
	var f failoverFigures
	var perKill, takeovers []time.Duration
	for _, k := range kills {
		if len(k.Buckets) == 0 {
			continue
		}
		var slowest time.Duration
		for _, b := range k.Buckets {
			owned, ok := k.Takeover[b]
			if ok {
				takeovers = append(takeovers, owned)
			} else {
				owned = never
			}
			took := owned
			if pendingAt(b, k.At) {
				took = never
				ts := stored[b]
				from := k.At.Add(100 * time.Millisecond)
				if i := sort.Search(len(ts), func(i int) bool { return ts[i].After(from) }); i < len(ts) {
					took = ts[i].Sub(k.At)
				}
				f.flowMax = max(f.flowMax, took)
			}
			if next, ok := killedAt[k.NextOwner[b]]; ok && next.After(k.At) && next.Before(k.At.Add(took)) {
				f.chained++
				f.chainedMax = max(f.chainedMax, took)
				continue
			}
			f.buckets++
			slowest = max(slowest, took)
		}
		perKill = append(perKill, slowest)
	}
	slices.Sort(perKill)
	slices.Sort(takeovers)
	f.kills = len(perKill)
	f.p50, f.p90, f.max = percentile(perKill, 0.5), percentile(perKill, 0.9), percentile(perKill, 1)
	f.takeoverP50, f.takeoverMax = percentile(takeovers, 0.5), percentile(takeovers, 1)
	return f
}

// longestKeyStall is the longest an event committed after from waited at
// the head of its key (committed, and its key's previous event stored)
// before it was stored: how long a key stood still with work to do. The
// backlog written before from is left out, since its events wait behind
// the rest of their bucket by design.
func longestKeyStall(v verdict, from time.Time) (time.Duration, string) {
	var longest time.Duration
	var which string
	var prevKey string
	var prevStored time.Time
	for _, c := range v.truth { // by key, in commit order
		if c.Key != prevKey {
			prevKey, prevStored = c.Key, time.Time{}
		}
		at, ok := v.stored(c.ID)
		if !ok {
			continue // lost: counted as such
		}
		head := c.At
		if prevStored.After(head) {
			head = prevStored
		}
		if d := at.Sub(head); c.At.After(from) && d > longest {
			longest, which = d, fmt.Sprintf("%s event %d, stored %s", c.Key, c.N, at.Format("15:04:05.000"))
		}
		prevStored = at
	}
	return longest, which
}

// b. The broker SIGKILLed under load and restarted after outage, on the
// same port and store.
func testBrokerDown(t *testing.T, outage time.Duration, rate float64, keys int) {
	r := newRig(t, rigOptions{keys: keys, writers: writersFor(rate), relays: 2})
	ctx := t.Context()
	r.relays.startAll()
	warm, after := 20*time.Second, max(60*time.Second, 2*suite.drainTarget)
	loaded := make(chan loadStats, 1)
	go func() { loaded <- r.load.run(ctx, rate, warm+outage+after) }()
	sleep(ctx, warm)

	watch, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	readyz := watchReadyz(watch, r.relays.current(0))
	samples := r.watchOutbox(watch, max(5*time.Second, outage/20))
	down := time.Now()
	r.nats.kill()
	sleep(ctx, outage)
	start, cancel := context.WithTimeout(ctx, time.Minute)
	err := r.nats.start(start)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	st := <-loaded
	dr := drain(ctx, t, r.load.db, suite.drainTimeout)
	stopWatching()
	changes, series := <-readyz, <-samples
	v, _, msgs := r.finish(ctx, dr)

	r.rep.add("load", "%.0f ev/s offered over %d keys, %.0f ev/s committed (%d events, %d failed transactions)",
		rate, keys, st.Rate(), st.Events, st.FailedTx)
	r.rep.add("broker down", "%s (SIGKILL, restarted on the same port and store)", ms(up.Sub(down)))
	for _, s := range series {
		if s.Dead > 0 {
			r.rep.add("first dead letter", "+%s after the kill", s.At.Sub(down).Round(time.Second))
			break
		}
	}
	if d, ok := firstChange(changes, 503, down); ok {
		r.rep.add("/readyz 503", "+%s after the kill", ms(d))
	} else {
		r.rep.add("/readyz 503", "never seen")
	}
	if d, ok := firstChange(changes, 200, up); ok {
		r.rep.add("/readyz 200 again", "+%s after the restart", ms(d))
	} else {
		r.rep.add("/readyz 200 again", "never seen")
	}
	took, backlog, ok := v.drainedAfter(up)
	r.rep.add("backlog at the restart", "%d events", backlog)
	r.rep.within("backlog drained after the restart", took, suite.drainTarget, ok)
	if ok && took > 0 {
		r.rep.add("backlog drain rate", "%.0f ev/s", float64(backlog)/took.Seconds())
	}
	pause, _ := longestPause(msgs, down, up.Add(after))
	r.rep.add("longest pause in the stream", "%s", ms(pause))
	r.latency(v)
	r.logs()
}

// c. The database restarted under load (pg_ctl restart -m fast): relays
// and writers must reconnect by themselves.
func testDatabaseRestart(t *testing.T) {
	rate := suite.restartRate
	r := newRig(t, rigOptions{keys: 1000, writers: writersFor(rate), relays: 2})
	ctx := t.Context()
	r.relays.startAll()
	warm, after := 20*time.Second, 60*time.Second
	loaded := make(chan loadStats, 1)
	go func() { loaded <- r.load.run(ctx, rate, warm+after) }()
	sleep(ctx, warm)
	down := time.Now()
	if err := r.pg.restart(ctx); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	st := <-loaded
	dr := drain(ctx, t, r.load.db, suite.drainTimeout)
	v, _, msgs := r.finish(ctx, dr)

	r.rep.add("load", "%.0f ev/s offered over 1000 keys, %.0f ev/s committed (%d events)", rate, st.Rate(), st.Events)
	r.rep.add("pg_ctl restart -m fast", "%s", ms(up.Sub(down)))
	r.rep.add("writers' failed transactions", "%d (%d events unanswered, %d of which committed)", st.FailedTx, st.Unanswered, v.Unanswered)
	resumed, ok := time.Duration(0), false
	for _, m := range msgs {
		if m.At.After(up) {
			resumed, ok = m.At.Sub(up), true
			break
		}
	}
	r.rep.within("relays publishing again after the restart", resumed, suite.drainTarget, ok)
	took, backlog, ok := v.drainedAfter(up)
	r.rep.add("backlog at the restart", "%d events", backlog)
	r.rep.within("backlog drained after the restart", took, suite.drainTarget, ok)
	pause, _ := longestPause(msgs, down.Add(-warm/2), up.Add(after/2))
	r.rep.add("longest pause in the stream", "%s", ms(pause))
	r.latency(v)
	r.logs()
}

// d. A slow but healthy webhook endpoint, registered at runtime, beside
// the main NATS destination: every request answered 204 after
// HERALD_CHAOS_WEBHOOK_DELAY (10 s) with subscriptions.timeout 15s and a
// retry schedule of [1s, 1s]. No event may become a dead letter that the
// endpoint never got.
func testSlowWebhook(t *testing.T) {
	rc := startReceiver(t, suite.webhookDelay)
	r := newRig(t, rigOptions{keys: suite.webhookKeys, writers: 1, relays: 1, extraConfig: `subscriptions:
  timeout: 15s
  retry_schedule: [1s, 1s]
  allow_cidrs: ["127.0.0.1/32"]
`})
	ctx := t.Context()
	const endpoint = "slow"
	if _, err := runHerald(ctx, "webhooks", "add", endpoint, "-c", r.config, "--url", rc.URL, "--type", eventType); err != nil {
		t.Fatal(err)
	}
	r.relays.startAll()
	select {
	case <-r.relays.current(0).log.waitFor("delivering to webhook endpoint"):
	case <-time.After(30 * time.Second):
		t.Fatalf("no relay for the webhook endpoint within 30s:\n%s", tail(r.relays.current(0).log.path, 20))
	}
	st := r.load.preload(ctx, suite.webhookEvents, 10)
	if st.Events != suite.webhookEvents {
		t.Fatalf("committed %d of %d events: %s", st.Events, suite.webhookEvents, st.LastError)
	}
	// Four requests at a time (subscriptions.concurrency) of delay each,
	// three times over for retries, and slack.
	timeout := max(suite.drainTimeout, 3*time.Duration(suite.webhookEvents/4+1)*suite.webhookDelay+2*time.Minute)
	dr := drain(ctx, t, r.load.db, timeout)
	_, ob, _ := r.finish(ctx, dr)

	dest := "webhook:" + endpoint
	c := rc.counts()
	var requests, cut, delivered, neverRequested, deadAfter204 int
	var neverIDs []string
	for _, n := range c.requests {
		requests += n
	}
	for _, n := range c.gone {
		cut += n
	}
	delivered = len(c.answered)
	for _, id := range ob.deadIDs[dest] {
		switch {
		case c.requests[id] == 0:
			neverRequested++
			if len(neverIDs) < 3 {
				neverIDs = append(neverIDs, id)
			}
		case c.answered[id] > 0:
			deadAfter204++
		}
	}
	r.rep.add("endpoint", "answers 204 after %s; timeout 15s, retry_schedule [1s, 1s], %d events over %d keys",
		suite.webhookDelay, suite.webhookEvents, suite.webhookKeys)
	r.rep.add("requests", "%d for %d events (%d cut off by Herald before the answer, at most %d at once)",
		requests, len(c.requests), cut, c.maxInFlight)
	r.rep.add("events answered 204", "%d", delivered)
	r.rep.add("dead letters of the endpoint", "%d %s", ob.Dead[dest], reasons(ob, dest))
	r.rep.add("dead letters the endpoint had answered 204", "%d", deadAfter204)
	r.rep.zero("dead letters never requested", neverRequested, strings.Join(neverIDs, ", "))
	r.logs()
}

// e. Sustained load with two relays: commit → stream latency and the
// relays' memory over time.
func testSustainedLoad(t *testing.T) {
	rate := suite.sustainedRate
	r := newRig(t, rigOptions{keys: 1000, writers: writersFor(rate), relays: 2})
	ctx := t.Context()
	r.relays.startAll()
	sampling, stopSampling := context.WithCancel(ctx)
	rss := r.sampleRSS(sampling, 5*time.Second)
	st := r.load.run(ctx, rate, suite.sustained)
	stopSampling()
	series := <-rss
	dr := drain(ctx, t, r.load.db, suite.drainTimeout)
	v, _, _ := r.finish(ctx, dr)

	r.rep.add("load", "%.0f ev/s offered over 1000 keys for %s, %.0f ev/s committed (%d events, %d writers)",
		rate, suite.sustained, st.Rate(), st.Events, r.load.writers)
	if st.Rate() < 0.9*rate {
		t.Logf("the load generator reached only %.0f of %.0f ev/s: the machine, not Herald, set this pace", st.Rate(), rate)
	}
	r.latency(v)
	p99 := percentile(v.Latencies, 0.99)
	r.rep.within("commit→stream p99", p99, suite.sustainedP99, len(v.Latencies) > 0)
	for slot, s := range series {
		if len(s) < 4 {
			r.rep.check(fmt.Sprintf("relay %d RSS", slot), fmt.Sprintf("%d samples", len(s)), false, "sampled")
			continue
		}
		half := len(s) / 2
		first, second := slices.Max(s[:half]), slices.Max(s[half:])
		r.rep.add(fmt.Sprintf("relay %d RSS first / max / last", slot), "%s / %s / %s (%d samples)",
			mib(s[0]), mib(slices.Max(s)), mib(s[len(s)-1]), len(s))
		// Flat: the second half's peak within a quarter (and 16 MiB of
		// allocator slack) of the first half's.
		bound := first + first/4 + 16*1024
		r.rep.check(fmt.Sprintf("relay %d RSS peak, second half", slot), mib(second), second <= bound, "≤ "+mib(bound))
	}
	r.logs()
}

// sampleRSS reads every relay's VmRSS every interval until ctx ends.
func (r *rig) sampleRSS(ctx context.Context, every time.Duration) <-chan [][]int {
	out := make(chan [][]int, 1)
	go func() {
		series := make([][]int, len(r.relays.slots))
		defer func() { out <- series }()
		for {
			sleep(ctx, every)
			if ctx.Err() != nil {
				return
			}
			for slot := range series {
				if rl := r.relays.current(slot); rl != nil && rl.running() {
					if kib, err := rssKiB(rl.Pid()); err == nil {
						series[slot] = append(series[slot], kib)
					}
				}
			}
		}
	}()
	return out
}

func mib(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
