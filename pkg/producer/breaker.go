package producer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/heraldhq/herald/adapters"
)

// A destination-wide fault (the broker down, reconnecting, throttling,
// refusing the credentials) is no event's fault, so it must cost no event an
// attempt: ten attempts with a doubling backoff would dead-letter the head of
// every key in a routine six-minute maintenance window, and the backlog
// would then wait out backoffs of minutes after the broker came back. The
// breaker pauses the whole destination instead and probes it until it
// answers, then lets the relay go on at full speed.
//
//	closed ──fault──▶ open ──probe due──▶ half-open ──probe batch sent──▶ closed
//	                   ▲                      │
//	                   └───────fault──────────┘
const (
	// minProbeDelay and maxProbeDelay bound the wait between probes: the
	// delay doubles while the destination stays down, and never exceeds a
	// second, so the relay is back within a second of the recovery.
	minProbeDelay = 100 * time.Millisecond
	maxProbeDelay = time.Second
	// probeBatch is how many rows a half-open relay sends to find out
	// whether the destination is back: enough to tell one event's failure
	// from the destination's, few enough to cost little against one that
	// is still down or slow.
	probeBatch = 20
	// recentlyHealthy is how long after its last delivery a destination that
	// cannot be checked (no adapters.Checker) is taken to be up, so that an
	// ambiguous failure is blamed on the event.
	recentlyHealthy = time.Minute
	// checkTimeout bounds an adapters.Checker call.
	checkTimeout = 2 * time.Second
)

type breaker struct {
	mu      sync.Mutex
	open    bool
	probing bool // half-open: the next batch is a probe
	since   time.Time
	probeAt time.Time
	delay   time.Duration
	cause   error
	lastOK  time.Time // the destination's last delivery
}

// trip opens the breaker, or keeps it open with a longer delay; it reports
// whether it was closed before. The probe never comes before retryAfter,
// the longest wait the destination asked for.
func (b *breaker) trip(cause error, now time.Time, retryAfter time.Duration) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	opened = !b.open && !b.probing
	if opened {
		b.since, b.delay = now, minProbeDelay
	} else {
		b.delay = min(2*b.delay, maxProbeDelay)
	}
	b.open, b.probing, b.cause = true, false, cause
	b.probeAt = now.Add(max(b.delay, retryAfter))
	return opened
}

// answered records a batch that met no destination-wide fault, and whether
// it delivered something; it closes a half-open breaker and returns how long
// the destination was down (0 when it was not).
func (b *breaker) answered(now time.Time, delivered bool) (downFor time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if delivered {
		b.lastOK = now
	}
	if !b.probing && !b.open {
		return 0
	}
	b.open, b.probing, b.cause = false, false, nil
	return now.Sub(b.since)
}

// halfOpen lets the next batch through as a probe.
func (b *breaker) halfOpen() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open {
		b.open, b.probing = false, true
	}
}

func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

func (b *breaker) isProbing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.probing
}

func (b *breaker) nextProbe() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.probeAt
}

func (b *breaker) healthySince(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.lastOK.IsZero() && now.Sub(b.lastOK) < recentlyHealthy
}

// verdict is what one failed result means for its row.
type verdict int

const (
	eventFault         verdict = iota // the event's own failure: an attempt
	destFault                         // the destination's: no attempt, pause
	notSent                           // never sent: given back, no attempt
	permanentlyRefused                // dead-lettered at once
	heldBack                          // behind its key's earlier failure: no attempt, no verdict on anyone
)

// classify sorts a failed result. Ambiguous transient failures (an HTTP
// 500, an ack that never came) are settled by batchVerdict.
func classify(err error, publishEnded bool) verdict {
	switch {
	case errors.Is(err, adapters.ErrPermanent):
		return permanentlyRefused
	case errors.Is(err, adapters.ErrUnavailable):
		return destFault
	case publishEnded && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return notSent
	default:
		return eventFault
	}
}

// ambiguous decides whether a batch's transient failures are the events'
// or the destination's, when the adapter did not say and nothing in the
// batch got through: a destination that answers its Checker, or delivered
// something within recentlyHealthy, is up, so the events failed on their
// own and spend attempts; otherwise the destination is down.
func (e *engine) ambiguous(ctx context.Context, now time.Time) verdict {
	if c, ok := e.r.pub.(adapters.Checker); ok {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkTimeout)
		defer cancel()
		if c.Check(ctx) != nil {
			return destFault
		}
		return eventFault
	}
	if e.breaker.healthySince(now) {
		return eventFault
	}
	return destFault
}
