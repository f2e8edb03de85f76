package nats_test

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/adaptertest"
	"github.com/heraldhq/herald/adapters/nats"
)

// Short enough that a lost ack fails a test quickly, long enough for -race
// on a busy two-core machine.
const testAckTimeout = 3 * time.Second

func TestConformanceEmbedded(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	adaptertest.Run(t, adaptertest.Harness{
		Open: func(t *testing.T) (adapters.Publisher, adaptertest.Destination) {
			iso := newIsolated(t, srv.ClientURL())
			return iso.connect(t, srv.ClientURL()), iso.reader(t)
		},
		OpenDown: func(t *testing.T) adapters.Publisher {
			down := startEmbedded(t, 0, t.TempDir())
			iso := newIsolated(t, down.ClientURL())
			iso.disposable = true
			p := iso.connect(t, down.ClientURL())
			down.Shutdown()
			return p
		},
		MaxPayload: maxPayload(t, srv.ClientURL()),
		Dedupe:     true,
	})
}

// TestConformanceExternal runs the suite against the machine's own NATS
// server (Debian's 2.9.x on developer and CI machines).
func TestConformanceExternal(t *testing.T) {
	serverURL := externalURL(t)
	adaptertest.Run(t, adaptertest.Harness{
		Open: func(t *testing.T) (adapters.Publisher, adaptertest.Destination) {
			iso := newIsolated(t, serverURL)
			return iso.connect(t, serverURL), iso.reader(t)
		},
		// The shared server cannot be stopped, so the publisher reaches it
		// through a TCP proxy that the test then shuts.
		OpenDown: func(t *testing.T) adapters.Publisher {
			proxy := startProxy(t, hostPort(t, serverURL))
			iso := newIsolated(t, serverURL)
			p := iso.connect(t, "nats://"+proxy.addr())
			proxy.stop()
			return p
		},
		MaxPayload: maxPayload(t, serverURL),
		Dedupe:     true,
	})
}

