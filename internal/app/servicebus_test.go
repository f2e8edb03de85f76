package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/internal/testservicebus"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
)

// Switching to Azure Service Bus is the adapter key and the servicebus
// block, as for SQS. Herald relays the portal sample through the real
// azservicebus client to the local Service Bus peer (.ci/servicebus.sh), to
// a session-enabled queue, where each event is one message keyed by its
// partition key; then /readyz reports the broker once the way to it is cut.
func TestServeRelaysToServiceBusWhenTheAdapterSaysSo(t *testing.T) {
	proxy := testservicebus.NewProxy(t)
	queue := testservicebus.Name(t, testservicebus.SessionQueue)
	cfg := testConfig(t)
	cfg.Adapter = "servicebus"
	cfg.ServiceBus.ConnectionString = proxy.ConnectionString()
	cfg.ServiceBus.Queue = queue
	cfg.ServiceBus.Sessions = true
	cfg.HTTP.Listen = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Embedded != nil {
		t.Error("adapter servicebus still started the embedded JetStream server")
	}
	written := writePortalSample(t, a.DB)
	run(t, a)
	base := "http://" + a.HTTPAddr
	eventually(t, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == http.StatusOK })

	got := readSessions(t, queue, len(written))
	if len(got) != len(written) {
		t.Fatalf("the queue holds %d messages, the portal sample wrote %d events", len(got), len(written))
	}
	seen := map[string]bool{}
	for _, m := range got {
		var ev struct {
			ID           string `json:"id"`
			Type         string `json:"type"`
			PartitionKey string `json:"partitionkey"`
		}
		if err := json.Unmarshal(m.Body, &ev); err != nil {
			t.Fatalf("message %s: body is not the stored CloudEvent: %v", m.MessageID, err)
		}
		if m.MessageID != ev.ID || seen[ev.ID] {
			t.Errorf("MessageId %q for event %q (seen before: %v)", m.MessageID, ev.ID, seen[ev.ID])
		}
		seen[ev.ID] = true
		if !written[ev.ID] {
			t.Errorf("message %s is no event the portal sample wrote", ev.ID)
		}
		if m.Subject == nil || *m.Subject != ev.Type {
			t.Errorf("event %s: Subject %v, want its type %s", ev.ID, m.Subject, ev.Type)
		}
		wantSession := ev.PartitionKey
		if wantSession == "" {
			wantSession = ev.ID
		}
		if m.SessionID == nil || *m.SessionID != wantSession {
			t.Errorf("event %s: SessionId %v, want %s", ev.ID, m.SessionID, wantSession)
		}
	}

	if p := a.Relay.Stats().Published; p != int64(len(written)) {
		t.Errorf("relay published %d, want %d", p, len(written))
	}
	proxy.Stop()
	eventually(t, "not ready while Service Bus is unreachable", func() bool {
		code, body := get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "broker")
	})
}

// writePortalSample feeds each audit record of the portal sample to the
// enricher in its own transaction, as the demo does, and returns the ids of
// the events it wrote to the outbox.
func writePortalSample(t *testing.T, db *gorm.DB) map[string]bool {
	t.Helper()
	ctx := context.Background()
	if err := portalsample.Load(ctx, db); err != nil {
		t.Fatal(err)
	}
	records, err := portalsample.AuditRecords(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	enr := enricher.New()
	written := map[string]bool{}
	for _, rec := range records {
		var evs []event.Event
		err := db.Transaction(func(tx *gorm.DB) error {
			var err error
			evs, err = enr.Record(ctx, tx, rec)
			return err
		})
		if err != nil && !errors.Is(err, enricher.ErrUnmapped) {
			t.Fatalf("audit record %s: %v", rec.ID, err)
		}
		for _, ev := range evs {
			written[ev.ID] = true
		}
	}
	if len(written) == 0 {
		t.Fatal("the portal sample wrote no event")
	}
	return written
}

// readSessions reads n messages from a session queue, a session at a time.
func readSessions(t *testing.T, queue string, n int) []*azservicebus.ReceivedMessage {
	t.Helper()
	client := testservicebus.Client(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var got []*azservicebus.ReceivedMessage
	for len(got) < n && ctx.Err() == nil {
		s, err := client.AcceptNextSessionForQueue(ctx, queue, nil)
		if err != nil {
			var sbErr *azservicebus.Error
			if errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeTimeout {
				continue
			}
			t.Fatalf("accept a session after %d of %d messages: %v", len(got), n, err)
		}
		for wait := 5 * time.Second; ; wait = 50 * time.Millisecond {
			callCtx, cancelCall := context.WithTimeout(ctx, wait)
			msgs, _ := s.ReceiveMessages(callCtx, 1, nil) // one at a time: nothing arrives after a call
			cancelCall()
			if len(msgs) == 0 {
				break
			}
			if err := s.CompleteMessage(ctx, msgs[0], nil); err != nil {
				t.Fatal(err)
			}
			got = append(got, msgs[0])
		}
		_ = s.Close(ctx)
	}
	return got
}
