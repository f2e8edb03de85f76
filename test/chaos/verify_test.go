//go:build chaos

package chaos

import (
	"testing"
	"time"
)

// TestVerifyFindsEachFault is the checker's negative control: a stream
// with one event of each fault must be told apart exactly, or a clean
// scenario proves nothing.
func TestVerifyFindsEachFault(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	truth := []committedEvent{
		{ID: "a0", Key: "a", N: 0, At: at(0), Answered: true},
		{ID: "a1", Key: "a", N: 1, At: at(1), Answered: true},
		{ID: "a2", Key: "a", N: 2, At: at(2), Answered: true},
		{ID: "b0", Key: "b", N: 0, At: at(3), Answered: true}, // lost, dead in the outbox
		{ID: "b1", Key: "b", N: 1, At: at(4)},                 // lost, gone; its commit unanswered
		{ID: "c0", Key: "c", N: 0, At: at(5), Answered: true}, // stored twice
	}
	msg := func(seq uint64, id, key string, n, ms int) storedMsg {
		return storedMsg{Seq: seq, ID: id, BodyID: id, Key: key, N: n, At: at(ms)}
	}
	msgs := []storedMsg{
		msg(1, "a0", "a", 0, 10),
		msg(2, "a2", "a", 2, 20), // before a1: a1 is out of order
		msg(3, "a1", "a", 1, 30),
		msg(4, "c0", "c", 0, 40),
		msg(5, "c0", "c", 0, 50),
		msg(6, "x9", "x", 9, 60),                                     // never committed
		{Seq: 7, ID: "c0", BodyID: "a0", Key: "c", N: 0, At: at(70)}, // header and body disagree
	}
	v := verify(truth, msgs, outboxState{mainRows: map[string]string{"b0": "dead"}})
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"committed", v.Committed, 6},
		{"unanswered", v.Unanswered, 1},
		{"stored", v.Stored, 7},
		{"lost", v.Lost, 2},
		{"lost dead", v.LostDead, 1},
		{"lost gone", v.LostGone, 1},
		{"duplicates", v.Duplicates, 2},
		{"duplicated events", v.DuplicatedEvents, 1},
		{"order violations", v.OrderViolations, 1},
		{"unknown", v.Unknown, 1},
		{"malformed", v.Malformed, 1},
		{"latencies", len(v.Latencies), 4}, // a0, a2, a1, c0
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if took, backlog, ok := v.drainedAfter(at(4)); ok {
		t.Errorf("drainedAfter = %s, %d: want not drained, b0 was never stored", took, backlog)
	}
	if took, backlog, ok := v.drainedAfter(at(2)); !ok || took != 28*time.Millisecond || backlog != 2 {
		t.Errorf("drainedAfter(2ms) = %s, %d, %v; want 28ms, 2, true", took, backlog, ok)
	}
	if gap, _ := longestPause(msgs, at(0), at(100)); gap != 30*time.Millisecond {
		t.Errorf("longestPause = %s, want 30ms (the last message to the end)", gap)
	}
}