func TestPublishSubjectAndHeaders(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	p := iso.connect(t, srv.ClientURL(), nats.WithSubjectTemplate(iso.prefix+".{partitionkey}.{type}"))
	msgs := []adapters.Message{
		{ID: "id-1", Type: "order.created", PartitionKey: "acct-7", Payload: []byte(`{"a":1}`)},
		{ID: "id-2", Type: "order.created", Payload: []byte(`{"a":2}`)},
	}
	for i, r := range p.Publish(t.Context(), msgs) {
		if r.Err != nil {
			t.Fatalf("message %d: %v", i, r.Err)
		}
	}
	wantSubjects := []string{iso.prefix + ".acct-7.order.created", iso.prefix + "._.order.created"}
	for i, want := range wantSubjects {
		m, err := iso.stream(t).GetMsg(t.Context(), uint64(i+1))
		if err != nil {
			t.Fatalf("get message %d: %v", i+1, err)
		}
		if m.Subject != want {
			t.Errorf("message %d subject %q, want %q", i+1, m.Subject, want)
		}
		if got := m.Header.Get("Content-Type"); got != nats.ContentType {
			t.Errorf("message %d Content-Type %q, want %q", i+1, got, nats.ContentType)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != msgs[i].ID {
			t.Errorf("message %d Nats-Msg-Id %q, want %q", i+1, got, msgs[i].ID)
		}
	}
}

func TestInvalidEventsArePermanent(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	p := iso.connect(t, srv.ClientURL())
	msgs := []adapters.Message{
		{ID: "bad-space", Type: "order created", Payload: []byte(`{}`)},
		{ID: "good", Type: "order.created", Payload: []byte(`{}`)},
		{ID: "bad-wildcard", Type: "order.*", Payload: []byte(`{}`)},
		{ID: "bad-empty-type", Type: "", Payload: []byte(`{}`)},
		{ID: "bad-trailing-dot", Type: "order.", Payload: []byte(`{}`)},
		{ID: "", Type: "order.created", Payload: []byte(`{}`)},
		{ID: " padded ", Type: "order.created", Payload: []byte(`{}`)},
	}
	wantSentinel := []error{nats.ErrInvalidSubject, nil, nats.ErrInvalidSubject, nats.ErrInvalidSubject,
		nats.ErrInvalidSubject, nats.ErrInvalidID, nats.ErrInvalidID}
	res := p.Publish(t.Context(), msgs)
	for i, r := range res {
		if wantSentinel[i] == nil {
			if r.Err != nil {
				t.Errorf("message %q: %v", msgs[i].ID, r.Err)
			}
			continue
		}
		if !errors.Is(r.Err, adapters.ErrPermanent) || !errors.Is(r.Err, wantSentinel[i]) {
			t.Errorf("message %q: err = %v, want permanent %v", msgs[i].ID, r.Err, wantSentinel[i])
		}
	}
	if n := iso.messageCount(t); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}

// TestPayloadLimitBoundary checks the size rule against the server's own:
// the largest message the server takes is accepted and one byte more is
// refused permanently, naming the limit.
func TestPayloadLimitBoundary(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	p := iso.connect(t, srv.ClientURL())
	limit := maxPayload(t, srv.ClientURL())
	// The server counts the header block against max_payload too.
	id := "limit-probe-1"
	headers := len("NATS/1.0\r\n") + len("Nats-Msg-Id: "+id+"\r\n") +
		len("Content-Type: "+nats.ContentType+"\r\n") + len("\r\n")
	fits := adapters.Message{ID: id, Type: "big", Payload: make([]byte, limit-headers)}
	over := adapters.Message{ID: id, Type: "big", Payload: make([]byte, limit-headers+1)}

	res := p.Publish(t.Context(), []adapters.Message{over, fits})
	err := res[0].Err
	if !errors.Is(err, adapters.ErrPermanent) || !errors.Is(err, nats.ErrTooLarge) {
		t.Errorf("one byte over: err = %v, want permanent ErrTooLarge", err)
	} else if !strings.Contains(err.Error(), strconv.Itoa(limit)) {
		t.Errorf("error %q does not name the limit %d", err, limit)
	}
	if res[1].Err != nil {
		t.Errorf("exactly at the limit: %v", res[1].Err)
	}
}

// TestStreamMaxMsgSizeIsPermanent: a stream may cap messages below the
// server's max_payload; the server's rejection is permanent too.
func TestStreamMaxMsgSizeIsPermanent(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	_, err := iso.js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: iso.streamName, Subjects: []string{iso.prefix + ".>"}, MaxMsgSize: 512,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := iso.connect(t, srv.ClientURL(), nats.WithProvisionStream(false))
	res := p.Publish(t.Context(), []adapters.Message{
		{ID: "big", Type: "x", Payload: make([]byte, 1024)},
		{ID: "small", Type: "x", Payload: []byte(`{}`)},
	})
	if !errors.Is(res[0].Err, adapters.ErrPermanent) || !errors.Is(res[0].Err, nats.ErrTooLarge) {
		t.Errorf("over max_msg_size: err = %v, want permanent ErrTooLarge", res[0].Err)
	}
	if res[1].Err != nil {
		t.Errorf("small message: %v", res[1].Err)
	}
}

// TestBrokerRestart stops the embedded server under a connected publisher
// and starts it again on the same port and store dir: publishing fails
// while it is down, recovers by itself, and stored events survive.
func TestBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startEmbedded(t, 0, dir)
	port := srv.Port()
	iso := newIsolated(t, srv.ClientURL())
	iso.disposable = true
	p := iso.connect(t, srv.ClientURL(), nats.WithConnectOptions(natsgo.ReconnectWait(50*time.Millisecond)))
	first := adapters.Message{ID: "before", Type: "x", Payload: []byte(`{"n":1}`)}
	if r := p.Publish(t.Context(), []adapters.Message{first}); r[0].Err != nil {
		t.Fatalf("before restart: %v", r[0].Err)
	}

	srv.Shutdown()
	second := adapters.Message{ID: "after", Type: "x", Payload: []byte(`{"n":2}`)}
	if r := p.Publish(t.Context(), []adapters.Message{second}); !errors.Is(r[0].Err, adapters.ErrUnavailable) {
		t.Fatalf("publish while the server is down: err = %v, want one wrapping adapters.ErrUnavailable", r[0].Err)
	}

	srv = startEmbedded(t, port, dir)
	iso.reconnectAdmin(t, srv.ClientURL())
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := p.Publish(t.Context(), []adapters.Message{second})
		if r[0].Err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publisher did not recover after restart: %v", r[0].Err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := iso.messageCount(t); n != 2 {
		t.Errorf("stream holds %d messages after restart, want 2", n)
	}
}

