package producer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/pkg/outbox"
)

// The engine is one Run of a relay (docs/outbox.md, "How relays deliver").
// Three stages, each one goroutine, pass batches down channels:
//
//	read (Run's own goroutine) → publish → record
//
// The reader reads the buckets the relay leases in seq order; the publisher
// hands one batch at a time to the adapter, holding back the keys whose
// events failed; the recorder deletes what the broker acknowledged and
// stores failures. A fourth goroutine keeps the bucket leases. Run owns them
// all and waits for each.
type engine struct {
	r       *Relay
	store   *outbox.Store
	leases  leaseState
	holds   holds
	parked  parked
	breaker breaker

	toPublish chan []outbox.Row
	toRecord  chan recordBatch
	// inflight counts batches read and not yet recorded; recorded gets a
	// signal each time one is.
	inflight atomic.Int64
	recorded chan struct{}
	// worked counts rows the publisher and recorder acted on (sent,
	// dead-lettered), so the reader can tell a pass that found work from
	// one that found only held rows.
	worked atomic.Int64
}

// Tuning of the engine, fixed rather than settings: none of them changes
// what is delivered, only how soon.
const (
	// resetEvery bounds how long a sustained backlog keeps the reader going
	// forward from its last seq: a row that committed late is read on the
	// next pass from the lowest pending seq.
	resetEvery = time.Second
	// maxLeaseTick bounds the lease keeper's period, so relays joining a
	// destination get their share within seconds, and a dead relay's
	// buckets are taken within half a second of its lease running out.
	maxLeaseTick = 500 * time.Millisecond
	// shortLeaseTick is how soon a relay short of its share of buckets
	// asks again.
	shortLeaseTick    = 50 * time.Millisecond
	maxShortLeaseTick = 250 * time.Millisecond
	// maxSkipKeys bounds the held keys a read leaves out in SQL; beyond it
	// (a broker outage holding every key) the publisher passes them over.
	maxSkipKeys = 100
	// doorbellAfter is how long a relay finds nothing before it asks
	// writers to ring (outbox.Store.Wait); while it keeps finding work it
	// polls and costs the writers nothing.
	doorbellAfter = 40 * time.Millisecond
)

func newEngine(r *Relay) *engine {
	return &engine{
		r:         r,
		store:     r.store,
		holds:     holds{until: map[string]time.Time{}},
		parked:    parked{keys: map[string]bool{}},
		toPublish: make(chan []outbox.Row, 1),
		toRecord:  make(chan recordBatch, 1),
		recorded:  make(chan struct{}, 1),
	}
}

// run relays until ctx ends, then finishes what is in flight and hands the
// buckets back.
func (e *engine) run(ctx context.Context) error {
	bg := context.WithoutCancel(ctx)
	if err := e.renew(ctx); err != nil {
		// Whatever the first renewal took, it hands back, whether ctx ended
		// during it or the database said no.
		e.leave(bg)
		select {
		case <-ctx.Done():
			return nil // shut down before it started
		default:
			return fmt.Errorf("relay: lease buckets: %w", err)
		}
	}
	// The lease keeper outlives ctx: in-flight acks may take the shutdown
	// timeout, and the buckets must stay ours until they are recorded.
	keepCtx, stopKeeping := context.WithCancel(bg)
	var wg sync.WaitGroup
	wg.Go(func() { e.keepLeases(keepCtx) })
	wg.Go(func() { e.publishStage(ctx) })
	wg.Go(func() { e.recordStage(bg) })

	e.readStage(ctx)

	close(e.toPublish)
	for e.inflight.Load() > 0 {
		<-e.recorded
	}
	close(e.toRecord)
	stopKeeping()
	wg.Wait()
	e.leave(bg)
	return nil
}

// leave hands the buckets back at once and takes the relay off the doorbell.
func (e *engine) leave(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	name := e.r.cfg.name
	if err := errors.Join(e.store.StopWaiting(ctx, name), e.store.Leave(ctx, name)); err != nil {
		e.r.cfg.log.Warn("relay: could not hand buckets back; they are free once the lease runs out", "error", err)
	}
}

