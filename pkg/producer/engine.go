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
	r      *Relay
	store  *outbox.Store
	leases leaseState
	holds  holds

	toPublish chan []outbox.Row
	toRecord  chan []outbox.Outcome
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
	// destination get their share within seconds.
	maxLeaseTick = time.Second
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
		toPublish: make(chan []outbox.Row, 1),
		toRecord:  make(chan []outbox.Outcome, 1),
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
	for ctx.Err() == nil {
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
				select {
				case <-ctx.Done():
				case <-e.recorded:
				}
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
			buckets, version = e.applyLeases(ctx)
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
		rows, err := e.store.Read(ctx, outbox.ReadQuery{Buckets: buckets, After: cursor, SkipKeys: e.holds.keys(maxSkipKeys),
			RoutedOnly: routing, Limit: cfg.batchSize})
		if err != nil {
			if !failed("read", err) {
				return
			}
			continue
		}
		atEnd = len(rows) < cfg.batchSize
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

// applyLeases gives back the buckets beyond the relay's share and returns
// the buckets to read. It runs only with nothing in
// flight, so no bucket changes hands with work of it outstanding.
func (e *engine) applyLeases(ctx context.Context) ([]int, int) {
	e.leases.changing.Lock()
	defer e.leases.changing.Unlock()
	held, version := e.leases.snapshot()
	share := e.leases.shareNow()
	if extra := len(held) - share; extra > 0 && share > 0 {
		give := slices.Clone(held[len(held)-extra:])
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
	if e.leases.set(got.Held, share) {
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
			e.toRecord <- nil
			continue
		}
		e.toRecord <- e.publishBatch(ctx, rows)
	}
}

// publishBatch publishes the rows that may go now and returns their
// outcomes. With ordering, a key with a failed event is held: none of its
// later rows goes out until the next pass reads it from its head again.
func (e *engine) publishBatch(ctx context.Context, rows []outbox.Row) []outbox.Outcome {
	cfg := &e.r.cfg
	ordered := e.store.Ordered()
	now := time.Now()
	holds := func(key string) bool { return ordered && key != "" }
	outcomes := make([]outbox.Outcome, 0, len(rows))
	msgs := make([]adapters.Message, 0, len(rows))
	sent := make([]int, 0, len(rows)) // index into rows of each message
	for i, row := range rows {
		if holds(row.PartitionKey) && e.holds.has(row.PartitionKey) {
			continue
		}
		if row.AvailableAt.After(now) {
			// Waiting out a backoff, recorded by this relay or by one
			// before it: with ordering its key waits too.
			if holds(row.PartitionKey) {
				e.holds.add(row.PartitionKey, row.AvailableAt)
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
			outcomes = append(outcomes, outbox.Outcome{Seq: row.Seq, Err: adapters.Permanent(err), Dead: true})
			e.r.stats.dead.Add(1)
			cfg.observer.DeadLettered(row.EventType)
			cfg.log.Warn("event dead-lettered: invalid payload", "event_id", row.EventID, "error", err)
			continue
		}
		msgs = append(msgs, adapters.Message{ID: row.EventID, Type: row.EventType, PartitionKey: row.PartitionKey,
			Payload: row.Payload, TraceParent: ev.TraceParent})
		sent = append(sent, i)
	}
	results := e.r.tracedPublish(ctx, msgs)
	now = time.Now()
	for j, res := range results {
		row := rows[sent[j]]
		if res.Err != nil && holds(row.PartitionKey) && e.holds.has(row.PartitionKey) {
			continue // held back behind its key's failed event: not an attempt
		}
		o := outbox.Outcome{Seq: row.Seq}
		e.r.decide(&o, row, res, now)
		if o.Err != nil && !o.Dead {
			if holds(row.PartitionKey) {
				e.holds.add(row.PartitionKey, o.RetryAt)
			} else {
				e.holds.wakeAt(o.RetryAt)
			}
		}
		outcomes = append(outcomes, o)
	}
	return outcomes
}

// recordStage stores each batch's outcomes until the publisher closes its
// channel. A batch whose outcomes cannot be stored stays pending and is
// published again: the broker drops the copies.
func (e *engine) recordStage(ctx context.Context) {
	for outcomes := range e.toRecord {
		if len(outcomes) > 0 {
			e.worked.Add(int64(len(outcomes)))
			var err error
			for try := range 3 {
				if err = e.store.Record(ctx, outcomes); err == nil {
					break
				}
				time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
			}
			if err != nil {
				e.r.cfg.log.Error("relay: recording outcomes failed; the events will be published again", "events", len(outcomes), "error", err)
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
func (l *leaseState) set(held []int, share int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.share = share
	if slices.Equal(held, l.held) {
		return false
	}
	l.held = held
	l.version++
	return true
}

func (l *leaseState) drop(give []int) ([]int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = slices.DeleteFunc(slices.Clone(l.held), func(b int) bool { return slices.Contains(give, b) })
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
