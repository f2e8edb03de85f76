package sqs_test

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/adaptertest"
	"github.com/heraldhq/herald/adapters/sqs"
	"github.com/heraldhq/herald/internal/testsqs"
	"github.com/heraldhq/herald/pkg/event"
)

const testRegion = "us-east-1"

func TestConformanceFIFO(t *testing.T) {
	emu := emulator(t)
	adaptertest.Run(t, adaptertest.Harness{
		Open: func(t *testing.T) (adapters.Publisher, adaptertest.Destination) {
			r := emu.reader(t, "")
			r.queueURL = emu.createQueueWith(t, r.client, true, nil)
			return emu.publisher(t, r.queueURL), r
		},
		OpenDown:   emu.openDown(true),
		MaxPayload: sqs.DefaultMaxMessageSize,
		BatchLimit: sqs.MaxBatchEntries,
		Dedupe:     true,
	})
}

// TestConformanceStandard runs the suite against a standard queue, which
// has neither duplicate detection nor an order guarantee (see the package
// doc): the order subtest checks only that every message arrives once. The
// emulator usually keeps order, but not when a receive's response is lost
// and its messages come back after the reader's visibility timeout.
func TestConformanceStandard(t *testing.T) {
	emu := emulator(t)
	adaptertest.Run(t, adaptertest.Harness{
		Open: func(t *testing.T) (adapters.Publisher, adaptertest.Destination) {
			r := emu.reader(t, "")
			r.queueURL = emu.createQueueWith(t, r.client, false, nil)
			return emu.publisher(t, r.queueURL), r
		},
		OpenDown:   emu.openDown(false),
		MaxPayload: sqs.DefaultMaxMessageSize,
		BatchLimit: sqs.MaxBatchEntries,
		Dedupe:     false,
		Unordered:  true,
	})
}

