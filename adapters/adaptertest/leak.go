package adaptertest

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters"
)

// noGoroutineLeak runs a publish cycle and checks that every goroutine
// started during it has ended once the publisher is closed. The relay
// opens a publisher per run and reopens it after errors; a goroutine that
// Close does not stop accumulates for the life of the process.
//
// Goroutines are told apart by id (ids are never reused), so goroutines
// that were already running (a shared in-process broker, an earlier
// test's stragglers) are ignored, and a goroutine started and ended within
// the cycle is not a leak.
func (s *suite) noGoroutineLeak(t *testing.T) {
	before := goroutines()
	// Registered before Open, so it runs after every cleanup Open
	// registers (cleanups run last-registered first): by then the
	// destination's own connections are gone too.
	t.Cleanup(func() { s.requireGoroutinesEnded(t, before) })

	p, d := s.open(t)
	msgs := []adapters.Message{
		s.message(typeCreated, "key-leak", nil),
		s.message(typeUpdated, "key-leak", nil),
		s.message(typeCreated, "", nil),
	}
	requireSent(t, msgs, s.publish(t, context.Background(), p, msgs))
	requireEachOnce(t, msgs, s.receive(t, d, len(msgs)))
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// requireGoroutinesEnded waits up to ReceiveTimeout for the goroutines not
// in before to end: a closed connection's reader, say, notices the close a
// moment later.
func (s *suite) requireGoroutinesEnded(t *testing.T, before map[int64]string) {
	t.Helper()
	deadline := time.Now().Add(s.h.ReceiveTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		leaked := s.newGoroutines(before)
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			const show = 5
			t.Errorf("%d goroutine(s) started during a publish cycle still run %s after Close; the first:\n\n%s",
				len(leaked), s.h.ReceiveTimeout, strings.Join(leaked[:min(show, len(leaked))], "\n\n"))
			return
		}
		time.Sleep(wait)
	}
}

// newGoroutines returns the stacks of goroutines not in before, less those
// the harness says to ignore.
func (s *suite) newGoroutines(before map[int64]string) []string {
	var leaked []string
	for id, stack := range goroutines() {
		if _, ok := before[id]; ok {
			continue
		}
		if slices.ContainsFunc(s.h.IgnoreGoroutines, func(sub string) bool { return strings.Contains(stack, sub) }) {
			continue
		}
		leaked = append(leaked, stack)
	}
	slices.Sort(leaked)
	return leaked
}

// goroutines returns the stack of every goroutine, by goroutine id.
func goroutines() map[int64]string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	all := map[int64]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		var id int64
		if _, err := fmt.Sscanf(g, "goroutine %d ", &id); err == nil {
			all[id] = g
		}
	}
	return all
}
