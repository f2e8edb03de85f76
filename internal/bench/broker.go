package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natsadapter "github.com/heraldhq/herald/adapters/nats"
)

// rawMessage lays a stored event out as Herald's adapter does in the
// structured binding (the stored bytes as the body, the event id as
// Nats-Msg-Id), so that publishing it costs the broker what a relayed event
// costs.
func rawMessage(id string, payload []byte) *natsgo.Msg {
	return &natsgo.Msg{
		Subject: Subject,
		Header: natsgo.Header{
			jetstream.MsgIDHeader: []string{id},
			"Content-Type":        []string{natsadapter.ContentType},
		},
		Data: payload,
	}
}

// acks counts what the broker acknowledged; its fields are safe for
// concurrent use.
type acks struct {
	acked, duplicates atomic.Int64
	// last is when the latest ack came in, in UnixNano.
	last atomic.Int64
}

func (a *acks) add(n, dup int) {
	a.acked.Add(int64(n))
	a.duplicates.Add(int64(dup))
	now := time.Now().UnixNano()
	for {
		prev := a.last.Load()
		if now <= prev || a.last.CompareAndSwap(prev, now) {
			return
		}
	}
}

// stored is how many messages the stream gained: duplicates are acked
// without being stored again.
func (a *acks) stored() uint64 { return uint64(a.acked.Load() - a.duplicates.Load()) }

// lastAck is the time of the latest ack, or the zero time.
func (a *acks) lastAck() time.Time {
	if ns := a.last.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// publishAsync sends msgs with at most window acks outstanding and waits
// for all of them, returning how many were acked and how many of those as
// duplicates; err is the first failure, after which nothing more is sent.
// The window is kept here rather than by the client's own bound, which
// stalls a sender for a fixed wait and then fails it.
func publishAsync(ctx context.Context, js jetstream.JetStream, msgs []*natsgo.Msg, window int) (acked, dups int, err error) {
	pending := make([]jetstream.PubAckFuture, 0, min(len(msgs), window))
	await := func(f jetstream.PubAckFuture) error {
		select {
		case ack := <-f.Ok():
			acked++
			if ack.Duplicate {
				dups++
			}
			return nil
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("publish %s: awaiting ack: %w", f.Msg().Subject, context.Cause(ctx))
		}
	}
	for _, m := range msgs {
		if len(pending) == window {
			if err := await(pending[0]); err != nil {
				return acked, dups, err
			}
			pending = pending[1:]
		}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return acked, dups, fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		pending = append(pending, f)
	}
	for _, f := range pending {
		if err := await(f); err != nil {
			return acked, dups, err
		}
	}
	return acked, dups, nil
}

// brokerPhase measures the broker alone: pre-built events published
// straight through the JetStream client, one publisher per lane on its own
// connection, each with up to rawMaxPending acks outstanding.
func (b *bench) brokerPhase(ctx context.Context, rep *Report) error {
	n := b.opts.Events
	b.progress("1/5 broker ceiling: %d events with %d publisher(s), up to %d acks pending each", n, len(b.lanes), rawMaxPending)
	msgs := make([]*natsgo.Msg, n)
	for i := range msgs {
		ev, err := b.newEvent()
		if err != nil {
			return err
		}
		payload, err := ev.MarshalJSON()
		if err != nil {
			return fmt.Errorf("bench: marshal event: %w", err)
		}
		msgs[i] = rawMessage(ev.ID, payload)
	}
	per := (n + len(b.lanes) - 1) / len(b.lanes)
	var got acks
	errs := make([]error, len(b.lanes))
	var wg sync.WaitGroup
	start := time.Now()
	for i, l := range b.lanes {
		part := msgs[min(i*per, n):min((i+1)*per, n)]
		wg.Go(func() {
			acked, dups, err := publishAsync(ctx, l.js, part, rawMaxPending)
			got.add(acked, dups)
			errs[i] = err
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: broker ceiling: %w", err)
	}
	rep.BrokerCeiling = throughput(n, took)
	return b.checkPhase(ctx, rep, "broker ceiling", got.stored())
}

// checkPhase compares the bench stream's message count with what the phase
// just published, every event once, and empties the stream for the next
// phase.
func (b *bench) checkPhase(ctx context.Context, rep *Report, phase string, expected uint64) error {
	s, err := b.stream.Stream(ctx, Stream)
	if err != nil {
		return fmt.Errorf("bench: stream %s: %w", Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("bench: stream %s: %w", Stream, err)
	}
	if rep.Checks == nil {
		rep.Checks = &Checks{}
	}
	c := rep.Checks
	c.Phases = append(c.Phases, PhaseCheck{Phase: phase, StreamMessages: info.State.Msgs, Expected: expected})
	c.StreamMessages += info.State.Msgs
	c.Expected += expected
	if info.State.Msgs != expected {
		return fmt.Errorf("bench: %s: %w: stream %s holds %d messages, %d were published and acked",
			phase, ErrLost, Stream, info.State.Msgs, expected)
	}
	if err := s.Purge(ctx); err != nil {
		return fmt.Errorf("bench: purge stream %s: %w", Stream, err)
	}
	return nil
}