// TestMessageAttributesAndIDs checks what a consumer sees besides the body:
// the CloudEvents attributes as message attributes and, on FIFO, the event
// id as deduplication id and the partition key as group.
func TestMessageAttributesAndIDs(t *testing.T) {
	emu := emulator(t)
	ev, err := event.New("order.created", "/shop", map[string]any{"total": 12.5},
		event.WithSubject("orders/42"), event.WithPartitionKey("customer 42"),
		event.WithTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
		event.WithTraceParent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	msg := adapters.Message{ID: ev.ID, Type: ev.Type, PartitionKey: ev.PartitionKey, Payload: payload}
	wantAttrs := map[string]string{
		sqs.AttrContentType:  sqs.ContentType,
		sqs.AttrSpecVersion:  "1.0",
		sqs.AttrID:           ev.ID,
		sqs.AttrType:         "order.created",
		sqs.AttrSource:       "/shop",
		sqs.AttrSubject:      "orders/42",
		sqs.AttrTime:         "2026-01-02T03:04:05Z",
		sqs.AttrPartitionKey: "customer 42",
		sqs.AttrTraceParent:  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}

	for _, fifo := range []bool{false, true} {
		t.Run(map[bool]string{false: "Standard", true: "FIFO"}[fifo], func(t *testing.T) {
			q := emu.createQueue(t, fifo, nil)
			p := emu.publisher(t, q)
			requireOK(t, p.Publish(t.Context(), []adapters.Message{msg}))
			got := emu.receiveRaw(t, q, 1)[0]
			if aws.ToString(got.Body) != string(payload) {
				t.Errorf("body changed:\n sent %s\n got  %s", payload, aws.ToString(got.Body))
			}
			have := map[string]string{}
			for name, v := range got.MessageAttributes {
				have[name] = aws.ToString(v.StringValue)
				if aws.ToString(v.DataType) != "String" {
					t.Errorf("attribute %s has data type %q", name, aws.ToString(v.DataType))
				}
			}
			if !mapsEqual(have, wantAttrs) {
				t.Errorf("message attributes\n got  %v\n want %v", have, wantAttrs)
			}
			group := got.Attributes[string(sqstypes.MessageSystemAttributeNameMessageGroupId)]
			dedupe := got.Attributes[string(sqstypes.MessageSystemAttributeNameMessageDeduplicationId)]
			if fifo {
				// A space is not allowed in a group id: the key is hashed.
				if !strings.HasPrefix(group, "herald-sha256-") || dedupe != ev.ID {
					t.Errorf("group %q, deduplication id %q; want a hashed group and %q", group, dedupe, ev.ID)
				}
			} else if group != "" || dedupe != "" {
				t.Errorf("standard queue got group %q, deduplication id %q", group, dedupe)
			}
		})
	}
}

// TestKeylessGroups: on FIFO, an event without partition key gets its own
// group unless WithMessageGroupID names one.
func TestKeylessGroups(t *testing.T) {
	emu := emulator(t)
	for _, fixed := range []string{"", "keyless"} {
		t.Run("fixed="+fixed, func(t *testing.T) {
			q := emu.createQueue(t, true, nil)
			var opts []sqs.Option
			if fixed != "" {
				opts = append(opts, sqs.WithMessageGroupID(fixed))
			}
			p := emu.publisher(t, q, opts...)
			msgs := []adapters.Message{
				{ID: "kl-1-" + randomHex(t), Type: "t", Payload: []byte(`{"n":1}`)},
				{ID: "kl-2-" + randomHex(t), Type: "t", PartitionKey: "acct-1", Payload: []byte(`{"n":2}`)},
			}
			requireOK(t, p.Publish(t.Context(), msgs))
			groups := map[string]string{}
			for _, m := range emu.receiveRaw(t, q, 2) {
				id := aws.ToString(m.MessageAttributes[sqs.AttrID].StringValue)
				groups[id] = m.Attributes[string(sqstypes.MessageSystemAttributeNameMessageGroupId)]
			}
			want := map[string]string{msgs[0].ID: msgs[0].ID, msgs[1].ID: "acct-1"}
			if fixed != "" {
				want[msgs[0].ID] = fixed
			}
			if !mapsEqual(groups, want) {
				t.Errorf("groups %v, want %v", groups, want)
			}
		})
	}
}

// TestBatchesSplitByBytes publishes messages that fit ten to a call by count
// but not by size: the calls must stay within 1 MiB each, which the emulator
// enforces as SQS does (BatchRequestTooLong).
func TestBatchesSplitByBytes(t *testing.T) {
	emu := emulator(t)
	q := emu.createQueue(t, false, nil)
	var (
		mu    sync.Mutex
		calls []int // entries per SendMessageBatch call, as the SDK sent them
	)
	countCalls := func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("countEntries",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if b, ok := in.Parameters.(*awssqs.SendMessageBatchInput); ok {
					mu.Lock()
					calls = append(calls, len(b.Entries))
					mu.Unlock()
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	}
	cfg := emu.awsConfig()
	cfg.APIOptions = append(cfg.APIOptions, countCalls)
	p, err := sqs.New(t.Context(), q, sqs.WithAWSConfig(cfg), sqs.WithEndpoint(emu.endpoint), sqs.WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })

	// 300 KB each: three fit in 1 MiB, four do not. Then eleven small ones:
	// ten per call by count.
	var msgs []adapters.Message
	for i := range 7 {
		msgs = append(msgs, adapters.Message{ID: fmt.Sprintf("big-%d-%s", i, randomHex(t)), Type: "t",
			Payload: padded(300_000)})
	}
	for i := range 11 {
		msgs = append(msgs, adapters.Message{ID: fmt.Sprintf("small-%d-%s", i, randomHex(t)), Type: "t",
			Payload: []byte(`{"small":true}`)})
	}
	requireOK(t, p.Publish(t.Context(), msgs))
	// Greedy, in order: 3 big, 3 big, then 1 big with 9 small (count limit
	// 10), then the last 2 small.
	if want := []int{3, 3, 10, 2}; !slices.Equal(calls, want) {
		t.Errorf("entries per call %v, want %v", calls, want)
	}
	got := emu.reader(t, q).receiveAll(t, len(msgs))
	if len(got) != len(msgs) {
		t.Fatalf("received %d of %d messages", len(got), len(msgs))
	}
}

// TestPartialBatchFailure has SQS itself refuse one message of a batch: the
// queue's MaximumMessageSize is lowered and the Publisher, not reading it
// (WithVerifyQueue(false)), sends a message over it. Only that message
// fails, permanently, and later messages of its key still go: a dead-lettered
// event does not hold its key back.
func TestPartialBatchFailure(t *testing.T) {
	emu := emulator(t)
	for _, fifo := range []bool{false, true} {
		t.Run(map[bool]string{false: "Standard", true: "FIFO"}[fifo], func(t *testing.T) {
			q := emu.createQueue(t, fifo, map[string]string{"MaximumMessageSize": "1024"})
			p := emu.publisher(t, q, sqs.WithVerifyQueue(false))
			msgs := []adapters.Message{
				{ID: "pf-1-" + randomHex(t), Type: "t", PartitionKey: "k", Payload: []byte(`{"n":1}`)},
				{ID: "pf-2-" + randomHex(t), Type: "t", PartitionKey: "k", Payload: padded(2000)},
				{ID: "pf-3-" + randomHex(t), Type: "t", PartitionKey: "k", Payload: []byte(`{"n":3}`)},
			}
			res := p.Publish(t.Context(), msgs)
			var entryErr *sqs.EntryError
			if !errors.Is(res[1].Err, adapters.ErrPermanent) || !errors.As(res[1].Err, &entryErr) ||
				entryErr.Code != "InvalidParameterValue" {
				t.Errorf("oversize for the queue: err = %v, want a permanent InvalidParameterValue EntryError", res[1].Err)
			}
			if res[0].Err != nil || res[2].Err != nil {
				t.Fatalf("the other messages: %v, %v", res[0].Err, res[2].Err)
			}
			got := emu.reader(t, q).receiveAll(t, 2)
			if len(got) != 2 || got[0].ID != msgs[0].ID || got[1].ID != msgs[2].ID {
				t.Errorf("received %v, want %s then %s", ids(got), msgs[0].ID, msgs[2].ID)
			}
		})
	}
}

// TestQueueSizeLimitIsRead: by default New reads the queue's
// MaximumMessageSize, and the Publisher refuses larger messages itself,
// naming the limit.
func TestQueueSizeLimitIsRead(t *testing.T) {
	emu := emulator(t)
	q := emu.createQueue(t, false, map[string]string{"MaximumMessageSize": "2048"})
	p := emu.publisher(t, q)
	// The attributes add about 100 bytes to the payload.
	res := p.Publish(t.Context(), []adapters.Message{
		{ID: "limit-big", Type: "t", Payload: padded(2000)},
		{ID: "limit-ok", Type: "t", Payload: padded(1800)},
	})
	err := res[0].Err
	if !errors.Is(err, adapters.ErrPermanent) || !errors.Is(err, sqs.ErrTooLarge) ||
		!strings.Contains(err.Error(), "2048") || !strings.Contains(err.Error(), "MaximumMessageSize") {
		t.Errorf("err = %v, want permanent ErrTooLarge naming the queue's 2048-byte limit", err)
	}
	if res[1].Err != nil {
		t.Errorf("message within the limit: %v", res[1].Err)
	}
}

// TestSizeLimitBoundary: a message of exactly WithMaxMessageSize bytes,
// attributes included, is sent; one byte more is refused before sending.
func TestSizeLimitBoundary(t *testing.T) {
	emu := emulator(t)
	q := emu.createQueue(t, false, nil)
	const limit = 4096
	p := emu.publisher(t, q, sqs.WithMaxMessageSize(limit))
	id := "boundary-" + randomHex(t)
	// Attributes without a parseable payload: content-type, ce-id, ce-type.
	attrs := len(sqs.AttrContentType+"String"+sqs.ContentType) + len(sqs.AttrID+"String"+id) + len(sqs.AttrType+"String"+"t")
	fits := adapters.Message{ID: id, Type: "t", Payload: bytes.Repeat([]byte("x"), limit-attrs)}
	over := adapters.Message{ID: id, Type: "t", Payload: bytes.Repeat([]byte("x"), limit-attrs+1)}
	res := p.Publish(t.Context(), []adapters.Message{over, fits})
	if !errors.Is(res[0].Err, sqs.ErrTooLarge) || !strings.Contains(res[0].Err.Error(), strconv.Itoa(limit)) {
		t.Errorf("one byte over: err = %v, want ErrTooLarge naming %d", res[0].Err, limit)
	}
	if res[1].Err != nil {
		t.Errorf("exactly at the limit: %v", res[1].Err)
	}
}

// TestBodiesSQSWouldAlterOrRefuse: control characters and invalid UTF-8
// fail permanently before sending; other non-ASCII characters go through
// byte for byte. (Characters beyond U+FFFF, which SQS allows, are only
// unit-tested: fauxqs 2.4 refuses them.)
func TestBodiesSQSWouldAlterOrRefuse(t *testing.T) {
	emu := emulator(t)
	q := emu.createQueue(t, false, nil)
	p := emu.publisher(t, q)
	good := []byte(`{"e":"h\u00e9llo héllo ✓","cjk":"日本"}`)
	msgs := []adapters.Message{
		{ID: "ctl", Type: "t", Payload: []byte("{\"a\":\"\x01\"}")},
		{ID: "utf8", Type: "t", Payload: []byte("{\"a\":\"\xff\"}")},
		{ID: "empty", Type: "t", Payload: nil},
		{ID: "", Type: "t", Payload: []byte(`{}`)},
		{ID: "good", Type: "t", Payload: good},
	}
	res := p.Publish(t.Context(), msgs)
	for i, want := range []error{sqs.ErrInvalidBody, sqs.ErrInvalidBody, sqs.ErrInvalidBody, sqs.ErrInvalidID} {
		if !errors.Is(res[i].Err, adapters.ErrPermanent) || !errors.Is(res[i].Err, want) {
			t.Errorf("message %d: err = %v, want permanent %v", i, res[i].Err, want)
		}
	}
	requireOK(t, res[4:])
	got := emu.reader(t, q).receiveAll(t, 1)
	if len(got) != 1 || !bytes.Equal(got[0].Payload, good) {
		t.Errorf("received %q, want %q", got, good)
	}
}

// TestRepublishByNewPublisher: SQS drops an id re-sent by another publisher
// (a restarted relay) within the deduplication interval, but only the
// publisher that sent it first can tell it is a duplicate.
func TestRepublishByNewPublisher(t *testing.T) {
	emu := emulator(t)
	q := emu.createQueue(t, true, nil)
	msg := adapters.Message{ID: "restart-" + randomHex(t), Type: "t", PartitionKey: "k", Payload: []byte(`{}`)}
	requireOK(t, emu.publisher(t, q).Publish(t.Context(), []adapters.Message{msg}))
	res := emu.publisher(t, q).Publish(t.Context(), []adapters.Message{msg})
	requireOK(t, res)
	if res[0].Duplicate {
		t.Error("a new publisher reported Duplicate; the doc says it cannot know")
	}
	r := emu.reader(t, q)
	if got := r.drain(t, 2); len(got) != 1 {
		t.Errorf("queue holds %d copies, want 1", len(got))
	}
}

// TestDefaultCredentialChain builds the Publisher the way production does,
// from the environment only: credentials, region and endpoint
// (AWS_ENDPOINT_URL_SQS).
func TestDefaultCredentialChain(t *testing.T) {
	emu := emulator(t)
	q := emu.createQueue(t, false, nil)
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "test",
		"AWS_SECRET_ACCESS_KEY":       "test",
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  testRegion,
		"AWS_PROFILE":                 "",
		"AWS_ENDPOINT_URL_SQS":        emu.endpoint,
		"AWS_ENDPOINT_URL":            "",
		"AWS_CONFIG_FILE":             dir + "/config",
		"AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials",
		// Never reach for an instance metadata service from a test.
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	p, err := sqs.New(t.Context(), q, sqs.WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	msg := adapters.Message{ID: "env-" + randomHex(t), Type: "t", Payload: []byte(`{"from":"env"}`)}
	requireOK(t, p.Publish(t.Context(), []adapters.Message{msg}))
	if got := emu.reader(t, q).receiveAll(t, 1); len(got) != 1 || got[0].ID != msg.ID {
		t.Errorf("received %v, want %s", ids(got), msg.ID)
	}
}

func TestNewFailsNamingTheProblem(t *testing.T) {
	emu := emulator(t)
	base := []sqs.Option{sqs.WithAWSConfig(emu.awsConfig()), sqs.WithEndpoint(emu.endpoint), sqs.WithLogger(discardLogger())}
	missing := emu.endpoint + "/000000000000/herald-missing-" + randomHex(t)
	if _, err := sqs.New(t.Context(), missing, base...); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing queue: err = %v, want one naming %s", err, missing)
	}
	// Without the check, New makes no request and succeeds.
	p, err := sqs.New(t.Context(), missing, append(base, sqs.WithVerifyQueue(false))...)
	if err != nil {
		t.Fatalf("WithVerifyQueue(false): %v", err)
	}
	res := p.Publish(t.Context(), []adapters.Message{{ID: "x", Type: "t", Payload: []byte(`{}`)}})
	if res[0].Err == nil || errors.Is(res[0].Err, adapters.ErrPermanent) {
		t.Errorf("publish to a missing queue: err = %v, want a transient error", res[0].Err)
	}
	_ = p.Close()
}

// TestCloseDuringPublish closes the Publisher while a large batch is being
// sent: Publish returns a result per message promptly, every message
// reported sent is in the queue, and the race detector stays quiet.
func TestCloseDuringPublish(t *testing.T) {
	emu := emulator(t)
	q := emu.createQueue(t, true, nil)
	p := emu.publisher(t, q)
	msgs := make([]adapters.Message, 400)
	for i := range msgs {
		msgs[i] = adapters.Message{ID: fmt.Sprintf("close-%d-%s", i, randomHex(t)), Type: "t", PartitionKey: "k", Payload: []byte(`{}`)}
	}
	var (
		wg  sync.WaitGroup
		res []adapters.Result
	)
	wg.Go(func() { res = p.Publish(context.Background(), msgs) })
	time.Sleep(20 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	wg.Wait()
	if len(res) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(res), len(msgs))
	}
	sent := 0
	for i, r := range res {
		switch {
		case r.Err == nil:
			sent++
		case !errors.Is(r.Err, sqs.ErrClosed):
			t.Errorf("message %d: %v, want nil or ErrClosed", i, r.Err)
		}
	}
	if sent == len(msgs) {
		t.Log("Close came after the whole batch was sent; nothing was interrupted")
	}
	// Messages may be stored but reported failed (interrupted in flight),
	// never the reverse.
	if got := emu.reader(t, q).drain(t, len(msgs)); len(got) < sent {
		t.Errorf("%d messages reported sent, %d in the queue", sent, len(got))
	}
}