// readStage reads batches until ctx ends. Within a pass it reads forward
// from the last seq while earlier batches are in flight; once it reaches the
// end, a held key or a backoff is due, its buckets changed, or resetEvery
// has passed, it waits for the pipeline to empty and starts a new pass from
// the lowest pending seq.
func (e *engine) readStage(ctx context.Context) {
	cfg := &e.r.cfg
	var (
		buckets    []int
		version    = -1
		cursor     int64
		atEnd      = true
		passStart  time.Time
		passWorked int64
		minPoll    = min(5*time.Millisecond, cfg.pollInterval)
		wait       = minPoll
		idleSince  time.Time
		waiting    bool // on the doorbell
		waitUntil  time.Time
		timer      = time.NewTimer(0)
	)
	defer timer.Stop()
	<-timer.C
	sleep := func(d time.Duration) bool {
		timer.Reset(d)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-e.r.wake:
			wait = minPoll
		case <-timer.C:
		}
		return true
	}
	// failed logs a database error, waits a poll interval and ends the pass;
	// it reports false once ctx has ended.
	failed := func(what string, err error) bool {
		atEnd = true
		if ctx.Err() != nil {
			return false
		}
		cfg.log.Error("relay: "+what+" failed", "error", err)
		return sleep(cfg.pollInterval)
	}
	var parkedAt time.Time // the last read of the parked keys
	for ctx.Err() == nil {
		if e.breaker.isOpen() {
			if !e.awaitProbe(ctx) {
				return
			}
			atEnd, passStart = true, time.Time{} // a new pass, from the lowest seq
			continue
		}
		now := time.Now()
		due := e.holds.due(now)
		_, newVersion := e.leases.snapshot()
		forced := now.Sub(passStart) >= resetEvery || due || newVersion != version
		if forced || atEnd {
			if e.inflight.Load() > 0 {
				// Batches are in flight: wait for them. The next pass must
				// start from the lowest pending seq, where a transaction
				// that committed late shows up; reading forward instead
				// held such rows back until the forced pass (p99 over
				// 500 ms at 1,000 events/s with 16 writers).
				e.awaitRecorded(ctx)
				continue
			}
			if atEnd && e.worked.Load() == passWorked && !passStart.IsZero() && !due && newVersion == version {
				// The last pass found nothing to do: wait for a commit, a
				// due backoff or the poll interval.
				if idleSince.IsZero() {
					idleSince = now
				}
				if !waiting && now.Sub(idleSince) >= doorbellAfter || waiting && time.Until(waitUntil) < 2*cfg.pollInterval {
					// Ring-me first, then one more pass: a commit between
					// the last read and the registration is not missed.
					waitUntil = now.Add(4*cfg.pollInterval + 5*time.Second)
					if err := e.store.Wait(ctx, cfg.name, waitUntil); err != nil && ctx.Err() == nil {
						cfg.log.Warn("relay: could not ask for a doorbell; polling", "error", err)
					}
					waiting = true
				} else {
					d := wait
					if next := e.holds.next(); !next.IsZero() {
						d = min(d, max(time.Until(next), time.Millisecond))
					}
					if !sleep(d) {
						return
					}
					wait = min(2*wait, cfg.pollInterval)
				}
			} else {
				wait = minPoll
				idleSince = time.Time{}
				if waiting {
					waiting = false
					if err := e.store.StopWaiting(ctx, cfg.name); err != nil && ctx.Err() == nil {
						cfg.log.Warn("relay: could not leave the doorbell", "error", err)
					}
				}
			}
			// A new pass, with nothing in flight: now is when buckets may
			// change hands.
			before := version
			buckets, version = e.applyLeases(ctx)
			if e.parks() && (version != before || time.Since(parkedAt) >= resetEvery) {
				// A dead letter retried or purged by an operator frees its
				// key within a second.
				keys, err := e.store.ParkedKeys(ctx, buckets)
				if err != nil {
					if !failed("reading the keys parked behind dead letters", err) {
						return
					}
					continue
				}
				e.parked.set(keys)
				parkedAt = time.Now()
			}
			e.holds.prune(time.Now())
			cursor, passStart, passWorked = 0, time.Now(), e.worked.Load()
		}
		if len(buckets) == 0 {
			atEnd = true // nothing leased yet: the keeper wakes us when there is
			continue
		}
		routing := cfg.router != nil && !cfg.router.Empty()
		if routing {
			// Fan out first: main deletes a row once it is delivered, and
			// by then every destination must have its copy.
			n, err := e.store.Route(ctx, buckets, cfg.router, cfg.batchSize)
			if err != nil {
				if !failed("fanning out to destinations", err) {
					return
				}
				continue
			}
			e.worked.Add(int64(n))
		}
		limit := cfg.batchSize
		if e.breaker.isProbing() {
			// Half-open: one small batch at a time until one gets through.
			limit = min(limit, probeBatch)
			if e.inflight.Load() > 0 {
				e.awaitRecorded(ctx)
				continue
			}
		}
		rows, err := e.store.Read(ctx, outbox.ReadQuery{Buckets: buckets, After: cursor, SkipKeys: e.skipKeys(),
			RoutedOnly: routing, Limit: limit})
		if err != nil {
			if !failed("read", err) {
				return
			}
			continue
		}
		atEnd = len(rows) < limit
		if len(rows) == 0 {
			continue
		}
		cursor = rows[len(rows)-1].Seq
		e.inflight.Add(1)
		select {
		case e.toPublish <- rows:
		case <-ctx.Done():
			e.inflight.Add(-1)
			return
		}
	}
}