// TestFailureHoldsBackItsKey: a message the stream refuses for its size
// fails permanently, and the later message of its key is held back, never
// stored, with an error that is not permanent itself; other keys go on. With
// one ack pending at a time the refusal is known before the successor would
// be sent.
func TestFailureHoldsBackItsKey(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	_, err := iso.js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: iso.streamName, Subjects: []string{iso.prefix + ".>"}, MaxMsgSize: 512,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := iso.connect(t, srv.ClientURL(), nats.WithProvisionStream(false), nats.WithMaxPendingAcks(1))
	res := p.Publish(t.Context(), []adapters.Message{
		{ID: "big", Type: "x", PartitionKey: "k", Payload: make([]byte, 1024)},
		{ID: "next", Type: "x", PartitionKey: "k", Payload: []byte(`{}`)},
		{ID: "other", Type: "x", PartitionKey: "j", Payload: []byte(`{}`)},
		{ID: "bad id\n", Type: "x", PartitionKey: "j", Payload: []byte(`{}`)},
		{ID: "after-bad-id", Type: "x", PartitionKey: "j", Payload: []byte(`{}`)},
	})
	if !errors.Is(res[0].Err, adapters.ErrPermanent) || !errors.Is(res[0].Err, nats.ErrTooLarge) {
		t.Errorf("over max_msg_size: err = %v, want permanent ErrTooLarge", res[0].Err)
	}
	if !errors.Is(res[3].Err, adapters.ErrPermanent) || !errors.Is(res[3].Err, nats.ErrInvalidID) {
		t.Errorf("invalid id: err = %v, want permanent ErrInvalidID", res[3].Err)
	}
	for _, i := range []int{1, 4} {
		err := res[i].Err
		if !errors.Is(err, nats.ErrEarlierFailed) || errors.Is(err, adapters.ErrPermanent) ||
			errors.Is(err, adapters.ErrUnavailable) {
			t.Errorf("message %d: err = %v, want ErrEarlierFailed, neither permanent nor unavailable", i, err)
		}
	}
	if res[2].Err != nil {
		t.Errorf("other key: %v", res[2].Err)
	}
	if n := iso.messageCount(t); n != 1 {
		t.Errorf("stream holds %d messages, want 1 (the other key's)", n)
	}
}

// TestStreamGoneIsUnavailable: a stream deleted under a running publisher
// leaves nothing to answer on its subjects. That is the destination's fault:
// every message, the held-back one included, wraps adapters.ErrUnavailable
// and none is permanent.
func TestStreamGoneIsUnavailable(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	p := iso.connect(t, srv.ClientURL(), nats.WithMaxPendingAcks(1))
	if err := iso.js.DeleteStream(t.Context(), iso.streamName); err != nil {
		t.Fatal(err)
	}
	res := p.Publish(t.Context(), []adapters.Message{
		{ID: "a", Type: "x", PartitionKey: "k", Payload: []byte(`{}`)},
		{ID: "b", Type: "x", PartitionKey: "k", Payload: []byte(`{}`)},
		{ID: "c", Type: "x", Payload: []byte(`{}`)},
	})
	for i, r := range res {
		if !errors.Is(r.Err, adapters.ErrUnavailable) || errors.Is(r.Err, adapters.ErrPermanent) {
			t.Errorf("message %d: err = %v, want one wrapping adapters.ErrUnavailable, not permanent", i, r.Err)
		}
	}
	if !errors.Is(res[0].Err, jetstream.ErrNoStreamResponse) || !errors.Is(res[2].Err, jetstream.ErrNoStreamResponse) {
		t.Errorf("errors %v, %v: want the library's no-responders error", res[0].Err, res[2].Err)
	}
	if !errors.Is(res[1].Err, nats.ErrEarlierFailed) || !errors.Is(res[1].Err, jetstream.ErrNoStreamResponse) {
		t.Errorf("held-back message: err = %v, want ErrEarlierFailed wrapping the cause", res[1].Err)
	}
}