// TestSendTimeout points the Publisher at a server that accepts connections
// and never answers: each call ends after WithSendTimeout with a transient
// error that does not look like the caller's own deadline.
func TestSendTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	endpoint := "http://" + ln.Addr().String()
	p, err := sqs.New(t.Context(), endpoint+"/000000000000/blackhole",
		sqs.WithAWSConfig(staticConfig()), sqs.WithEndpoint(endpoint), sqs.WithVerifyQueue(false),
		sqs.WithSendTimeout(300*time.Millisecond), sqs.WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	start := time.Now()
	res := p.Publish(t.Context(), []adapters.Message{
		{ID: "a", Type: "t", Payload: []byte(`{}`)},
		{ID: "b", Type: "t", Payload: []byte(`{}`)},
	})
	took := time.Since(start)
	if took > 5*time.Second {
		t.Errorf("Publish took %s with a 300ms send timeout", took)
	}
	for i, r := range res {
		if !errors.Is(r.Err, sqs.ErrSendTimeout) || errors.Is(r.Err, context.DeadlineExceeded) ||
			errors.Is(r.Err, adapters.ErrPermanent) || !errors.Is(r.Err, adapters.ErrUnavailable) {
			t.Errorf("message %d: err = %v, want ErrSendTimeout marked unavailable, neither permanent nor the caller's deadline", i, r.Err)
		}
	}
	if bound := p.MaxPublishTime(2); took > bound {
		t.Errorf("Publish took %s, MaxPublishTime(2) = %s", took, bound)
	}
}

