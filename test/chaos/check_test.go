//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gorm.io/gorm"
)

// streamName is the stream the relays publish into (heraldConfig).
const streamName = "HERALD"

// storedMsg is one message of the stream.
type storedMsg struct {
	Seq uint64
	// ID is the Nats-Msg-Id header, the event id JetStream de-duplicates
	// by; BodyID is the id inside the CloudEvent.
	ID, BodyID string
	Key        string
	N          int
	At         time.Time // when the stream stored it
}

// readStream reads the whole stream, first message to last, with an
// ordered consumer.
func readStream(ctx context.Context, url string) ([]storedMsg, error) {
	nc, err := natsgo.Connect(url)
	if err != nil {
		return nil, fmt.Errorf("connect to read the stream: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, streamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // nothing was ever published
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", streamName, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", streamName, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	last := info.State.LastSeq
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("ordered consumer on %s: %w", streamName, err)
	}
	out := make([]storedMsg, 0, info.State.Msgs)
	for {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("fetch from %s: %w", streamName, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("message metadata: %w", err)
			}
			sm := storedMsg{Seq: md.Sequence.Stream, ID: m.Headers().Get(jetstream.MsgIDHeader), At: md.Timestamp, N: -1}
			var body struct {
				ID           string `json:"id"`
				PartitionKey string `json:"partitionkey"`
				Data         struct {
					Key string `json:"key"`
					N   int    `json:"n"`
				} `json:"data"`
			}
			if json.Unmarshal(m.Data(), &body) == nil {
				sm.BodyID, sm.Key, sm.N = body.ID, body.PartitionKey, body.Data.N
			}
			out = append(out, sm)
			if sm.Seq >= last {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, natsgo.ErrTimeout) {
			return nil, fmt.Errorf("fetch from %s: %w", streamName, err)
		}
		if got == 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("read %s: stopped at %d of %d messages: %w", streamName, len(out), info.State.Msgs, ctx.Err())
		}
	}
}

// verdict compares the stream with what committed.
type verdict struct {
	Committed  int
	Unanswered int // committed, although the writer never heard so
	Stored     int // messages in the stream
	// Lost are committed events missing from the stream, by what the
	// outbox still says of them: a dead letter, a pending row, or nothing
	// at all (the row is gone and the event never arrived).
	Lost, LostDead, LostPending, LostGone int
	// Duplicates are copies stored beyond an event's first.
	Duplicates, DuplicatedEvents int
	// OrderViolations are events stored after a later event of their key
	// (first copies only: consumers drop the later ones by id).
	OrderViolations int
	FirstViolation  string
	Unknown         int // stored, never committed
	Malformed       int // no id header, or a body that does not match it
	// Latencies are commit → stored of every answered commit's first
	// copy, sorted.
	Latencies []time.Duration
	first     map[string]storedMsg
	truth     []committedEvent
}

func verify(truth []committedEvent, msgs []storedMsg, ob outboxState) verdict {
	v := verdict{Committed: len(truth), Stored: len(msgs), first: map[string]storedMsg{}, truth: truth}
	committed := make(map[string]committedEvent, len(truth))
	for _, c := range truth {
		committed[c.ID] = c
		if !c.Answered {
			v.Unanswered++
		}
	}
	copies := map[string]int{}
	latest := map[string]int{} // by key: the highest number stored so far
	for _, m := range msgs {
		if m.ID == "" || m.ID != m.BodyID {
			v.Malformed++
		}
		copies[m.ID]++
		if copies[m.ID] > 1 {
			v.Duplicates++
			if copies[m.ID] == 2 {
				v.DuplicatedEvents++
			}
			continue
		}
		v.first[m.ID] = m
		c, ok := committed[m.ID]
		if !ok {
			v.Unknown++
			continue
		}
		if hi, seen := latest[c.Key]; seen && c.N < hi {
			v.OrderViolations++
			if v.FirstViolation == "" {
				v.FirstViolation = fmt.Sprintf("%s: event %d (stream seq %d) stored after event %d", c.Key, c.N, m.Seq, hi)
			}
		} else {
			latest[c.Key] = c.N
		}
		if c.Answered {
			v.Latencies = append(v.Latencies, m.At.Sub(c.At))
		}
	}
	for _, c := range truth {
		if _, ok := v.first[c.ID]; ok {
			continue
		}
		v.Lost++
		switch ob.mainRows[c.ID] {
		case "dead":
			v.LostDead++
		case "pending":
			v.LostPending++
		default:
			v.LostGone++
		}
	}
	slices.Sort(v.Latencies)
	return v
}

// stored returns when the event's first copy was stored.
func (v verdict) stored(id string) (time.Time, bool) {
	m, ok := v.first[id]
	return m.At, ok
}