// TestSubjectNotCapturedIsTheEventsFault: the stream exists but an operator
// narrowed its subjects, so one event type meets "no responders". That is
// the event's fault, not the destination's: it must not pause the whole
// destination (other types flow) nor be retried forever without spending
// attempts.
func TestSubjectNotCapturedIsTheEventsFault(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	// One ack at a time, so the failure is known before the key's next
	// message would be sent.
	p := iso.connect(t, srv.ClientURL(), nats.WithMaxPendingAcks(1))
	cfg := iso.stream(t).CachedInfo().Config
	cfg.Subjects = []string{iso.prefix + ".keep.>"}
	if _, err := iso.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	res := p.Publish(t.Context(), []adapters.Message{
		{ID: "a", Type: "drop.x", PartitionKey: "k", Payload: []byte(`{}`)},
		{ID: "b", Type: "keep.x", PartitionKey: "k", Payload: []byte(`{}`)},
		{ID: "c", Type: "keep.x", Payload: []byte(`{}`)},
	})
	if !errors.Is(res[0].Err, nats.ErrNotCaptured) || errors.Is(res[0].Err, adapters.ErrUnavailable) ||
		errors.Is(res[0].Err, adapters.ErrPermanent) {
		t.Errorf("uncaptured subject: err = %v, want ErrNotCaptured, neither unavailable nor permanent", res[0].Err)
	}
	if !errors.Is(res[1].Err, nats.ErrEarlierFailed) || errors.Is(res[1].Err, adapters.ErrUnavailable) {
		t.Errorf("held-back message: err = %v, want ErrEarlierFailed, not unavailable", res[1].Err)
	}
	if res[2].Err != nil {
		t.Errorf("captured subject: err = %v, want it stored", res[2].Err)
	}
}