// TestMissingQueueIsUnavailable: a queue deleted under a running publisher
// is a fault of the destination for every message, the held-back one
// included; none is permanent.
func TestMissingQueueIsUnavailable(t *testing.T) {
	emu := emulator(t)
	for _, fifo := range []bool{true, false} {
		t.Run(fmt.Sprintf("fifo=%v", fifo), func(t *testing.T) {
			admin := emu.client(t)
			q := emu.createQueueWith(t, admin, fifo, nil)
			p := emu.publisher(t, q)
			if _, err := admin.DeleteQueue(t.Context(), &awssqs.DeleteQueueInput{QueueUrl: aws.String(q)}); err != nil {
				t.Fatal(err)
			}
			res := p.Publish(t.Context(), []adapters.Message{
				{ID: "gone-1-" + randomHex(t), Type: "t", PartitionKey: "k", Payload: []byte(`{}`)},
				{ID: "gone-2-" + randomHex(t), Type: "t", PartitionKey: "k", Payload: []byte(`{}`)},
			})
			for i, r := range res {
				if !errors.Is(r.Err, adapters.ErrUnavailable) || errors.Is(r.Err, adapters.ErrPermanent) {
					t.Errorf("message %d: err = %v, want one wrapping adapters.ErrUnavailable, not permanent", i, r.Err)
				}
			}
		})
	}
}