// awaitRecorded waits until a batch in flight is recorded; it reports false
// if ctx ended first.
func (e *engine) awaitRecorded(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-e.recorded:
		return true
	}
}

// parks reports whether dead letters park their keys.
func (e *engine) parks() bool { return e.store.Ordered() && e.r.cfg.deadLetters == ParkKey }

// skipKeys returns the held and parked keys for a read to leave out, or nil
// when there are more than maxSkipKeys: the publisher passes them over then.
func (e *engine) skipKeys() []string {
	keys := e.holds.keys(maxSkipKeys)
	if !e.parks() {
		return keys
	}
	p := e.parked.list()
	if len(p) == 0 {
		return keys
	}
	if keys == nil && e.holds.count() > 0 || len(keys)+len(p) > maxSkipKeys {
		return nil
	}
	return append(keys, p...)
}

// awaitProbe waits, with nothing in flight, until the open breaker's probe
// is due, and then lets a probe through: at once when the adapter's Checker
// says the destination answers, or when it has none. It reports false once
// ctx has ended.
func (e *engine) awaitProbe(ctx context.Context) bool {
	for e.inflight.Load() > 0 {
		if !e.awaitRecorded(ctx) {
			return false
		}
	}
	t := time.NewTimer(time.Until(e.breaker.nextProbe()))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	if c, ok := e.r.pub.(adapters.Checker); ok {
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		err := c.Check(cctx)
		cancel()
		if err != nil {
			e.breaker.trip(adapters.Unavailable(err), time.Now(), 0)
			return ctx.Err() == nil
		}
	}
	e.breaker.halfOpen()
	return true
}

// applyLeases gives back the buckets beyond the relay's share and returns
// the buckets to read. It runs only with nothing in
// flight, so no bucket changes hands with work of it outstanding.
func (e *engine) applyLeases(ctx context.Context) ([]int, int) {
	e.leases.changing.Lock()
	defer e.leases.changing.Unlock()
	held, version := e.leases.snapshot()
	share := e.leases.shareNow()
	if extra := len(held) - share; extra > 0 && share > 0 {
		// Buckets taken only just now (a dead relay's, taken beyond the
		// share so that its keys flow at once) are read for a pass before
		// they go to the relay short of its share.
		give := e.leases.settled(time.Now().Add(-resetEvery), extra)
		if len(give) == 0 {
			return slices.Clone(held), version
		}
		if err := e.store.ReleaseBuckets(ctx, e.r.cfg.name, give); err != nil {
			e.r.cfg.log.Warn("relay: could not give buckets back", "buckets", len(give), "error", err)
		} else {
			held, version = e.leases.drop(give)
			e.r.cfg.log.Debug("relay: gave buckets back for a new relay", "buckets", len(give))
		}
	}
	return slices.Clone(held), version
}

