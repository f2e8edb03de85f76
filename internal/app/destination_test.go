package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// flaky is a partner's webhook receiver that answers 500 to the first
// requests and 204 after, keeping every body it got.
type flaky struct {
	failFirst int
	secret    []byte
	mu        sync.Mutex
	bodies    [][]byte
	ids       []string
	verifyErr []error
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bodies = append(f.bodies, body)
	f.ids = append(f.ids, r.Header.Get(webhooks.HeaderID))
	if err := webhooks.Verify([][]byte{f.secret}, r.Header, body, time.Now(), 5*time.Minute); err != nil {
		f.verifyErr = append(f.verifyErr, err)
	}
	if len(f.bodies) <= f.failFirst {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *flaky) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bodies)
}

// The route table end to end: an audit record ingested over HTTP becomes an
// event for the main broker, for a partner webhook whose route matches its
// type, and for an archive stream taking everything. The partner fails
// twice; main and archive do not wait for it, and it gets the event once
// it answers, with the same body and id every time.
func TestRoutesSendEachEventToEveryMatchingDestination(t *testing.T) {
	encoded, _ := webhooks.NewSecret()
	secret, _ := webhooks.ParseSecret(encoded)
	partner := &flaky{failFirst: 2, secret: secret}
	srv := httptest.NewServer(partner)
	t.Cleanup(srv.Close)

	cfg := testConfig(t)
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.IngestToken = "s3cret"
	cfg.Relay.BackoffMin, cfg.Relay.BackoffMax = 300*time.Millisecond, 300*time.Millisecond
	hook := config.Default().Webhook
	hook.URL, hook.Secrets, hook.AllowCIDRs = srv.URL, []string{encoded}, []string{"127.0.0.0/8"}
	archive := config.Default().NATS
	archive.Stream, archive.StreamSubjects, archive.SubjectTemplate = "ARCHIVE", []string{"archive.>"}, "archive.{type}"
	cfg.Destinations = []config.Destination{
		{Name: "partner", Types: []string{"io.herald.portal.data_product.*"}, Adapter: "webhook", Webhook: hook},
		{Name: "ignored", Types: []string{"io.herald.portal.input_port.*"}, Adapter: "webhook", Webhook: hook},
		{Name: "archive", Adapter: "nats", NATS: archive},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := portalsample.Load(context.Background(), a.DB); err != nil {
		t.Fatal(err)
	}
	run(t, a)

	const id = "aaaaaaaa-0000-4000-8000-000000000002"
	if code, resp := postAuditRecord(t, a, "s3cret", id, "data_product_updated"); code != http.StatusOK || !strings.Contains(resp, `"enriched"`) {
		t.Fatalf("ingest: %d %s", code, resp)
	}
	// Main and the archive deliver while the partner is still failing.
	eventually(t, "main to publish", func() bool { return a.Relays[0].Stats().Published == 1 })
	eventually(t, "the archive to publish", func() bool { return a.Relays[3].Stats().Published == 1 })
	if got := partner.requests(); got > 2 {
		t.Logf("the partner was already asked %d times", got)
	}
	eventually(t, "the partner to accept", func() bool { return a.Relays[1].Stats().Published == 1 })

	partner.mu.Lock()
	bodies, ids, verifyErrs := partner.bodies, partner.ids, partner.verifyErr
	partner.mu.Unlock()
	if len(bodies) != 3 || len(verifyErrs) != 0 {
		t.Fatalf("partner got %d requests (verify errors %v), want 3 signed ones: 500, 500, 204", len(bodies), verifyErrs)
	}
	for i := range bodies {
		if !bytes.Equal(bodies[i], bodies[0]) || ids[i] != ids[0] {
			t.Errorf("attempt %d differs from the first: id %s vs %s", i+1, ids[i], ids[0])
		}
	}
	if a.Relays[2].Stats().Published != 0 {
		t.Error("the input_port route got a data_product event")
	}
	// A relay counts an event published when the broker acks it, a moment
	// before it settles the row; wait for the outbox itself.
	var st outbox.Stats
	eventually(t, "the outbox to empty", func() bool {
		var err error
		st, err = a.Store.Stats(context.Background())
		return err == nil && st.Pending == 0
	})
	if st.Dead != 0 {
		t.Fatalf("outbox after delivery = %+v; want no dead letters", st)
	}

	// The archive stream holds the event, under its own subject.
	nc, err := natsgo.Connect(a.Embedded.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), "ARCHIVE")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetMsg(context.Background(), 1)
	if err != nil || msg.Header.Get("Nats-Msg-Id") != ids[0] || !strings.HasPrefix(msg.Subject, "archive.") {
		t.Fatalf("archive message = %+v, %v; want the partner's event id %s", msg, err, ids[0])
	}

	_, metrics := get(t, "http://"+a.HTTPAddr+"/metrics")
	for _, want := range []string{
		`herald_events_published_total{destination="partner",type="io.herald.portal.data_product.updated"} 1`,
		// A partner that has delivered nothing yet and answers 500 to its
		// only event cannot be told from one that is down: the relay
		// pauses it and spends no attempt, and resumes once it answers.
		`herald_destination_paused{destination="partner"} 0`,
		`herald_events_published_total{destination="archive",type="io.herald.portal.data_product.updated"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, `herald_publish_failures_total{destination="partner"`) {
		t.Error("the partner's failures while it looked down were counted as attempts")
	}
}

// replayReceiver answers 410 Gone until it is back, then records the order
// in which events arrive.
type replayReceiver struct {
	back     atomic.Bool
	mu       sync.Mutex
	arrivals []string // event ids, in arrival order
}

func (rr *replayReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !rr.back.Load() {
		w.WriteHeader(http.StatusGone)
		return
	}
	rr.mu.Lock()
	rr.arrivals = append(rr.arrivals, r.Header.Get(webhooks.HeaderID))
	rr.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// A partner that answers 410 Gone is disabled: the head of each key becomes
// a dead letter and parks its key (relay.dead_letter_policy park_key), so the
// rest wait, the main flow delivers everything, and once the partner is back
// (Herald restarted, dead letters retried for that destination alone) it
// receives every event once, in order per key.
func TestGoneEndpointMissesNothingAndIsReplayedInOrder(t *testing.T) {
	ctx := context.Background()
	encoded, _ := webhooks.NewSecret()
	rr := &replayReceiver{}
	srv := httptest.NewServer(rr)
	t.Cleanup(srv.Close)

	cfg := testConfig(t)
	hook := config.Default().Webhook
	hook.URL, hook.Secrets, hook.AllowCIDRs = srv.URL, []string{encoded}, []string{"127.0.0.0/8"}
	cfg.Destinations = []config.Destination{{Name: "partner", Adapter: "webhook", Webhook: hook}}
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for i := range 3 {
		for _, key := range []string{"A", "B"} {
			ev, err := event.New("io.herald.test.port.updated", "/test", map[string]int{"n": i}, event.WithPartitionKey(key))
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
	}
	if err := outbox.Write(ctx, a.DB, evs...); err != nil {
		t.Fatal(err)
	}
	stop := run(t, a)
	// The partner takes every type, so the announcement that it was
	// disabled is routed to it too, and kept there as a dead letter like
	// the rest; the replay below is of the test's own events.
	partnerDead := outbox.Filter{State: outbox.StateDead, Destination: "partner", Type: "io.herald.test.port.updated"}
	partnerParked := outbox.Filter{State: outbox.StatePending, Destination: "partner", Type: "io.herald.test.port.updated"}
	eventually(t, "each key's head to be a dead letter and the rest to wait", func() bool {
		dead, err := a.Store.Count(ctx, partnerDead)
		parked, err2 := a.Store.Count(ctx, partnerParked)
		return err == nil && err2 == nil && dead == 2 && parked == len(evs)-2
	})
	// Everything, and the announcement that the partner was disabled.
	eventually(t, "main to deliver everything", func() bool { return a.Relay.Stats().Published == int64(len(evs))+1 })
	// The partner's copy of the announcement is settled too, so that the
	// restart below starts from the parked events alone.
	eventually(t, "the partner to hold only the parked events", func() bool {
		n, err := a.Store.Count(ctx, outbox.Filter{State: outbox.StatePending, Destination: "partner"})
		return err == nil && n == len(evs)-2
	})
	stop()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	rr.back.Store(true)
	a, err = open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := a.Store.Retry(ctx, partnerDead, nil); err != nil || n != 2 {
		t.Fatalf("Retry = %d, %v; want the 2 heads", n, err)
	}
	run(t, a)
	eventually(t, "the partner to catch up", func() bool { return a.Relays[1].Stats().Published == int64(len(evs)) })
	if a.Relay.Stats().Published != 0 {
		t.Errorf("main published %d events again during the partner's replay", a.Relay.Stats().Published)
	}
	rr.mu.Lock()
	arrivals := slices.Clone(rr.arrivals)
	rr.mu.Unlock()
	pos := map[string]int{}
	for i, id := range arrivals {
		if _, dup := pos[id]; dup {
			t.Errorf("event %s arrived twice", id)
		}
		pos[id] = i
	}
	for i := 2; i < len(evs); i++ { // evs alternate A, B: compare each with its key's previous one
		if pos[evs[i].ID] < pos[evs[i-2].ID] {
			t.Errorf("key %s: event %d arrived before event %d", evs[i].PartitionKey, i, i-2)
		}
	}
	if len(arrivals) != len(evs) {
		t.Errorf("partner received %d events, want %d", len(arrivals), len(evs))
	}
}

// A partner that fails without a break for webhook.disable_after is
// disabled: an io.herald.webhook.endpoint_disabled event reaches the main
// broker, and the partner's events wait as dead letters for replay.
func TestFailingEndpointIsDisabledAndAnnounced(t *testing.T) {
	ctx := context.Background()
	encoded, _ := webhooks.NewSecret()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)

	cfg := testConfig(t)
	cfg.Relay.BackoffMin, cfg.Relay.BackoffMax, cfg.Relay.MaxAttempts = 50*time.Millisecond, 100*time.Millisecond, 1000
	hook := config.Default().Webhook
	hook.URL, hook.Secrets, hook.AllowCIDRs, hook.DisableAfter = srv.URL+"/hook?token=abc", []string{encoded}, []string{"127.0.0.0/8"}, time.Second
	cfg.Destinations = []config.Destination{{Name: "partner", Adapter: "webhook", Webhook: hook}}
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := event.New("io.herald.test.port.updated", "/test", map[string]int{"n": 1})
	if err := outbox.Write(ctx, a.DB, ev); err != nil {
		t.Fatal(err)
	}
	run(t, a)

	eventually(t, "the partner's event to be a dead letter", func() bool {
		n, err := a.Store.Count(ctx, outbox.Filter{State: outbox.StateDead, Destination: "partner", Type: ev.Type})
		return err == nil && n == 1
	})
	row, err := a.Store.ForDestination("partner").Get(ctx, ev.ID)
	if err != nil || !strings.Contains(row.LastError, "kept failing") {
		t.Fatalf("partner row = %+v, %v; want dead with the reason it was disabled", row, err)
	}
	// The announcement is an event like any other: main delivers it.
	eventually(t, "main to publish the event and the announcement", func() bool { return a.Relay.Stats().Published == 2 })
	nc, err := natsgo.Connect(a.Embedded.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, "HERALD")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, "herald."+webhook.EndpointDisabledType)
	if err != nil {
		t.Fatalf("no %s in the stream: %v", webhook.EndpointDisabledType, err)
	}
	announced, err := event.Parse(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	var data webhook.EndpointDisabled
	if err := json.Unmarshal(announced.Data, &data); err != nil {
		t.Fatal(err)
	}
	if data.Destination != "partner" || !strings.Contains(data.Reason, "kept failing") || strings.Contains(data.URL, "abc") {
		t.Errorf("announcement = %+v; want partner, the reason, and the URL without its query", data)
	}
}

// counter is a healthy receiver: it answers 204 and counts what it got.
type counter struct{ n atomic.Int64 }

func (c *counter) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	c.n.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

// A receiver that takes 30 s over every request holds back its own
// destination only: two healthy endpoints get every event while it has not
// yet answered once.
func TestSlowEndpointDoesNotDelayHealthyOnes(t *testing.T) {
	ctx := context.Background()
	encoded, _ := webhooks.NewSecret()
	release := make(chan struct{})
	var slowAnswered, slowAsked atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		slowAsked.Add(1)
		select {
		case <-time.After(30 * time.Second):
		case <-release:
		}
		slowAnswered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(slow.Close)
	var healthy [2]counter
	cfg := testConfig(t)
	hook := func(url string) config.Webhook {
		h := config.Default().Webhook
		h.URL, h.Secrets, h.AllowCIDRs, h.Timeout = url, []string{encoded}, []string{"127.0.0.0/8"}, time.Minute
		return h
	}
	cfg.Destinations = []config.Destination{{Name: "slow", Adapter: "webhook", Webhook: hook(slow.URL)}}
	for i := range healthy {
		srv := httptest.NewServer(&healthy[i])
		t.Cleanup(srv.Close)
		cfg.Destinations = append(cfg.Destinations, config.Destination{
			Name: "healthy-" + string(rune('a'+i)), Adapter: "webhook", Webhook: hook(srv.URL),
		})
	}
	a, err := open(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var evs []event.Event
	for i := range n {
		ev, _ := event.New("io.herald.test.port.updated", "/test", map[string]int{"n": i}, event.WithPartitionKey(string(rune('A'+i%4))))
		evs = append(evs, ev)
	}
	if err := outbox.Write(ctx, a.DB, evs...); err != nil {
		t.Fatal(err)
	}
	run(t, a)
	defer close(release) // lets the slow requests end, so shutdown does not wait for them

	eventually(t, "both healthy endpoints to get every event", func() bool {
		return healthy[0].n.Load() == n && healthy[1].n.Load() == n
	})
	// Each destination's relay starts on its own: the healthy ones may be
	// done before the slow one has sent its first request.
	eventually(t, "the slow endpoint to be asked", func() bool { return slowAsked.Load() > 0 })
	if got := slowAnswered.Load(); got != 0 {
		t.Fatalf("the slow endpoint answered %d requests before the healthy ones were done; want 0", got)
	}
	if got := a.Relays[0].Stats().Published; got != n {
		t.Errorf("main published %d, want %d", got, n)
	}
}
