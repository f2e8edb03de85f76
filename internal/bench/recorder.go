package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/adapters"
)

// recorder wraps a relay's publisher: it refuses events the bench did not
// write and tells the phase's tracker which events came back acked, and
// when. Publish returns once every ack of the batch is in, so that moment is
// when the relay learns an event is safe: the ack time it records.
type recorder struct {
	inner   adapters.Publisher
	tracker *tracker
}

var _ adapters.Publisher = (*recorder)(nil)

func (r *recorder) Publish(ctx context.Context, msgs []adapters.Message) []adapters.Result {
	ours := msgs
	var foreign []int
	for i, m := range msgs {
		if m.Type != EventType {
			foreign = append(foreign, i)
		}
	}
	if len(foreign) > 0 {
		ours = make([]adapters.Message, 0, len(msgs)-len(foreign))
		for _, m := range msgs {
			if m.Type == EventType {
				ours = append(ours, m)
			}
		}
	}
	start := time.Now()
	res := r.inner.Publish(ctx, ours)
	end := time.Now()
	r.tracker.batches.Add(1)
	r.tracker.publishing.Add(int64(end.Sub(start)))
	r.tracker.record(ours, res, end)
	if len(foreign) == 0 {
		return res
	}
	// Put the refusals back in the relay's order.
	all := make([]adapters.Result, len(msgs))
	next, f := 0, 0
	for i, m := range msgs {
		if f < len(foreign) && foreign[f] == i {
			f++
			all[i].Err = fmt.Errorf("%w: event %s of type %s", ErrForeignEvent, m.ID, m.Type)
			r.tracker.fail(all[i].Err)
			continue
		}
		all[i] = res[next]
		next++
	}
	return all
}

func (r *recorder) Close() error { return nil } // the lane owns the publisher

// tracker counts one phase's acks across all relays and, in the latency
// phase, keeps each event's commit and ack times.
type tracker struct {
	abort context.CancelCauseFunc // stops the phase on a foreign event

	acked, failed, duplicates atomic.Int64
	// batches counts Publish calls, publishing their total duration.
	batches, publishing atomic.Int64
	target              atomic.Int64
	done                chan struct{} // closed once acked reaches target
	doneOnce            sync.Once

	// Latency phase only: index maps an event id to its sample; commit and
	// ack hold times since base, 0 while unknown.
	base   time.Time
	mu     sync.Mutex
	index  map[string]int
	commit []time.Duration
	ack    []time.Duration
}

// newTracker returns a tracker that waits for target acks; samples > 0
// makes room for as many latency samples.
func newTracker(abort context.CancelCauseFunc, target int64, samples int) *tracker {
	t := &tracker{abort: abort, done: make(chan struct{}), base: time.Now()}
	t.target.Store(target)
	if samples > 0 {
		t.index = make(map[string]int, samples)
		t.commit = make([]time.Duration, samples)
		t.ack = make([]time.Duration, samples)
	}
	return t
}

func (t *tracker) record(msgs []adapters.Message, res []adapters.Result, at time.Time) {
	since := max(at.Sub(t.base), 1)
	ok, dup, failed := 0, 0, 0
	if t.index != nil {
		t.mu.Lock()
	}
	for i, m := range msgs {
		if i >= len(res) || res[i].Err != nil {
			failed++
			continue
		}
		ok++
		if res[i].Duplicate {
			dup++
		}
		if t.index != nil {
			if j, found := t.index[m.ID]; found && t.ack[j] == 0 {
				t.ack[j] = since
			}
		}
	}
	if t.index != nil {
		t.mu.Unlock()
	}
	t.failed.Add(int64(failed))
	t.duplicates.Add(int64(dup))
	t.check(t.acked.Add(int64(ok)))
}

// setTarget changes how many acks close done.
func (t *tracker) setTarget(n int64) {
	t.target.Store(n)
	t.check(t.acked.Load())
}

func (t *tracker) check(acked int64) {
	if acked >= t.target.Load() {
		t.doneOnce.Do(func() { close(t.done) })
	}
}

func (t *tracker) fail(err error) { t.abort(err) }

// register makes sample i the one of event id, before it is written.
func (t *tracker) register(id string, i int) {
	t.mu.Lock()
	t.index[id] = i
	t.mu.Unlock()
}

// committed records when sample i's commit returned.
func (t *tracker) committed(i int, at time.Time) {
	t.mu.Lock()
	t.commit[i] = max(at.Sub(t.base), 1)
	t.mu.Unlock()
}

// wait blocks until the target is acked, ctx ends, or no ack arrives for
// stall.
func (t *tracker) wait(ctx context.Context, stall time.Duration) error {
	tick := time.NewTicker(stall / 10)
	defer tick.Stop()
	last, lastChange := t.acked.Load(), time.Now()
	for {
		select {
		case <-t.done:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
			n := t.acked.Load()
			if n != last {
				last, lastChange = n, time.Now()
				continue
			}
			if time.Since(lastChange) >= stall {
				return fmt.Errorf("%w: no ack for %s, %d of %d acked (%d publish failures)",
					ErrLost, stall, n, t.target.Load(), t.failed.Load())
			}
		}
	}
}