// keepLeases renews the relay's membership and bucket leases until ctx
// ends, taking its share of buckets as relays come and go.
func (e *engine) keepLeases(ctx context.Context) {
	tick := min(e.r.cfg.lease/3, maxLeaseTick)
	// While the relay holds less than its share it asks again soon,
	// backing off to tick: buckets another relay gives back must not sit
	// unread until the next renewal.
	short := shortLeaseTick
	t := time.NewTimer(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := e.renew(ctx)
		if err != nil && ctx.Err() == nil {
			e.r.cfg.log.Error("relay: renewing bucket leases failed", "error", err)
		}
		next := tick
		if held, _ := e.leases.snapshot(); err == nil && len(held) < e.leases.shareNow() {
			next, short = min(short, tick), min(2*short, tick, maxShortLeaseTick)
		} else {
			short = shortLeaseTick
		}
		t.Reset(next)
	}
}

func (e *engine) renew(ctx context.Context) error {
	e.leases.changing.Lock()
	defer e.leases.changing.Unlock()
	cfg := &e.r.cfg
	start := time.Now() // the leases run from before the statements, to be safe
	relays, err := e.store.Join(ctx, cfg.name, cfg.lease)
	if err != nil {
		return err
	}
	share := (outbox.Buckets + relays - 1) / relays
	got, err := e.store.Lease(ctx, cfg.name, share, cfg.lease)
	if err != nil {
		return err
	}
	if n := len(got.TakenOver); n > 0 {
		cfg.observer.Reclaimed(n)
		cfg.log.Warn("took over buckets whose relay stopped renewing; their unrecorded events are published again", "buckets", n)
	}
	if e.leases.set(got.Held, share, start) {
		e.r.Notify()
	}
	return nil
}

// publishStage publishes batches one at a time until the reader closes its
// channel. Once ctx ends, batches not yet started are dropped: their rows
// stay pending for the next holder of the bucket.
func (e *engine) publishStage(ctx context.Context) {
	for rows := range e.toPublish {
		if ctx.Err() != nil {
			e.toRecord <- recordBatch{}
			continue
		}
		e.toRecord <- e.publishBatch(ctx, rows)
	}
}

// recordBatch is what one published batch hands the recorder: the rows'
// outcomes and, with the delivery log, the attempts to log with them.
type recordBatch struct {
	outcomes []outbox.Outcome
	attempts []outbox.Attempt
}

// logAttempt adds an attempt at row to the batch's delivery log when the
// relay keeps one. Its number is the row's attempts + 1 whether or not the
// outcome counts one: an unavailable destination's does not, and the next
// attempt carries the same number.
func (e *engine) logAttempt(b *recordBatch, row outbox.Row, outcome outbox.AttemptOutcome, res adapters.Result, answer error,
	at time.Time, took time.Duration,
) {
	cfg := &e.r.cfg
	if !cfg.deliveryLog {
		return
	}
	a := outbox.Attempt{At: at, Destination: row.Destination, EventID: row.EventID, EventType: row.EventType,
		Number: row.Attempts + 1, Outcome: outcome, Status: res.Status, Latency: took}
	if answer != nil {
		// Redacted whole, before the store cuts it to size: a secret cut
		// in two would no longer be recognised.
		a.Answer = answer.Error()
		if cfg.redact != nil {
			a.Answer = cfg.redact(a.Answer)
		}
	}
	b.attempts = append(b.attempts, a)
}

