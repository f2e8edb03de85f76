package producer

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// sentIDs is a publisher that accepts everything and remembers what it got.
type sentIDs struct {
	mu  sync.Mutex
	ids []string
}

func (p *sentIDs) Publish(_ context.Context, msgs []adapters.Message) []adapters.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	res := make([]adapters.Result, len(msgs))
	for i, m := range msgs {
		p.ids = append(p.ids, m.ID)
		res[i] = adapters.Result{}
	}
	return res
}

func (p *sentIDs) Close() error { return nil }

// A batch the publisher leaves unsent because the lease looked lost holds
// its keys: the next batch of the same pass, read while it was in flight,
// must not publish a key's later events once the lease is renewed (a
// SIGKILL takeover test on a loaded machine caught exactly that).
func TestBatchLeftUnsentHoldsItsKeysForTheRestOfThePass(t *testing.T) {
	db := testdb.Migrated(t, "sqlite")
	store, err := outbox.NewStore(db.Gorm, outbox.WithOrdering(true))
	if err != nil {
		t.Fatal(err)
	}
	pub := &sentIDs{}
	const lease = time.Second
	r := New(store, pub, WithLease(lease), WithLogger(slog.New(slog.DiscardHandler)))
	e := newEngine(r)

	var seq int64
	row := func(key string, n int) outbox.Row {
		t.Helper()
		ev, err := event.New("io.herald.test.thing.updated", "/test", map[string]int{"n": n}, event.WithPartitionKey(key))
		if err != nil {
			t.Fatal(err)
		}
		payload, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		return outbox.Row{Seq: seq, EventID: ev.ID, EventType: ev.Type, PartitionKey: key, Payload: payload,
			State: outbox.StatePending, CreatedAt: time.Now()}
	}
	first := []outbox.Row{row("a", 0), row("b", 0)}
	second := []outbox.Row{row("a", 1), row("c", 0)}

	ctx := context.Background()
	e.leases.set([]int{0}, outbox.Buckets, time.Now().Add(-2*lease)) // renewals failing for a whole lease
	if got := e.publishBatch(ctx, first).outcomes; len(got) != 0 || len(pub.ids) != 0 {
		t.Fatalf("with the lease lapsed: outcomes %v, published %v; want nothing", got, pub.ids)
	}
	e.leases.set([]int{0}, outbox.Buckets, time.Now()) // renewed: the buckets are still ours
	got := e.publishBatch(ctx, second).outcomes
	if len(pub.ids) != 1 || pub.ids[0] != second[1].EventID {
		t.Fatalf("published %v, want only key c's event %s: key a's second event overtook its first", pub.ids, second[1].EventID)
	}
	if len(got) != 1 || got[0].Seq != second[1].Seq || got[0].Err != nil {
		t.Fatalf("outcomes %+v, want key c's delivered", got)
	}
	if !e.holds.has("a") || !e.holds.has("b") {
		t.Error("keys a and b are not held: the next pass would not read them from their heads")
	}
}
