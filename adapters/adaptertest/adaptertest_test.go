package adaptertest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/adaptertest"
)

// The suite is only worth something if a broken adapter fails it. These
// tests run it against an in-memory fake broker: once as written (it must
// pass), and once per deliberate flaw (the named subtest must fail).

const (
	fakeMaxPayload = 4096
	fakeBatchLimit = 10
	// flawEnv selects the flaw in the child process of TestSuiteCatchesFlaws.
	flawEnv = "ADAPTERTEST_FAKE_FLAW"
)

// Flaws, each with the subtest that must catch it.
var flaws = []struct{ name, subtest string }{
	{"reencode", "PublishOne"},
	{"lose-id", "PublishOne"},
	{"empty-batch-panics", "EmptyBatch"},
	{"cut-at-batch-limit", "LargeBatch"},
	{"short-results", "LargeBatch"},
	{"no-duplicate-flag", "Duplicates"},
	{"store-duplicates", "Duplicates"},
	{"reverse-batch", "PartitionKeyOrder"},
	{"oversize-transient", "Oversize"},
	{"oversize-fails-batch", "Oversize"},
	{"oversize-unavailable", "Oversize"},
	{"failure-holds-nothing", "KeyHeldAfterFailure"},
	{"held-reported-sent", "KeyHeldAfterFailure"},
	{"held-wraps-permanent", "KeyHeldAfterFailure"},
	{"held-wraps-unavailable", "KeyHeldAfterFailure"},
	{"failure-holds-every-key", "KeyHeldAfterFailure"},
	{"bound-zero", "Bounded"},
	{"bound-shrinks", "Bounded"},
	{"bound-too-short", "Bounded"},
	{"limit-zero", "Limited"},
	{"limit-overstated", "Limited"},
	{"limit-ignores-headers", "Limited"},
	{"cancel-lies", "CancelledContext"},
	{"publish-after-close-panics", "Close"},
	{"publish-after-close-succeeds", "Close"},
	{"down-reports-success", "BrokerDown"},
	{"down-waits-for-deadline", "BrokerDown"},
	{"down-permanent", "BrokerDown"},
	{"down-not-unavailable", "BrokerDown"},
	{"down-held-unmarked", "BrokerDown"},
	{"down-slower-than-bound", "BrokerDown"},
	{"close-leaks-goroutine", "NoGoroutineLeak"},
}

func TestFakeConforms(t *testing.T) {
	adaptertest.Run(t, fakeHarness(""))
}

// TestSuiteCatchesFlaws runs the suite against each flawed fake in a child
// process, since a failing subtest cannot be observed from inside the same
// test binary without failing this test too.
func TestSuiteCatchesFlaws(t *testing.T) {
	if os.Getenv(flawEnv) != "" {
		t.Skip("child process")
	}
	for _, f := range flaws {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0],
				"-test.run=^TestFlawedFake$/^"+f.subtest+"$", "-test.count=1")
			cmd.Env = append(os.Environ(), flawEnv+"="+f.name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("suite passed an adapter with flaw %q; output:\n%s", f.name, out)
			}
			if want := "--- FAIL: TestFlawedFake/" + f.subtest; !bytes.Contains(out, []byte(want)) {
				t.Fatalf("want %q in output:\n%s", want, out)
			}
		})
	}
}

// TestFlawedFake only runs in TestSuiteCatchesFlaws' child processes.
func TestFlawedFake(t *testing.T) {
	flaw := os.Getenv(flawEnv)
	if flaw == "" {
		t.Skip("runs only as a child of TestSuiteCatchesFlaws")
	}
	adaptertest.Run(t, fakeHarness(flaw))
}

func fakeHarness(flaw string) adaptertest.Harness {
	return adaptertest.Harness{
		Open: func(t *testing.T) (adapters.Publisher, adaptertest.Destination) {
			b := &fakeBroker{seen: map[string]bool{}}
			return newFakePublisher(b, flaw), b
		},
		OpenDown: func(t *testing.T) adapters.Publisher {
			return newFakePublisher(&fakeBroker{seen: map[string]bool{}, down: true}, flaw)
		},
		MaxPayload:     fakeMaxPayload,
		BatchLimit:     fakeBatchLimit,
		Dedupe:         true,
		ReceiveTimeout: 2 * time.Second,
		SettleTime:     20 * time.Millisecond,
	}
}