func TestMaxPublishTime(t *testing.T) {
	p, err := sqs.New(t.Context(), "http://127.0.0.1:1/000000000000/q", sqs.WithAWSConfig(staticConfig()),
		sqs.WithVerifyQueue(false), sqs.WithSendTimeout(3*time.Second), sqs.WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	// Two calls of the send timeout per message: once in a batch, once
	// alone when SQS refuses the batch for a content it does not pin down.
	if d := p.MaxPublishTime(11) - p.MaxPublishTime(10); d != 2*3*time.Second {
		t.Errorf("one more message adds %s to the bound, want two send timeouts (6s)", d)
	}
	if one := p.MaxPublishTime(1); one < 2*3*time.Second {
		t.Errorf("MaxPublishTime(1) = %s, want at least two send timeouts", one)
	}
}

func TestOptionsAreValidated(t *testing.T) {
	tests := map[string]sqs.Option{
		"WithRegion":         sqs.WithRegion(""),
		"WithEndpoint":       sqs.WithEndpoint("127.0.0.1:4566"),
		"WithAWSConfig":      sqs.WithAWSConfig(aws.Config{}),
		"WithLogger":         sqs.WithLogger(nil),
		"WithMessageGroupID": sqs.WithMessageGroupID("has space"),
		"WithMaxMessageSize": sqs.WithMaxMessageSize(2 << 20),
		"WithSendTimeout":    sqs.WithSendTimeout(0),
	}
	for name, opt := range tests {
		t.Run(name, func(t *testing.T) {
			// Options fail before any configuration is loaded.
			_, err := sqs.New(t.Context(), "https://sqs.us-east-1.amazonaws.com/123456789012/q", opt)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("err = %v, want one naming %s", err, name)
			}
		})
	}
	for _, bad := range []string{"", "sqs.us-east-1.amazonaws.com/1/q", "https://sqs.us-east-1.amazonaws.com/1/", "ftp://h/1/q"} {
		if _, err := sqs.New(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "queue URL") {
			t.Errorf("queue URL %q: err = %v, want a queue URL error", bad, err)
		}
	}
	// No region anywhere (the config has none, the URL names none).
	cfg := staticConfig()
	cfg.Region = ""
	_, err := sqs.New(t.Context(), "http://127.0.0.1:1/000000000000/q", sqs.WithAWSConfig(cfg), sqs.WithVerifyQueue(false))
	if err == nil || !strings.Contains(err.Error(), "region") {
		t.Errorf("no region: err = %v", err)
	}
}

