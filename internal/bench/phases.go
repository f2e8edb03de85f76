package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// loadChunk is the events per transaction when writing a backlog.
const loadChunk = 500

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.opts.Progress, "herald bench: "+format+"\n", args...)
}

// stallTimeout is how long a phase waits without any ack before it gives
// up: longer than a lease plus an ack timeout, so a relay that lost its
// batch has had the chance to take it over again.
func (b *bench) stallTimeout() time.Duration {
	return max(b.cfg.Relay.Lease+b.cfg.NATS.AckTimeout+5*time.Second, 10*time.Second)
}

// settle vacuums a PostgreSQL outbox before a phase, so that every phase
// starts from the same table, free of the dead rows the phase before left,
// whenever autovacuum would get to them (never, where it is off).
func (b *bench) settle(ctx context.Context) {
	if b.cfg.Database.Driver != "postgres" {
		return
	}
	if err := b.lanes[0].app.DB.WithContext(ctx).Exec("VACUUM (ANALYZE) " + outbox.Table).Error; err != nil {
		b.log.Warn("bench: VACUUM of the outbox failed; the phase runs on the dead rows of the last one", "error", err)
	}
}

// writeBacklog writes n events in transactions of loadChunk. Cancelling
// ctx stops it between transactions: one cut off mid-commit could still
// commit after the bench's cleanup ran.
func (b *bench) writeBacklog(ctx context.Context, n int) (*Throughput, error) {
	commitCtx := context.WithoutCancel(ctx)
	db := b.producerDB.WithContext(commitCtx)
	evs := make([]event.Event, 0, loadChunk)
	start := time.Now()
	for written := 0; written < n; written += len(evs) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("bench: write backlog: %w", context.Cause(ctx))
		}
		evs = evs[:0]
		for range min(loadChunk, n-written) {
			ev, err := b.newEvent()
			if err != nil {
				return nil, err
			}
			evs = append(evs, ev)
		}
		if err := db.Transaction(func(tx *gorm.DB) error { return outbox.Write(commitCtx, tx, evs...) }); err != nil {
			return nil, fmt.Errorf("bench: write backlog: %w", err)
		}
	}
	return throughput(n, time.Since(start)), nil
}

// relays are the relays of one phase, running until stop.
type relays struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	list   []*producer.Relay
	errs   []error
	once   sync.Once
	stats  producer.Stats
	err    error
}

// startRelays runs one relay per lane, publishing through a recorder for t,
// each woken by its own LISTEN connection on PostgreSQL as under `herald
// serve`.
func (b *bench) startRelays(ctx context.Context, t *tracker) *relays {
	ctx, cancel := context.WithCancel(ctx)
	rs := &relays{cancel: cancel, errs: make([]error, len(b.lanes))}
	for i, l := range b.lanes {
		r := producer.New(l.app.Store, &recorder{inner: l.app.Publisher, tracker: t}, b.relayOptions(i)...)
		rs.list = append(rs.list, r)
		rs.wg.Go(func() { rs.errs[i] = r.Run(ctx) })
		if b.listen {
			rs.wg.Go(func() { _ = outbox.Listen(ctx, b.cfg.Database.DSN, r.Notify, b.log) })
		}
	}
	return rs
}

// stop shuts the relays down gracefully, waits for them and returns their
// summed counters. Calling it again returns the same.
func (rs *relays) stop() (producer.Stats, error) {
	rs.once.Do(func() {
		rs.cancel()
		rs.wg.Wait()
		for _, r := range rs.list {
			s := r.Stats()
			rs.stats.Published += s.Published
			rs.stats.Duplicates += s.Duplicates
			rs.stats.Failed += s.Failed
			rs.stats.DeadLettered += s.DeadLettered
		}
		rs.err = errors.Join(rs.errs...)
	})
	return rs.stats, rs.err
}