// fakeBroker stores messages in memory and drops ids it has seen.
type fakeBroker struct {
	mu     sync.Mutex
	stored []adaptertest.Received
	seen   map[string]bool
	read   int
	down   bool
}

// store reports whether id was a duplicate.
func (b *fakeBroker) store(id string, payload []byte, keepDuplicate bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	dup := b.seen[id]
	if !dup || keepDuplicate {
		b.stored = append(b.stored, adaptertest.Received{ID: id, Payload: slices.Clone(payload)})
	}
	b.seen[id] = true
	return dup
}

func (b *fakeBroker) Receive(ctx context.Context, max int) ([]adaptertest.Received, error) {
	var got []adaptertest.Received
	for {
		b.mu.Lock()
		for b.read < len(b.stored) && len(got) < max {
			got = append(got, b.stored[b.read])
			b.read++
		}
		b.mu.Unlock()
		if len(got) == max {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, nil
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// errFakeEarlierFailed is the fake's ErrEarlierFailed.
var errFakeEarlierFailed = errors.New("fake: not sent, an earlier message with the same partition key failed")

// fakePublisher runs a background goroutine, as real clients do (a
// connection's reader, say), which Close stops and waits for.
type fakePublisher struct {
	b         *fakeBroker
	flaw      string
	closed    bool
	closeOnce sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup
}

func newFakePublisher(b *fakeBroker, flaw string) *fakePublisher {
	p := &fakePublisher{b: b, flaw: flaw, stop: make(chan struct{})}
	p.wg.Go(func() { <-p.stop })
	return p
}

func (p *fakePublisher) Publish(ctx context.Context, msgs []adapters.Message) []adapters.Result {
	if len(msgs) == 0 && p.flaw == "empty-batch-panics" {
		panic("empty batch")
	}
	if p.closed {
		switch p.flaw {
		case "publish-after-close-panics":
			panic("closed")
		case "publish-after-close-succeeds":
		default:
			return adapters.FailAll(len(msgs), errors.New("fake: closed"))
		}
	}
	if p.flaw == "bound-too-short" {
		time.Sleep(5 * time.Millisecond)
	}
	if p.b.down {
		return p.publishDown(ctx, msgs)
	}
	order := make([]int, len(msgs))
	for i := range order {
		order[i] = i
	}
	if p.flaw == "reverse-batch" {
		slices.Reverse(order)
	}
	res := make([]adapters.Result, len(msgs))
	failed := map[string]error{} // partition key -> the failure that holds it back
	var anyFailure error
	for n, i := range order {
		m := msgs[i]
		if err := p.heldBack(m.PartitionKey, failed, anyFailure); err != nil {
			if p.flaw != "held-reported-sent" {
				res[i].Err = err
			}
			continue // not sent
		}
		var err error
		switch {
		case p.flaw == "cut-at-batch-limit" && n >= fakeBatchLimit:
			continue // silently lost, reported sent
		case p.size(m) > fakeMaxPayload:
			err = fmt.Errorf("fake: %d bytes over limit %d", p.size(m), fakeMaxPayload)
			switch p.flaw {
			case "oversize-transient":
			case "oversize-fails-batch":
				return adapters.FailAll(len(msgs), adapters.Permanent(err))
			case "oversize-unavailable":
				err = adapters.Unavailable(adapters.Permanent(err))
			default:
				err = adapters.Permanent(err)
			}
		case ctx.Err() != nil:
			err = ctx.Err()
		}
		if err != nil {
			res[i].Err = err
			anyFailure = err
			if m.PartitionKey != "" && p.flaw != "failure-holds-nothing" {
				failed[m.PartitionKey] = err
			}
			if p.flaw != "cancel-lies" || ctx.Err() == nil {
				continue
			}
			// cancel-lies: reported failed, sent all the same.
		}
		payload, id := m.Payload, m.ID
		switch p.flaw {
		case "reencode":
			payload = bytes.TrimSpace(payload)
		case "lose-id":
			id = strings.ToUpper(id)
		}
		dup := p.b.store(id, payload, p.flaw == "store-duplicates")
		res[i].Duplicate = dup && p.flaw != "no-duplicate-flag"
	}
	if p.flaw == "short-results" && len(res) > 1 {
		return res[:len(res)-1]
	}
	return res
}

// publishDown is Publish on a broker that cannot be reached: the first
// message of each key meets the outage, its successors are held back.
func (p *fakePublisher) publishDown(ctx context.Context, msgs []adapters.Message) []adapters.Result {
	switch p.flaw {
	case "down-reports-success":
		return make([]adapters.Result, len(msgs))
	case "down-waits-for-deadline":
		<-ctx.Done()
		return adapters.FailAll(len(msgs), ctx.Err())
	case "down-slower-than-bound":
		time.Sleep(p.MaxPublishTime(len(msgs)) + 20*time.Millisecond)
	}
	res := make([]adapters.Result, len(msgs))
	failed := map[string]error{}
	for i, m := range msgs {
		if err := p.heldBack(m.PartitionKey, failed, nil); err != nil {
			res[i].Err = err
			if p.flaw == "down-held-unmarked" {
				//nolint:errorlint // the flaw: the cause's unavailability is dropped
				res[i].Err = fmt.Errorf("%w (partition key %q): %v", errFakeEarlierFailed, m.PartitionKey, failed[m.PartitionKey])
			}
			continue
		}
		err := errors.New("fake: broker unreachable")
		switch p.flaw {
		case "down-permanent":
			err = adapters.Permanent(err)
		case "down-not-unavailable":
		default:
			err = adapters.Unavailable(err)
		}
		res[i].Err = err
		if m.PartitionKey != "" {
			failed[m.PartitionKey] = err
		}
	}
	return res
}

// heldBack returns the error of a message left unsent because an earlier one
// with its key failed, or nil. It wraps the cause so that errors.Is finds
// adapters.ErrUnavailable or a context error in it, unless the cause is
// permanent: the held-back message was not refused itself, so only the
// cause's text goes along. anyFailure is the batch's latest failure, for the
// flaw that holds back every key.
func (p *fakePublisher) heldBack(key string, failed map[string]error, anyFailure error) error {
	cause := failed[key]
	if key == "" || cause == nil {
		if p.flaw != "failure-holds-every-key" || anyFailure == nil {
			return nil
		}
		cause = anyFailure
	}
	switch {
	case p.flaw == "held-wraps-permanent":
		return fmt.Errorf("%w (partition key %q): %w", errFakeEarlierFailed, key, cause)
	case p.flaw == "held-wraps-unavailable":
		//nolint:errorlint // the text only, as for a permanent cause; the flaw is the marking
		return adapters.Unavailable(fmt.Errorf("%w (partition key %q): %v", errFakeEarlierFailed, key, cause))
	case errors.Is(cause, adapters.ErrPermanent):
		//nolint:errorlint // deliberately not wrapping the permanence
		return fmt.Errorf("%w (partition key %q): %v", errFakeEarlierFailed, key, cause)
	default:
		return fmt.Errorf("%w (partition key %q): %w", errFakeEarlierFailed, key, cause)
	}
}

// MaxPublishTime implements adapters.Bounded: the fake stores in memory, so
// a second is plenty for any batch the suite sends.
func (p *fakePublisher) MaxPublishTime(n int) time.Duration {
	switch p.flaw {
	case "bound-zero":
		return 0
	case "bound-shrinks":
		return time.Second - time.Duration(min(n, 1000))*time.Millisecond/2
	case "bound-too-short":
		return time.Millisecond
	}
	return time.Second + time.Duration(n)*time.Millisecond
}

// size is what a message weighs against the fake's limit: its payload, and
// with the flaw limit-ignores-headers also the "headers" the fake adds,
// which its MaxMessageBytes forgets to take off.
func (p *fakePublisher) size(m adapters.Message) int {
	if p.flaw == "limit-ignores-headers" {
		return len(m.Payload) + len(m.ID) + len(m.TraceParent)
	}
	return len(m.Payload)
}

// MaxMessageBytes implements adapters.Limited.
func (p *fakePublisher) MaxMessageBytes() int {
	switch p.flaw {
	case "limit-zero":
		return 0
	case "limit-overstated":
		return fakeMaxPayload + 1
	}
	return fakeMaxPayload
}

func (p *fakePublisher) Close() error {
	p.closed = true
	if p.flaw == "close-leaks-goroutine" {
		return nil
	}
	p.closeOnce.Do(func() { close(p.stop) })
	p.wg.Wait()
	return nil
}