// emu is the SQS emulator (fauxqs) the tests run against.
type emu struct {
	endpoint string
}

// client returns an SQS client for setting up and reading queues, whose
// connections are closed at cleanup: the conformance suite counts
// goroutines, and an idle keep-alive connection has two.
func (e *emu) client(t *testing.T) *awssqs.Client {
	transport := awshttp.NewBuildableClient().GetTransport()
	t.Cleanup(transport.CloseIdleConnections)
	return awssqs.NewFromConfig(e.awsConfig(), func(o *awssqs.Options) {
		o.BaseEndpoint = aws.String(e.endpoint)
		o.HTTPClient = &http.Client{Transport: transport}
	})
}

// emulator returns the emulator at HERALD_SQS_ENDPOINT (default
// http://127.0.0.1:4566), skipping the test when it does not answer unless
// HERALD_REQUIRE_SERVICES=1 (as in CI). .ci/sqs.sh starts it.
func emulator(t *testing.T) *emu {
	t.Helper()
	endpoint := testsqs.Endpoint()
	e := &emu{endpoint: endpoint}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err := e.client(t).ListQueues(ctx, &awssqs.ListQueuesInput{MaxResults: aws.Int32(1)}, func(o *awssqs.Options) {
		o.RetryMaxAttempts = 1
	})
	if err == nil {
		return e
	}
	if os.Getenv("HERALD_REQUIRE_SERVICES") == "1" {
		t.Fatalf("SQS emulator at %s: %v", endpoint, err)
	}
	t.Skipf("SQS emulator at %s unavailable (%v); run .ci/sqs.sh, or set HERALD_REQUIRE_SERVICES=1 to fail instead", endpoint, err)
	return nil
}