// publishBatch publishes the rows that may go now and returns their
// outcomes, and with the delivery log their attempts. With ordering, once
// a key's row fails or is left unsent, none of
// its later rows goes out until a pass reads the key from its head again.
// Only an event's own failure becomes an outcome that spends an attempt; a
// destination-wide fault opens the breaker and leaves every row as it was.
func (e *engine) publishBatch(ctx context.Context, rows []outbox.Row) recordBatch {
	cfg := &e.r.cfg
	ordered := e.store.Ordered()
	now := time.Now()
	keyed := func(key string) bool { return ordered && key != "" }
	if e.breaker.isOpen() || !e.leases.valid(now, cfg.lease) {
		// The destination is down, or the renewals have failed for a whole
		// lease and another relay may hold these buckets by now. The rows
		// stay pending for whoever holds them next (this relay too, once it
		// renews or the probe gets through), and their keys wait for a pass
		// that reads them from their heads: a later batch of this pass,
		// already read, must not overtake them once the lease is renewed.
		for _, row := range rows {
			if keyed(row.PartitionKey) {
				e.holds.add(row.PartitionKey, now)
			} else {
				e.holds.wakeAt(now)
			}
		}
		return recordBatch{}
	}
	var batch recordBatch
	if cfg.deliveryLog {
		batch.attempts = make([]outbox.Attempt, 0, len(rows))
	}
	outcomes := make([]outbox.Outcome, 0, len(rows))
	msgs := make([]adapters.Message, 0, len(rows))
	sent := make([]int, 0, len(rows)) // index into rows of each message
	for i, row := range rows {
		key := row.PartitionKey
		if keyed(key) && (e.holds.has(key) || e.parked.has(key)) {
			continue
		}
		if row.AvailableAt.After(now) {
			// Waiting out a backoff, recorded by this relay or by one
			// before it: with ordering its key waits too.
			if keyed(key) {
				e.holds.add(key, row.AvailableAt)
			} else {
				e.holds.wakeAt(row.AvailableAt)
			}
			continue
		}
		ev, err := checkPayload(row)
		if err != nil {
			// Rows written with plain SQL skip outbox.Write's validation:
			// quarantine a malformed one with the reason rather than hand
			// consumers something they cannot read.
			o := outbox.Outcome{Seq: row.Seq, Err: adapters.Permanent(err), Dead: true}
			outcomes = append(outcomes, o)
			// Logged although nothing was sent: it is how this event's
			// story ends, and the log is where an operator looks for it.
			e.logAttempt(&batch, row, outbox.AttemptDead, adapters.Result{}, o.Err, now, 0)
			e.r.stats.dead.Add(1)
			cfg.observer.DeadLettered(row.EventType)
			cfg.log.Warn("event dead-lettered: invalid payload", "event_id", row.EventID, "error", err)
			if keyed(key) {
				e.deadHead(key, now) // holds the key: its later rows stay unsent
			}
			continue
		}
		msgs = append(msgs, adapters.Message{ID: row.EventID, Type: row.EventType, PartitionKey: key,
			Payload: row.Payload, TraceParent: ev.TraceParent})
		sent = append(sent, i)
	}
	start := time.Now()
	results, cut := e.r.tracedPublish(ctx, msgs)
	now = time.Now()
	// Adapters report a batch's results together, so the latency logged
	// is the batch's: from the Publish call to its results.
	took := now.Sub(start)
	j := e.judge(ctx, msgs, results, cut, now)
	for k, res := range results {
		row := rows[sent[k]]
		key := row.PartitionKey
		if res.Err != nil {
			switch j.verdicts[k] {
			case heldBack:
				// Behind its key's earlier row: not an attempt. The next
				// pass reads it again (with ordering, after the hold the
				// earlier row left on the key).
				if !keyed(key) {
					e.holds.wakeAt(now)
				}
				continue
			case notSent, destFault:
				// Not the event's fault: it stays as it was, and its key
				// waits for a pass that reads it from its head. A
				// destination that was down did answer, and that answer
				// is logged; an event never sent made no attempt.
				if j.verdicts[k] == destFault {
					e.logAttempt(&batch, row, outbox.AttemptUnavailable, res, res.Err, start, took)
				}
				if keyed(key) {
					e.holds.add(key, now)
				} else {
					e.holds.wakeAt(now)
				}
				continue
			}
		}
		o := outbox.Outcome{Seq: row.Seq}
		e.r.decide(&o, row, res, now)
		switch {
		case o.Err == nil:
			e.logAttempt(&batch, row, outbox.AttemptDelivered, res, nil, start, took)
		case o.Dead:
			e.logAttempt(&batch, row, outbox.AttemptDead, res, o.Err, start, took)
		default:
			e.logAttempt(&batch, row, outbox.AttemptFailed, res, o.Err, start, took)
		}
		switch {
		case o.Dead && keyed(key):
			e.deadHead(key, now)
		case o.Err != nil && o.Dead:
		case o.Err != nil && keyed(key):
			e.holds.add(key, o.RetryAt)
		case o.Err != nil:
			e.holds.wakeAt(o.RetryAt)
		}
		outcomes = append(outcomes, o)
	}
	if j.down != nil {
		if e.breaker.trip(j.down, now, j.retryAfter) {
			cfg.observer.Paused(true)
			cfg.log.Warn("destination unavailable: pausing it, no event spends an attempt; probing until it answers",
				"error", j.down)
		}
	} else if len(msgs) > 0 {
		// The destination answered, even if only to refuse events.
		if d := e.breaker.answered(now, j.delivered); d > 0 {
			cfg.observer.Paused(false)
			cfg.log.Info("destination available again: resuming", "down_for", d.Round(time.Millisecond))
		}
	}
	batch.outcomes = outcomes
	return batch
}

