package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natsadapter "github.com/heraldhq/herald/adapters/nats"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// benchStream starts an in-process JetStream server with the bench stream
// and returns a client on it.
func benchStream(t *testing.T) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	srv, err := natsadapter.StartEmbedded(natsadapter.EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(rawMaxPending))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: Stream, Subjects: []string{StreamSubjects}})
	if err != nil {
		t.Fatal(err)
	}
	return js, s
}

func TestReferenceRelayDeliversEachBenchRowOnceAndLeavesOthersAlone(t *testing.T) {
	js, stream := benchStream(t)
	const events = 1234 // two full batches and a part, shared by the workers
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			if err := stream.Purge(ctx); err != nil {
				t.Fatal(err)
			}
			db := testdb.Migrated(t, dialect)
			b := &bench{keys: []string{"k1", "k2"}}
			b.cfg.Database = config.Database{Driver: dialect, DSN: db.DSN}
			evs := make([]event.Event, events)
			for i := range evs {
				var err error
				if evs[i], err = b.newEvent(); err != nil {
					t.Fatal(err)
				}
			}
			foreign, err := event.New("io.herald.portal.data_product.created", "/portal", map[string]string{"id": "p1"})
			if err != nil {
				t.Fatal(err)
			}
			if err := outbox.Write(ctx, db.Gorm, append(evs[:600:600], append([]event.Event{foreign}, evs[600:]...)...)...); err != nil {
				t.Fatal(err)
			}

			workers := 2
			if dialect == "sqlite" {
				workers = 1
			}
			var (
				got  acks
				st   referenceStats
				wg   sync.WaitGroup
				errs = make([]error, workers)
			)
			for i := range workers {
				g, err := outbox.Open(dialect, db.DSN) // a pool per worker, as per lane
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if sqlDB, err := g.DB(); err == nil {
						_ = sqlDB.Close()
					}
				})
				l := lane{app: &app.App{DB: g}, js: js}
				wg.Go(func() { errs[i] = b.referenceWorker(ctx, l, &got, &st) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("worker %d: %v", i+1, err)
				}
			}
			if st.rows.Load() != events || got.acked.Load() != events || got.stored() != events {
				t.Errorf("relayed %d rows, %d acked, %d stored; want %d of each", st.rows.Load(), got.acked.Load(), got.stored(), events)
			}
			if min := int64((events + referenceBatch - 1) / referenceBatch); st.transactions.Load() < min {
				t.Errorf("%d transactions for %d rows of at most %d", st.transactions.Load(), events, referenceBatch)
			}
			info, err := stream.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != events {
				t.Errorf("stream holds %d messages, want %d", info.State.Msgs, events)
			}
			var left []string
			if err := db.Gorm.Raw("SELECT event_id FROM " + outbox.Table).Scan(&left).Error; err != nil {
				t.Fatal(err)
			}
			if len(left) != 1 || left[0] != foreign.ID {
				t.Errorf("rows left: %v, want only the foreign event %s", left, foreign.ID)
			}
			m, err := stream.GetLastMsgForSubject(ctx, Subject)
			if err != nil {
				t.Fatal(err)
			}
			var ev event.Event
			if id := m.Header.Get(jetstream.MsgIDHeader); id == "" || len(m.Data) == 0 {
				t.Errorf("message without its event id or payload: %+v", m)
			} else if err := ev.UnmarshalJSON(m.Data); err != nil || ev.ID != id || ev.Type != EventType {
				t.Errorf("payload %s does not parse to event %s: %v", m.Data, id, err)
			}
		})
	}
}

func TestPublishAsyncKeepsItsWindowAndCountsDuplicates(t *testing.T) {
	js, stream := benchStream(t)
	ctx := context.Background()
	msgs := make([]*natsgo.Msg, 50)
	for i := range msgs {
		msgs[i] = rawMessage(fmt.Sprintf("id-%d", i%40), []byte(`{}`)) // ten repeat an earlier id
	}
	acked, dups, err := publishAsync(ctx, js, msgs, 7)
	if err != nil {
		t.Fatal(err)
	}
	if acked != 50 || dups != 10 {
		t.Errorf("acked %d, duplicates %d; want 50 and 10", acked, dups)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 40 {
		t.Errorf("stream holds %d messages, want 40", info.State.Msgs)
	}
	bad := []*natsgo.Msg{{Subject: "not-captured.by.the.stream", Data: []byte("x")}}
	if _, _, err := publishAsync(ctx, js, bad, 7); err == nil {
		t.Error("a publish no stream captures did not fail")
	}
}
