package producer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// partner is a webhook receiver that answers 503 with a Retry-After until it
// is made healthy, and remembers every request per event id.
type partner struct {
	healthy    atomic.Bool
	retryAfter int // seconds
	mu         sync.Mutex
	attempts   map[string][]time.Time
	accepted   map[string]int
}

func (p *partner) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(webhooks.HeaderID)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts[id] = append(p.attempts[id], time.Now())
	if !p.healthy.Load() {
		w.Header().Set("Retry-After", fmt.Sprint(p.retryAfter))
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	p.accepted[id]++
	w.WriteHeader(http.StatusNoContent)
}

func (p *partner) snapshot() (attempts map[string][]time.Time, accepted map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	attempts, accepted = map[string][]time.Time{}, map[string]int{}
	for k, v := range p.attempts {
		attempts[k] = append([]time.Time(nil), v...)
	}
	for k, v := range p.accepted {
		accepted[k] = v
	}
	return attempts, accepted
}

// One relay per destination: a partner webhook that is down (and asks for
// Retry-After) holds back nothing on the main broker and duplicates
// nothing there, keeps its own rows, and catches up once it is back.
func TestFailingDestinationNeitherBlocksNorDuplicatesAnother(t *testing.T) {
	eachDialect(t, func(t *testing.T, r *rig) {
		ctx := context.Background()
		p := &partner{retryAfter: 2, attempts: map[string][]time.Time{}, accepted: map[string]int{}}
		srv := httptest.NewServer(p)
		t.Cleanup(srv.Close)
		secret, _ := webhooks.NewSecret()
		key, _ := webhooks.ParseSecret(secret)
		hook, err := webhook.New([]webhook.Endpoint{{Name: "partner", URL: srv.URL, Secrets: [][]byte{key}, Enabled: true}},
			webhook.WithAllowCIDRs("127.0.0.0/8"), webhook.WithLogger(quiet()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hook.Close() })

		routes := outbox.Routes{{Destination: "partner", Types: []string{"io.herald.test.port.*"}}}
		written, routed := map[string][]byte{}, map[string]bool{}
		var evs []event.Event
		for i := range 20 {
			typ := "io.herald.test.thing.created"
			if i%4 == 0 {
				typ = "io.herald.test.port.approved"
			}
			ev, err := event.New(typ, "/test", map[string]int{"n": i}, event.WithPartitionKey(fmt.Sprint(i)))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := ev.MarshalJSON()
			written[ev.ID], routed[ev.ID] = b, typ == "io.herald.test.port.approved"
			evs = append(evs, ev)
		}
		if err := r.db.Transaction(func(tx *gorm.DB) error { return outbox.Write(ctx, tx, evs...) }); err != nil {
			t.Fatal(err)
		}

		fast := []producer.Option{producer.WithPollInterval(20 * time.Millisecond), producer.WithLogger(quiet()),
			producer.WithBackoff(10*time.Millisecond, 20*time.Millisecond)}
		// Writers write each event once; main's relay fans it out.
		mainRelay := producer.New(r.store, r.publisher(), append(fast, producer.WithName("main"), producer.WithRouter(routes))...)
		partnerRelay := producer.New(r.store.ForDestination("partner"), hook, append(fast, producer.WithName("partner"))...)
		runRelay(t, mainRelay)
		runRelay(t, partnerRelay)

		// Main delivers everything while the partner fails.
		eventually(t, "main to deliver every event", func() bool {
			n, err := r.store.Count(ctx, outbox.Filter{Destination: outbox.MainDestination})
			return err == nil && n == 0
		})
		r.exactlyOnce(written)
		eventually(t, "the partner to be tried", func() bool {
			attempts, _ := p.snapshot()
			return len(attempts) == 5
		})
		waiting, err := r.store.ListRows(ctx, outbox.Filter{Destination: "partner", State: outbox.StatePending})
		if err != nil || len(waiting) != 5 {
			t.Fatalf("partner rows while it is down = %d, %v; want its 5 events pending", len(waiting), err)
		}
		for _, row := range waiting {
			if !routed[row.EventID] {
				t.Errorf("partner holds %s, which its route does not match", row.EventID)
			}
		}

		// Back up: every routed event arrives once; none came back before
		// the Retry-After, although the backoff alone would allow 20ms.
		p.healthy.Store(true)
		eventually(t, "the partner to catch up", func() bool {
			n, err := r.store.Count(ctx, outbox.Filter{Destination: "partner"})
			return err == nil && n == 0
		})
		attempts, accepted := p.snapshot()
		for id, isRouted := range routed {
			if !isRouted {
				if len(attempts[id]) > 0 {
					t.Errorf("partner received unrouted event %s", id)
				}
				continue
			}
			if accepted[id] != 1 {
				t.Errorf("partner accepted %s %d times, want once", id, accepted[id])
			}
			at := attempts[id]
			for i := 1; i < len(at); i++ {
				if gap := at[i].Sub(at[i-1]); gap < 2*time.Second {
					t.Errorf("event %s retried after %s, before the partner's Retry-After of 2s", id, gap)
				}
			}
		}
		r.exactlyOnce(written) // main saw no second copy meanwhile
	})
}