// TestLostAcksWithinTheBound: the stream is replaced by a plain subscriber,
// so every message is delivered and none acknowledged: the worst case of
// MaxPublishTime, a whole window waiting out the ack timeout each time.
// Publish must stay within the bound, and a missing ack is the destination's
// fault.
func TestLostAcksWithinTheBound(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	const ackTimeout, window = 300 * time.Millisecond, 4
	p := iso.connect(t, srv.ClientURL(), nats.WithAckTimeout(ackTimeout), nats.WithMaxPendingAcks(window))
	if err := iso.js.DeleteStream(t.Context(), iso.streamName); err != nil {
		t.Fatal(err)
	}
	sub, err := iso.nc.SubscribeSync(iso.prefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := iso.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	msgs := make([]adapters.Message, 3*window)
	for i := range msgs {
		msgs[i] = adapters.Message{ID: "lost-" + strconv.Itoa(i), Type: "x", Payload: []byte(`{}`)}
	}
	start := time.Now()
	res := p.Publish(t.Context(), msgs)
	took := time.Since(start)
	for i, r := range res {
		if !errors.Is(r.Err, jetstream.ErrAsyncPublishTimeout) || !errors.Is(r.Err, adapters.ErrUnavailable) {
			t.Errorf("message %d: err = %v, want an ack timeout wrapping adapters.ErrUnavailable", i, r.Err)
		}
	}
	if bound := p.MaxPublishTime(len(msgs)); took > bound {
		t.Errorf("Publish took %s, MaxPublishTime(%d) = %s", took, len(msgs), bound)
	}
	if least := 3 * ackTimeout; took < least {
		t.Errorf("Publish took %s; three windows of lost acks take at least %s", took, least)
	}
}

// TestMaxPublishTimeCountsWindows: the bound grows by one ack timeout per
// window of WithMaxPendingAcks messages.
func TestMaxPublishTimeCountsWindows(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	p := iso.connect(t, srv.ClientURL(), nats.WithAckTimeout(3*time.Second), nats.WithMaxPendingAcks(16))
	if one, full := p.MaxPublishTime(1), p.MaxPublishTime(16); one != full {
		t.Errorf("MaxPublishTime(1) = %s, MaxPublishTime(16) = %s: one window each", one, full)
	}
	if d := p.MaxPublishTime(17) - p.MaxPublishTime(16); d != 3*time.Second {
		t.Errorf("a second window adds %s, want the ack timeout, 3s", d)
	}
	if one := p.MaxPublishTime(1); one < 2*3*time.Second {
		t.Errorf("MaxPublishTime(1) = %s: want at least two ack timeouts (the window and a stall)", one)
	}
}

func TestProvisioning(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())

	t.Run("MissingStreamWithoutProvisioning", func(t *testing.T) {
		iso := newIsolated(t, srv.ClientURL())
		_, err := nats.Connect(t.Context(), srv.ClientURL(), append(iso.options(), nats.WithProvisionStream(false))...)
		if err == nil || !strings.Contains(err.Error(), iso.streamName) {
			t.Fatalf("err = %v, want one naming stream %s", err, iso.streamName)
		}
	})

	t.Run("UpdateKeepsOperatorSettings", func(t *testing.T) {
		iso := newIsolated(t, srv.ClientURL())
		_, err := iso.js.CreateStream(t.Context(), jetstream.StreamConfig{
			Name: iso.streamName, Subjects: []string{iso.prefix + ".old.>"},
			Storage: jetstream.FileStorage, MaxAge: time.Hour, Duplicates: 30 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		iso.connect(t, srv.ClientURL(), nats.WithDuplicateWindow(90*time.Second))
		info, err := iso.stream(t).Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		cfg := info.Config
		if cfg.Duplicates != 90*time.Second || cfg.MaxAge != time.Hour ||
			len(cfg.Subjects) != 1 || cfg.Subjects[0] != iso.prefix+".>" {
			t.Errorf("stream config after update: duplicates %s, max age %s, subjects %v",
				cfg.Duplicates, cfg.MaxAge, cfg.Subjects)
		}
	})

	t.Run("TemplateOutsideStream", func(t *testing.T) {
		iso := newIsolated(t, srv.ClientURL())
		_, err := nats.Connect(t.Context(), srv.ClientURL(),
			append(iso.options(), nats.WithSubjectTemplate("elsewhere.{type}"))...)
		if err == nil || !strings.Contains(err.Error(), "not captured") {
			t.Fatalf("err = %v, want a template/stream mismatch", err)
		}
	})
}

func TestNewLeavesCallerConnectionOpen(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	nc, err := natsgo.Connect(srv.ClientURL(), natsgo.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	p, err := nats.New(t.Context(), nc, iso.options()...)
	if err != nil {
		t.Fatal(err)
	}
	msg := adapters.Message{ID: "owned", Type: "x", Payload: []byte(`{}`)}
	if r := p.Publish(t.Context(), []adapters.Message{msg}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !nc.IsConnected() {
		t.Error("Close closed a connection the caller owns")
	}
	if r := p.Publish(t.Context(), []adapters.Message{msg}); !errors.Is(r[0].Err, nats.ErrClosed) {
		t.Errorf("Publish after Close: err = %v, want ErrClosed", r[0].Err)
	}
}

// TestCloseDuringPublish closes the publisher while a large batch is in
// flight: Publish must return a result per message, promptly, and the race
// detector must stay quiet.
func TestCloseDuringPublish(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	p := iso.connect(t, srv.ClientURL(), nats.WithMaxPendingAcks(16))
	msgs := make([]adapters.Message, 3000)
	for i := range msgs {
		msgs[i] = adapters.Message{ID: "c-" + strconv.Itoa(i), Type: "x", PartitionKey: "k", Payload: []byte(`{}`)}
	}
	var (
		wg  sync.WaitGroup
		res []adapters.Result
	)
	wg.Go(func() { res = p.Publish(t.Context(), msgs) })
	time.Sleep(5 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	wg.Wait()
	if len(res) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(res), len(msgs))
	}
}

func TestConnectUnreachableNamesURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = nats.Connect(t.Context(), "nats://herald:s3cret@"+addr, nats.WithLogger(discardLogger()))
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("err = %q, want the address %s and no password", err, addr)
	}
}

func TestOptionsAreValidated(t *testing.T) {
	tests := map[string]nats.Option{
		"template":        nats.WithSubjectTemplate("herald.{tpye}"),
		"stream name":     nats.WithStream(""),
		"stream subject":  nats.WithStream("S", "a b"),
		"window":          nats.WithDuplicateWindow(0),
		"pending":         nats.WithMaxPendingAcks(0),
		"ack timeout":     nats.WithAckTimeout(-time.Second),
		"nil logger":      nats.WithLogger(nil),
		"template in New": nats.WithSubjectTemplate("a..{type}"),
	}
	for name, opt := range tests {
		t.Run(name, func(t *testing.T) {
			// Options fail before any dialing, so no server is needed.
			_, err := nats.Connect(t.Context(), "nats://127.0.0.1:1", opt)
			if err == nil || strings.Contains(err.Error(), "connect") {
				t.Errorf("err = %v, want an option error", err)
			}
		})
	}
}

// isolated is one test's own stream and subject prefix, so that runs and
// subtests never see each other's messages, plus an admin connection to
// read and delete it.
type isolated struct {
	prefix     string
	streamName string
	nc         *natsgo.Conn
	js         jetstream.JetStream
	// disposable skips deleting the stream: the test's embedded server
	// and its store dir go away anyway, and may already be shut down.
	disposable bool
}

func newIsolated(t *testing.T, adminURL string) *isolated {
	t.Helper()
	suffix := randomHex(t)
	iso := &isolated{prefix: "t" + suffix, streamName: "HERALD_TEST_" + strings.ToUpper(suffix)}
	iso.reconnectAdmin(t, adminURL)
	t.Cleanup(func() {
		defer iso.nc.Close()
		if iso.disposable || !iso.nc.IsConnected() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := iso.js.DeleteStream(ctx, iso.streamName); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Logf("delete stream %s: %v", iso.streamName, err)
		}
	})
	return iso
}