// relayPhases measures Herald's relays draining a backlog of each size in
// Options.Backlogs.
func (b *bench) relayPhases(ctx context.Context, rep *Report) error {
	var cpu, wall float64 // core-seconds and seconds over the runs so far
	for _, n := range b.opts.Backlogs {
		r, err := b.relayRun(ctx, rep, n)
		if r != nil {
			rep.Relays = append(rep.Relays, *r)
			cpu += r.CPUCores * r.Seconds
			wall += r.Seconds
			rep.Resources.RelayPhaseCPUCores = cpu / wall
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// relayRun measures the relays draining a backlog of n events, timed from
// their start to the last ack. It returns what it measured also when the
// check of it failed.
func (b *bench) relayRun(ctx context.Context, rep *Report, n int) (*Relay, error) {
	b.progress("3/5 herald relay: writing %d events", n)
	b.settle(ctx)
	if _, err := b.writeBacklog(ctx, n); err != nil {
		return nil, err
	}
	b.progress("3/5 herald relay: relaying %d events with %d relay(s)", n, len(b.lanes))
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	t := newTracker(abort, int64(n), 0)
	cpu0, _ := cpuTime()
	start := time.Now()
	rs := b.startRelays(ctx, t)
	defer func() { _, _ = rs.stop() }()
	waitErr := t.wait(ctx, b.stallTimeout())
	took := time.Since(start)
	cpu1, _ := cpuTime()
	stats, err := rs.stop()
	if err = errors.Join(waitErr, err); err != nil {
		return nil, fmt.Errorf("bench: herald relay, backlog %d: %w", n, err)
	}

	r := &Relay{
		Throughput:     *throughput(n, took),
		MicrosPerEvent: took.Seconds() * 1e6 / float64(n),
		Batches:        t.batches.Load(),
		PublishShare:   100 * float64(t.publishing.Load()) / float64(took*time.Duration(len(b.lanes))),
		Acked:          t.acked.Load(),
		Duplicates:     stats.Duplicates,
		Failed:         stats.Failed,
		DeadLettered:   stats.DeadLettered,
		CPUCores:       (cpu1 - cpu0).Seconds() / took.Seconds(),
	}
	if ref := rep.Reference; ref != nil {
		r.VsReference = r.EventsPerSecond / ref.EventsPerSecond
	}
	if bc := rep.BrokerCeiling; bc != nil {
		r.VsBrokerCeiling = r.EventsPerSecond / bc.EventsPerSecond
	}
	left, err := b.lanes[0].app.Store.Count(ctx, outbox.Filter{State: outbox.StatePending, Type: EventType})
	if err != nil {
		return r, fmt.Errorf("bench: herald relay, backlog %d: %w", n, err)
	}
	r.Lost = int(int64(n) - (r.Acked - r.Duplicates))
	if r.Batches > 0 {
		r.MeanBatch = float64(r.Acked) / float64(r.Batches)
	}
	if r.Lost != 0 || left != 0 || r.DeadLettered != 0 {
		return r, fmt.Errorf("bench: herald relay, backlog %d: %w: %d of %d events acked once, %d dead-lettered, %d still pending",
			n, ErrLost, r.Acked-r.Duplicates, n, r.DeadLettered, left)
	}
	return r, b.checkPhase(ctx, rep, fmt.Sprintf("herald relay, backlog %d", n), uint64(r.Acked-r.Duplicates))
}

// latencyPhase offers events at the configured rate, one per transaction,
// while the relays run with their normal wake-up, and measures each event
// from its commit to its ack.
func (b *bench) latencyPhase(ctx context.Context, rep *Report) error {
	b.progress("5/5 latency: %d events/s for %s, one per transaction, %d producers", b.opts.Rate, b.opts.Duration, b.opts.Producers)
	// Hand the backlogs' memory back so the RSS sampled below is the relay
	// at work, not the earlier phases' leftovers.
	b.settle(ctx)
	runtime.GC()
	debug.FreeOSMemory()

	samples := int(float64(b.opts.Rate)*b.opts.Duration.Seconds()) + 1
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	t := newTracker(abort, math.MaxInt64, samples)
	rs := b.startRelays(ctx, t)
	defer func() { _, _ = rs.stop() }()
	sampler := startRSSSampler(ctx, 100*time.Millisecond)
	defer sampler.stop()

	cpu0, _ := cpuTime()
	start := time.Now()
	committed, prodErr := b.produce(ctx, t, samples)
	took := time.Since(start)
	cpu1, _ := cpuTime()
	rss := sampler.stop()
	if prodErr == nil {
		t.setTarget(int64(committed))
		prodErr = t.wait(ctx, b.stallTimeout())
	}
	_, err := rs.stop()
	if err = errors.Join(prodErr, err); err != nil {
		return fmt.Errorf("bench: latency phase: %w", err)
	}

	rep.Resources.LatencyPhaseCPUCores = (cpu1 - cpu0).Seconds() / took.Seconds()
	if len(rss) > 0 {
		slices.Sort(rss)
		rep.Resources.SteadyRSSMiB = mib(rss[len(rss)/2])
		rep.Resources.MaxSampledRSSMiB = mib(rss[len(rss)-1])
		rep.Resources.RSSSamples = len(rss)
	}
	l := &Latency{
		OfferedRate:  b.opts.Rate,
		Producers:    b.opts.Producers,
		Seconds:      took.Seconds(),
		Committed:    committed,
		AchievedRate: float64(committed) / took.Seconds(),
	}
	lat := make([]time.Duration, 0, committed)
	t.mu.Lock()
	for i := range committed {
		if t.ack[i] == 0 {
			l.Lost++
			continue
		}
		d := t.ack[i] - t.commit[i]
		if d < 0 {
			l.AckedBeforeCommitReturned++
			d = 0
		}
		lat = append(lat, d)
	}
	t.mu.Unlock()
	l.Acked = len(lat)
	if batches := t.batches.Load(); batches > 0 {
		l.Batches = int(batches)
		l.MeanBatch = float64(t.acked.Load()) / float64(batches)
		l.MeanPublishMs = millis(time.Duration(t.publishing.Load() / batches))
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		l.P50Ms, l.P95Ms, l.P99Ms = percentile(lat, 0.50), percentile(lat, 0.95), percentile(lat, 0.99)
		l.MaxMs = millis(lat[len(lat)-1])
	}
	rep.Latency = l
	if l.Lost > 0 {
		return fmt.Errorf("bench: latency phase: %w: %d of %d committed events never acked", ErrLost, l.Lost, committed)
	}
	return b.checkPhase(ctx, rep, "latency", uint64(l.Acked))
}

// produce offers events on a fixed schedule at the configured rate, each
// committed in its own transaction by one of a pool of producer goroutines
// with their own connection pool, as an application's request handlers
// would (one goroutine alone cannot commit 1,000 transactions a second on a
// database that flushes each commit to disk). An event falls due every
// 1/rate; when every producer is busy, due events wait for the next tick and
// go out together, so a stall does not lower the offered rate unless it
// lasts to the end. It returns how many events committed.
func (b *bench) produce(ctx context.Context, t *tracker, limit int) (int, error) {
	type job struct {
		sample int
		ev     event.Event
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	// A commit under way finishes even when the run is cancelled: one cut
	// off could still commit after the bench's cleanup ran.
	commitCtx := context.WithoutCancel(ctx)
	db := b.producerDB.WithContext(commitCtx)
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range b.opts.Producers {
		wg.Go(func() {
			for j := range jobs {
				t.register(j.ev.ID, j.sample)
				if err := db.Transaction(func(tx *gorm.DB) error { return outbox.Write(commitCtx, tx, j.ev) }); err != nil {
					stop(fmt.Errorf("producer: commit event %d: %w", j.sample+1, err))
					return
				}
				t.committed(j.sample, time.Now())
			}
		})
	}
	rate := float64(b.opts.Rate)
	tick := time.NewTicker(max(time.Second/time.Duration(b.opts.Rate), 100*time.Microsecond))
	defer tick.Stop()
	start := time.Now()
	sent := 0
	next, err := b.newEvent()
pacing:
	for err == nil {
		var now time.Time
		select {
		case <-ctx.Done():
			break pacing
		case now = <-tick.C:
		}
		elapsed := now.Sub(start)
		if elapsed >= b.opts.Duration {
			break pacing
		}
		for due := min(int(elapsed.Seconds()*rate), limit); sent < due && err == nil; {
			select {
			case jobs <- job{sent, next}:
				sent++
				next, err = b.newEvent()
			default: // every producer busy: offer the rest on the next tick
				continue pacing
			}
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		err = context.Cause(ctx)
	}
	return sent, err
}

// percentile is the nearest-rank percentile of sorted, in milliseconds.
func percentile(sorted []time.Duration, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return millis(sorted[min(max(i, 0), len(sorted)-1)])
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }
