package app_test

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// otlpReceiver is an OTLP/HTTP endpoint that keeps the spans it is sent.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []spanSeen
}

type spanSeen struct {
	name, service string
	linkTraceIDs  []string
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				seen := spanSeen{name: s.GetName(), service: service}
				for _, l := range s.GetLinks() {
					seen.linkTraceIDs = append(seen.linkTraceIDs, hex.EncodeToString(l.GetTraceId()))
				}
				o.spans = append(o.spans, seen)
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(nil)
}

// With tracing.exporter otlp, the relay's batch span reaches the collector
// and links to the trace the event was written in.
func TestRelaySpansAreExportedOverOTLP(t *testing.T) {
	ctx := context.Background()
	recv := &otlpReceiver{}
	collector := httptest.NewServer(recv)
	t.Cleanup(collector.Close)

	cfg := testConfig(t)
	cfg.Tracing.Exporter = "otlp"
	cfg.Tracing.Endpoint = collector.URL
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ev, _ := event.New("io.herald.test.thing.created", "/test", nil, event.WithTraceParent("00-"+traceID+"-00f067aa0ba902b7-01"))
	if err := outbox.Write(ctx, a.DB, ev); err != nil {
		t.Fatal(err)
	}
	stop := run(t, a)
	eventually(t, "the event to be relayed", func() bool { return a.Relay.Stats().Published == 1 })
	stop()
	if err := a.Close(); err != nil { // flushes the span batcher
		t.Fatal(err)
	}

	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.spans) != 1 {
		t.Fatalf("collector received %d spans, want 1: %+v", len(recv.spans), recv.spans)
	}
	s := recv.spans[0]
	if s.name != "send nats" || s.service != "herald" || len(s.linkTraceIDs) != 1 || s.linkTraceIDs[0] != traceID {
		t.Errorf("span %+v; want send nats from herald linking to trace %s", s, traceID)
	}
}