// reconnectAdmin points the admin connection at url, e.g. after a restart.
func (iso *isolated) reconnectAdmin(t *testing.T, adminURL string) {
	t.Helper()
	if iso.nc != nil {
		iso.nc.Close()
	}
	nc, err := natsgo.Connect(adminURL, natsgo.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("admin connection: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	iso.nc, iso.js = nc, js
}

func (iso *isolated) options() []nats.Option {
	return []nats.Option{
		nats.WithStream(iso.streamName, iso.prefix+".>"),
		nats.WithSubjectTemplate(iso.prefix + ".{type}"),
		nats.WithAckTimeout(testAckTimeout),
		nats.WithLogger(discardLogger()),
	}
}

func (iso *isolated) connect(t *testing.T, serverURL string, extra ...nats.Option) *nats.Publisher {
	t.Helper()
	p, err := nats.Connect(t.Context(), serverURL, append(iso.options(), extra...)...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func (iso *isolated) stream(t *testing.T) jetstream.Stream {
	t.Helper()
	s, err := iso.js.Stream(t.Context(), iso.streamName)
	if err != nil {
		t.Fatalf("stream %s: %v", iso.streamName, err)
	}
	return s
}

func (iso *isolated) messageCount(t *testing.T) uint64 {
	t.Helper()
	info, err := iso.stream(t).Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func (iso *isolated) reader(t *testing.T) adaptertest.Destination {
	return &streamReader{stream: iso.stream(t), next: 1}
}

// streamReader reads a stream by sequence number: the stream is fresh, so
// sequences start at 1 and are contiguous, and reading by sequence returns
// messages in exactly the order the stream stored them.
type streamReader struct {
	stream jetstream.Stream
	next   uint64
}

func (r *streamReader) Receive(ctx context.Context, max int) ([]adaptertest.Received, error) {
	var got []adaptertest.Received
	for len(got) < max {
		m, err := r.stream.GetMsg(ctx, r.next)
		switch {
		case err == nil:
			got = append(got, adaptertest.Received{ID: m.Header.Get(jetstream.MsgIDHeader), Payload: m.Data})
			r.next++
		case errors.Is(err, jetstream.ErrMsgNotFound):
			select {
			case <-ctx.Done():
				return got, nil
			case <-time.After(10 * time.Millisecond):
			}
		default:
			return got, unlessDone(ctx, err)
		}
	}
	return got, nil
}

// unlessDone drops err when ctx has ended: per the Destination contract,
// running out of time is not a read error.
func unlessDone(ctx context.Context, err error) error {
	select {
	case <-ctx.Done():
		return nil
	default:
		return err
	}
}

func startEmbedded(t *testing.T, port int, dir string) *nats.EmbeddedServer {
	t.Helper()
	srv, err := nats.StartEmbedded(nats.EmbeddedOptions{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	anchorStreamsDir(t, srv.ClientURL())
	return srv
}

// anchorStreamsDir keeps one stream alive on an embedded server. The server
// (2.15.2) removes an account's empty streams directory from a goroutine
// after a stream is deleted; a stream created at that moment fails with
// "error creating store for stream". Tests delete and create streams in
// quick succession, so they keep the directory from ever being empty.
func anchorStreamsDir(t *testing.T, serverURL string) {
	t.Helper()
	nc, err := natsgo.Connect(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: "ANCHOR", Subjects: []string{"anchor.keep"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("anchor stream: %v", err)
	}
}

// externalURL returns the machine's NATS server, skipping the test when it
// is not there unless HERALD_REQUIRE_SERVICES=1 (as in CI).
func externalURL(t *testing.T) string {
	t.Helper()
	serverURL := os.Getenv("HERALD_NATS_URL")
	if serverURL == "" {
		serverURL = "nats://127.0.0.1:4222"
	}
	err := probe(t.Context(), serverURL)
	if err == nil {
		return serverURL
	}
	if os.Getenv("HERALD_REQUIRE_SERVICES") == "1" {
		t.Fatalf("NATS at %s: %v", serverURL, err)
	}
	t.Skipf("NATS at %s unavailable (%v); set HERALD_REQUIRE_SERVICES=1 to fail instead", serverURL, err)
	return ""
}

// probe checks that a server with JetStream answers at serverURL.
func probe(ctx context.Context, serverURL string) error {
	nc, err := natsgo.Connect(serverURL, natsgo.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

func maxPayload(t *testing.T, serverURL string) int {
	t.Helper()
	nc, err := natsgo.Connect(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	return int(nc.MaxPayload())
}

func hostPort(t *testing.T, serverURL string) string {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil || u.Host == "" {
		t.Fatalf("cannot take host:port from %q", serverURL)
	}
	return u.Host
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func discardLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// tcpProxy forwards connections to a server until stopped; stopping it
// makes the server unreachable for whoever dialled the proxy.
type tcpProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return // listener closed by stop
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = down.Close()
			continue
		}
		if !p.track(down, up) {
			return
		}
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Go(func() { pipe(up, down) })
		p.wg.Go(func() { pipe(down, up) })
	}
}

// track registers conns for stop, or closes them if stop already ran.
func (p *tcpProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	p.conns = append(p.conns, conns...)
	return true
}

// stop closes the listener and every proxied connection, then waits for
// the proxy's goroutines. Safe to call more than once.
func (p *tcpProxy) stop() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		_ = p.ln.Close()
		for _, c := range p.conns {
			_ = c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}