// judgement is what one batch's results say.
type judgement struct {
	verdicts   []verdict // per result; meaningful where the result failed; nil when none did
	delivered  bool      // something got through
	down       error     // the batch's destination-wide fault: then no failure is the events' own
	retryAfter time.Duration
}

// judge gives each failed result its verdict. A batch with no failure, the
// hot path, costs one pass over the results.
func (e *engine) judge(ctx context.Context, msgs []adapters.Message, results []adapters.Result, cut bool, now time.Time) judgement {
	var j judgement
	failures := 0
	for _, res := range results {
		if res.Err != nil {
			failures++
		}
	}
	j.delivered = failures < len(results)
	if failures == 0 {
		return j
	}
	j.verdicts = make([]verdict, len(results))
	var firstAmbiguous error
	failedKeys := map[string]bool{}
	for k, res := range results {
		if res.Err == nil {
			continue
		}
		// Adapters hold a key back after a failure whether or not the
		// relay orders: what a key's later failures say is its first
		// failure's story, already judged.
		if key := msgs[k].PartitionKey; key != "" {
			if failedKeys[key] {
				j.verdicts[k] = heldBack
				continue
			}
			failedKeys[key] = true
		}
		j.verdicts[k] = classify(res.Err, cut)
		switch {
		case j.verdicts[k] == destFault && j.down == nil:
			j.down = res.Err
		case j.verdicts[k] == eventFault && firstAmbiguous == nil:
			firstAmbiguous = res.Err
		}
	}
	if j.down == nil && !j.delivered && firstAmbiguous != nil && e.ambiguous(ctx, now) == destFault {
		j.down = firstAmbiguous
	}
	if j.down == nil {
		return j
	}
	for k, res := range results {
		if res.Err != nil && j.verdicts[k] == eventFault {
			j.verdicts[k] = destFault
		}
		if res.Err != nil && j.verdicts[k] == destFault {
			j.retryAfter = max(j.retryAfter, res.RetryAfter)
		}
	}
	return j
}

// deadHead applies the dead-letter policy to the key of a row just
// dead-lettered. Either way the key waits for the next pass: its later rows
// in this batch were held back, and must not be overtaken.
func (e *engine) deadHead(key string, now time.Time) {
	if e.r.cfg.deadLetters == ParkKey {
		e.parked.add(key)
	}
	e.holds.add(key, now)
}

// recordStage stores each batch's outcomes until the publisher closes its
// channel. A batch whose outcomes cannot be stored stays pending and is
// published again: the broker drops the copies.
func (e *engine) recordStage(ctx context.Context) {
	for b := range e.toRecord {
		if len(b.outcomes) > 0 || len(b.attempts) > 0 {
			// Attempts alone (a destination found down) are no work done:
			// the reader must still see the pass as idle.
			e.worked.Add(int64(len(b.outcomes)))
			var err error
			for try := range 3 {
				if err = e.store.Record(ctx, b.outcomes, b.attempts...); err == nil {
					break
				}
				time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
			}
			if err != nil {
				e.r.cfg.log.Error("relay: recording outcomes failed; the events will be published again", "events", len(b.outcomes), "error", err)
			}
		}
		e.inflight.Add(-1)
		select {
		case e.recorded <- struct{}{}:
		default:
		}
	}
}