func staticConfig() aws.Config {
	return aws.Config{
		Region:      testRegion,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
}

func (e *emu) awsConfig() aws.Config { return staticConfig() }

// createQueue makes a queue with a random name, deleted again at cleanup,
// and returns its URL.
func (e *emu) createQueue(t *testing.T, fifo bool, attrs map[string]string) string {
	return e.createQueueWith(t, e.client(t), fifo, attrs)
}

func (e *emu) createQueueWith(t *testing.T, admin *awssqs.Client, fifo bool, attrs map[string]string) string {
	t.Helper()
	name := "herald-test-" + randomHex(t)
	all := map[string]string{}
	for k, v := range attrs {
		all[k] = v
	}
	if fifo {
		name += ".fifo"
		all["FifoQueue"] = "true"
	}
	out, err := admin.CreateQueue(t.Context(), &awssqs.CreateQueueInput{QueueName: aws.String(name), Attributes: all})
	if err != nil {
		t.Fatalf("create queue %s: %v", name, err)
	}
	queueURL := aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := admin.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: aws.String(queueURL)}); err != nil {
			t.Logf("delete queue %s: %v", name, err)
		}
	})
	return queueURL
}

func (e *emu) publisher(t *testing.T, queueURL string, extra ...sqs.Option) *sqs.Publisher {
	t.Helper()
	return e.publisherVia(t, queueURL, e.endpoint, extra...)
}