// drainedAfter is how long after t every event committed before t had
// been stored: how long the backlog of an outage took to drain once the
// fault ended at t. ok is false when one of them never was.
func (v verdict) drainedAfter(t time.Time) (took time.Duration, backlog int, ok bool) {
	var last time.Time
	for _, c := range v.truth {
		if !c.At.Before(t) {
			continue
		}
		at, stored := v.stored(c.ID)
		if !stored {
			return 0, 0, false
		}
		if at.After(t) {
			backlog++
		}
		if at.After(last) {
			last = at
		}
	}
	return max(last.Sub(t), 0), backlog, true
}

// longestPause is the longest time between consecutive stored messages
// within [from, to]: what a consumer of the stream saw of a fault.
func longestPause(msgs []storedMsg, from, to time.Time) (gap time.Duration, at time.Time) {
	prev := from
	for _, m := range msgs {
		if m.At.Before(from) || m.At.After(to) {
			continue
		}
		if d := m.At.Sub(prev); d > gap {
			gap, at = d, prev
		}
		prev = m.At
	}
	if d := to.Sub(prev); d > gap {
		gap, at = d, prev
	}
	return gap, at
}

// outboxState is what the outbox still holds.
type outboxState struct {
	Pending, Dead map[string]int // by destination
	DeadReasons   []reasonCount
	mainRows      map[string]string // event id → state, of main's pending and dead rows
	deadIDs       map[string][]string
}

type reasonCount struct {
	Destination, Reason string
	N                   int
}

func readOutbox(ctx context.Context, db *gorm.DB) (outboxState, error) {
	st := outboxState{Pending: map[string]int{}, Dead: map[string]int{}, mainRows: map[string]string{}, deadIDs: map[string][]string{}}
	var rows []struct {
		Destination, EventID, State string
		LastError                   *string
	}
	err := db.WithContext(ctx).Raw(`SELECT destination, event_id, state, last_error FROM herald_outbox
		WHERE state IN ('pending', 'dead') ORDER BY seq`).Scan(&rows).Error
	if err != nil {
		return st, fmt.Errorf("read the outbox: %w", err)
	}
	reasons := map[[2]string]int{}
	for _, r := range rows {
		if r.Destination == "main" {
			st.mainRows[r.EventID] = r.State
		}
		if r.State == "pending" {
			st.Pending[r.Destination]++
			continue
		}
		st.Dead[r.Destination]++
		st.deadIDs[r.Destination] = append(st.deadIDs[r.Destination], r.EventID)
		reason := ""
		if r.LastError != nil {
			reason = truncate(*r.LastError, 160)
		}
		reasons[[2]string{r.Destination, reason}]++
	}
	for k, n := range reasons {
		st.DeadReasons = append(st.DeadReasons, reasonCount{Destination: k[0], Reason: k[1], N: n})
	}
	slices.SortFunc(st.DeadReasons, func(a, b reasonCount) int { return b.N - a.N })
	return st, nil
}

func total(by map[string]int) int {
	n := 0
	for _, v := range by {
		n += v
	}
	return n
}

// drainResult is how waiting for an empty outbox ended.
type drainResult struct {
	Drained bool // no row pending
	// Parked: every row still pending waits behind a dead letter of its key
	// and nothing moved for a while; only an operator frees them.
	Parked  bool
	Pending int
	Took    time.Duration
}

// drain waits until no row of any destination is pending, until every
// pending row is parked behind a dead letter, or for at most timeout,
// logging progress.
func drain(ctx context.Context, t *testing.T, db *gorm.DB, timeout time.Duration) drainResult {
	start := time.Now()
	deadline := start.Add(timeout)
	lastLog := start
	var lastPending int64 = -1
	lastChange := start
	for {
		var pending, dead int64
		q := db.WithContext(ctx)
		err := q.Raw("SELECT count(*) FROM herald_outbox WHERE state = 'pending'").Scan(&pending).Error
		if err == nil {
			err = q.Raw("SELECT count(*) FROM herald_outbox WHERE state = 'dead'").Scan(&dead).Error
		}
		switch {
		case err != nil:
			t.Logf("drain: %v", err)
		case pending == 0:
			return drainResult{Drained: true, Took: time.Since(start)}
		case pending != lastPending:
			lastPending, lastChange = pending, time.Now()
		case dead > 0 && time.Since(lastChange) > 30*time.Second:
			var free int64
			err := q.Raw(`SELECT count(*) FROM herald_outbox p WHERE p.state = 'pending' AND NOT EXISTS (
				SELECT 1 FROM herald_outbox d WHERE d.state = 'dead' AND d.destination = p.destination
				AND d.partition_key = p.partition_key)`).Scan(&free).Error
			if err == nil && free == 0 {
				return drainResult{Parked: true, Pending: int(pending), Took: time.Since(start)}
			}
		}
		if time.Since(lastLog) >= 15*time.Second {
			t.Logf("drain: +%s: %d pending, %d dead", time.Since(start).Round(time.Second), pending, dead)
			lastLog = time.Now()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return drainResult{Pending: int(pending), Took: time.Since(start)}
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// percentile of sorted durations, q in (0, 1].
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