// leaseState is the buckets the relay holds, shared by the keeper (which
// renews and takes them) and the reader (which gives them back).
type leaseState struct {
	// changing serialises what changes the leases in the database (a
	// renewal, giving buckets back) with recording the result here, so a
	// renewal read before a give-back never re-adds what was given.
	changing sync.Mutex
	mu       sync.Mutex
	held     []int
	share    int
	version  int
	renewed  time.Time         // the last renewal that succeeded
	since    map[int]time.Time // when each held bucket was taken
}

// settled returns up to n held buckets taken before t, last first.
func (l *leaseState) settled(t time.Time, n int) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for i := len(l.held) - 1; i >= 0 && len(out) < n; i-- {
		if b := l.held[i]; !l.since[b].After(t) {
			out = append(out, b)
		}
	}
	return out
}

// valid reports whether the last renewal is recent enough that the buckets
// are still the relay's.
func (l *leaseState) valid(now time.Time, lease time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return now.Sub(l.renewed) < lease
}

func (l *leaseState) snapshot() ([]int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held, l.version
}

func (l *leaseState) shareNow() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.share
}

// set records a lease renewal and reports whether the held buckets changed.
func (l *leaseState) set(held []int, share int, renewed time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.share, l.renewed = share, renewed
	if slices.Equal(held, l.held) {
		return false
	}
	if l.since == nil {
		l.since = map[int]time.Time{}
	}
	for _, b := range held {
		if _, ok := l.since[b]; !ok {
			l.since[b] = renewed
		}
	}
	for b := range l.since {
		if !slices.Contains(held, b) {
			delete(l.since, b)
		}
	}
	l.held = held
	l.version++
	return true
}

func (l *leaseState) drop(give []int) ([]int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = slices.DeleteFunc(slices.Clone(l.held), func(b int) bool { return slices.Contains(give, b) })
	for _, b := range give {
		delete(l.since, b)
	}
	l.version++
	return l.held, l.version
}

// holds are the keys the relay holds back, each until its failed head may
// be tried again. A hold lasts past its time until the next pass starts
// (prune), because only a pass from the lowest seq reads the key's head
// before the rest of the key.
type holds struct {
	mu    sync.Mutex
	until map[string]time.Time
	// wake is the earliest backoff of a row without a key, for which the
	// reader must start a pass too.
	wake time.Time
}

func (h *holds) has(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.until[key]
	return ok
}

func (h *holds) add(key string, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cur, ok := h.until[key]; !ok || until.After(cur) {
		h.until[key] = until
	}
}

func (h *holds) wakeAt(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wake.IsZero() || t.Before(h.wake) {
		h.wake = t
	}
}

// next is the earliest time a hold or a backoff is due; zero when none.
func (h *holds) next() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	next := h.wake
	for _, t := range h.until {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}

func (h *holds) due(now time.Time) bool {
	next := h.next()
	return !next.IsZero() && !next.After(now)
}

// prune ends the holds that are due; the caller is starting a pass.
func (h *holds) prune(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, t := range h.until {
		if !t.After(now) {
			delete(h.until, k)
		}
	}
	if !h.wake.After(now) {
		h.wake = time.Time{}
	}
}

func (h *holds) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.until)
}

// keys returns the held keys for a read to leave out, or nil when there are
// more than limit.
func (h *holds) keys(limit int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.until) == 0 || len(h.until) > limit {
		return nil
	}
	out := make([]string, 0, len(h.until))
	for k := range h.until {
		out = append(out, k)
	}
	return out
}

// parked are the keys held back behind a dead letter (ParkKey), read from
// the outbox at a pass start and added to as the relay dead-letters.
type parked struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (p *parked) has(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[key]
}

func (p *parked) add(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[key] = true
}

func (p *parked) set(keys []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.keys)
	for _, k := range keys {
		p.keys[k] = true
	}
}

func (p *parked) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.keys))
	for k := range p.keys {
		out = append(out, k)
	}
	return out
}