func (e *emu) publisherVia(t *testing.T, queueURL, endpoint string, extra ...sqs.Option) *sqs.Publisher {
	t.Helper()
	opts := append([]sqs.Option{
		sqs.WithAWSConfig(e.awsConfig()),
		sqs.WithEndpoint(endpoint),
		sqs.WithLogger(discardLogger()),
	}, extra...)
	p, err := sqs.New(t.Context(), queueURL, opts...)
	if err != nil {
		t.Fatalf("new publisher: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// openDown returns a Harness.OpenDown: a publisher that reached the
// emulator through a TCP proxy (New reads the queue's attributes through
// it), after which the proxy is stopped.
func (e *emu) openDown(fifo bool) func(t *testing.T) adapters.Publisher {
	return func(t *testing.T) adapters.Publisher {
		u, err := url.Parse(e.endpoint)
		if err != nil {
			t.Fatal(err)
		}
		q := e.createQueue(t, fifo, nil)
		proxy := startProxy(t, u.Host)
		p := e.publisherVia(t, q, "http://"+proxy.addr())
		proxy.stop()
		return p
	}
}

// reader returns a Destination for the queue, on a client of its own.
func (e *emu) reader(t *testing.T, queueURL string) *queueReader {
	return &queueReader{client: e.client(t), queueURL: queueURL}
}

// receiveRaw returns n messages with all their attributes, deleting them.
func (e *emu) receiveRaw(t *testing.T, queueURL string, n int) []sqstypes.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	r := e.reader(t, queueURL)
	var got []sqstypes.Message
	for len(got) < n {
		batch, err := r.receiveOnce(ctx, n-len(got))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, batch...)
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				t.Fatalf("received %d of %d messages", len(got), n)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return got
}

// queueReader reads a queue for the conformance suite: it receives and
// deletes, so each message is returned once. A FIFO queue hands out the
// messages of one group in order; a group stays locked while a received
// message is undeleted, so each receive is deleted before the next.
type queueReader struct {
	client   *awssqs.Client
	queueURL string
}

func (r *queueReader) Receive(ctx context.Context, max int) ([]adaptertest.Received, error) {
	var got []adaptertest.Received
	for len(got) < max {
		msgs, err := r.receiveOnce(ctx, max-len(got))
		if err != nil {
			select {
			case <-ctx.Done():
				return got, nil
			default:
				return got, err
			}
		}
		for _, m := range msgs {
			got = append(got, adaptertest.Received{
				ID:      aws.ToString(m.MessageAttributes[sqs.AttrID].StringValue),
				Payload: []byte(aws.ToString(m.Body)),
			})
		}
		if len(msgs) == 0 {
			select {
			case <-ctx.Done():
				return got, nil
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return got, nil
}

// receiveAll reads until n messages arrived, then for a moment more, so
// that a test also sees extra copies.
func (r *queueReader) receiveAll(t *testing.T, n int) []adaptertest.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := r.Receive(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	return append(got, r.drain(t, 10)...)
}

// drain reads until no message has come for half a second (the emulator
// delivers at once), or max came.
func (r *queueReader) drain(t *testing.T, max int) []adaptertest.Received {
	t.Helper()
	var got []adaptertest.Received
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		more, err := r.Receive(ctx, max-len(got))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, more...)
		if len(more) == 0 || len(got) >= max {
			return got
		}
	}
}

// receiveOnce makes one short-poll receive and deletes what it got. The
// call itself is not cut short by ctx: messages it took off the queue would
// otherwise be hidden until their visibility timeout.
func (r *queueReader) receiveOnce(ctx context.Context, max int) ([]sqstypes.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	out, err := r.client.ReceiveMessage(callCtx, &awssqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(r.queueURL),
		MaxNumberOfMessages:         int32(min(max, 10)),
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		// Short, because the emulator now and then answers a receive with
		// a response the client fails to read ("use of closed network
		// connection") and retries: what that lost response took must
		// come back soon, not after the queue's 30s. Deletes follow at
		// once, so this never redelivers a message that arrived.
		VisibilityTimeout: 2,
	})
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	if len(out.Messages) == 0 {
		return nil, nil
	}
	del := &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(r.queueURL)}
	for i, m := range out.Messages {
		del.Entries = append(del.Entries, sqstypes.DeleteMessageBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle,
		})
	}
	dout, err := r.client.DeleteMessageBatch(callCtx, del)
	if err != nil {
		return nil, fmt.Errorf("delete: %w", err)
	}
	if len(dout.Failed) > 0 {
		return nil, fmt.Errorf("delete: %d failed: %s", len(dout.Failed), aws.ToString(dout.Failed[0].Message))
	}
	return out.Messages, nil
}

func requireOK(t *testing.T, res []adapters.Result) {
	t.Helper()
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("message %d: %v", i, r.Err)
		}
	}
}

func ids(got []adaptertest.Received) []string {
	out := make([]string, len(got))
	for i, r := range got {
		out[i] = r.ID
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// padded returns a JSON object of exactly n bytes.
func padded(n int) []byte {
	const head, tail = `{"pad":"`, `"}`
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func discardLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// tcpProxy forwards connections to a server until stopped; stopping it
// closes the listener and every forwarded connection, so whoever dialled
// the proxy finds the server gone.
type tcpProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	open   map[net.Conn]struct{}
	closed bool
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, open: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // stopped
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.keep(client, server) {
			return
		}
		p.wg.Go(func() { p.copy(server, client) })
		p.wg.Go(func() { p.copy(client, server) })
	}
}

func (p *tcpProxy) copy(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

// keep registers conns so that stop can close them, or closes them at once
// if stop already ran.
func (p *tcpProxy) keep(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		if p.closed {
			_ = c.Close()
			continue
		}
		p.open[c] = struct{}{}
	}
	return !p.closed
}

// stop makes the target unreachable through the proxy and waits for the
// proxy's goroutines. Safe to call more than once.
func (p *tcpProxy) stop() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		_ = p.ln.Close()
		for c := range p.open {
			_ = c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}
