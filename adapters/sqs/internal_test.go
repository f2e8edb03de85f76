package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/heraldhq/herald/adapters"
)

func TestCutBatch(t *testing.T) {
	const kib = 1 << 10
	tests := []struct {
		name       string
		sizes      []int
		maxEntries int
		maxBytes   int
		want       []int // batch sizes when cutting repeatedly
	}{
		{"empty", nil, 10, MaxBatchBytes, nil},
		{"one", []int{5}, 10, MaxBatchBytes, []int{1}},
		{"count limit", repeat(25, 100), 10, MaxBatchBytes, []int{10, 10, 5}},
		{"exactly ten", repeat(10, 100), 10, MaxBatchBytes, []int{10}},
		{"byte limit", repeat(7, 300*kib), 10, MaxBatchBytes, []int{3, 3, 1}},
		{"exact byte fit", []int{512 * kib, 512 * kib, 1}, 10, MaxBatchBytes, []int{2, 1}},
		{"one byte over", []int{512 * kib, 512*kib + 1}, 10, MaxBatchBytes, []int{1, 1}},
		{"single at the limit", []int{MaxBatchBytes, 1, MaxBatchBytes}, 10, MaxBatchBytes, []int{1, 1, 1}},
		{"big then small fill by count", append(repeat(1, 900*kib), repeat(12, 10)...), 10, MaxBatchBytes, []int{10, 3}},
		{"small then big", []int{100, 100, MaxBatchBytes - 200, 1}, 10, MaxBatchBytes, []int{3, 1}},
		{"one per call", repeat(3, 10), 1, MaxBatchBytes, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pending := make([]*entry, len(tt.sizes))
			for i, s := range tt.sizes {
				pending[i] = &entry{index: i, size: s}
			}
			var got []int
			for len(pending) > 0 {
				n := cutBatch(pending, tt.maxEntries, tt.maxBytes)
				if n < 1 || n > len(pending) {
					t.Fatalf("cutBatch returned %d for %d pending", n, len(pending))
				}
				got = append(got, n)
				pending = pending[n:]
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("batches %v, want %v", got, tt.want)
			}
		})
	}
}

func repeat(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

func TestAttributes(t *testing.T) {
	full := `{"specversion":"1.0","id":"in-payload","type":"in.payload","source":"/src","subject":"orders/1",` +
		`"time":"2026-01-02T03:04:05Z","datacontenttype":"application/json","partitionkey":"k",` +
		`"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","data":{"big":[1,2,3]}}`
	tests := []struct {
		name string
		msg  adapters.Message
		want map[string]string
	}{
		{
			name: "full event: id, type and key from the row, the rest from the payload",
			msg:  adapters.Message{ID: "row-id", Type: "row.type", PartitionKey: "acct-1", Payload: []byte(full)},
			want: map[string]string{
				AttrContentType: ContentType, AttrSpecVersion: "1.0", AttrID: "row-id", AttrType: "row.type",
				AttrSource: "/src", AttrSubject: "orders/1", AttrTime: "2026-01-02T03:04:05Z",
				AttrPartitionKey: "acct-1", AttrTraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			},
		},
		{
			name: "not JSON",
			msg:  adapters.Message{ID: "id", Type: "t", Payload: []byte("plain text")},
			want: map[string]string{AttrContentType: ContentType, AttrID: "id", AttrType: "t"},
		},
		{
			name: "type from the payload when the row has none",
			msg:  adapters.Message{ID: "id", Payload: []byte(`{"type":"from.payload"}`)},
			want: map[string]string{AttrContentType: ContentType, AttrID: "id", AttrType: "from.payload"},
		},
		{
			name: "wrong JSON types spoil only themselves",
			msg:  adapters.Message{ID: "id", Type: "t", Payload: []byte(`{"source":42,"subject":"s","time":null}`)},
			want: map[string]string{AttrContentType: ContentType, AttrID: "id", AttrType: "t", AttrSubject: "s"},
		},
		{
			name: "values SQS refuses are left out",
			msg:  adapters.Message{ID: "id", Type: "t", Payload: []byte(`{"subject":"a\u0001b","source":""}`)},
			want: map[string]string{AttrContentType: ContentType, AttrID: "id", AttrType: "t"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs := attributes(tt.msg)
			got := map[string]string{}
			for name, v := range attrs {
				if aws.ToString(v.DataType) != stringType {
					t.Errorf("%s: data type %q", name, aws.ToString(v.DataType))
				}
				got[name] = aws.ToString(v.StringValue)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("attributes\n got  %v\n want %v", got, tt.want)
			}
			if len(attrs) > MaxMessageAttributes {
				t.Errorf("%d attributes, SQS allows %d", len(attrs), MaxMessageAttributes)
			}
		})
	}
}

func TestMessageSize(t *testing.T) {
	attrs := map[string]sqstypes.MessageAttributeValue{
		"ce-id": {DataType: aws.String("String"), StringValue: aws.String("abc")},
		"bin":   {DataType: aws.String("Binary"), BinaryValue: []byte{1, 2}},
	}
	// body 4 + (5+6+3) + (3+6+2)
	if got, want := messageSize([]byte("body"), attrs), 4+14+11; got != want {
		t.Errorf("messageSize = %d, want %d", got, want)
	}
}

func TestCheckBody(t *testing.T) {
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"a":1}`, true},
		{"tab\tnewline\ncr\r", true},
		{"héllo ✓ 日本", true},
		{"\U0001F680 beyond the BMP", true},
		{"\uFFFD replacement character itself", true},
		{"", false},
		{"nul \x00", false},
		{"ctl \x1f", false},
		{"invalid \xff utf8", false},
		{"truncated \xe2\x9c", false},
		{"noncharacter \uFFFE", false},
	}
	for _, tt := range tests {
		err := checkBody([]byte(tt.body))
		if (err == nil) != tt.ok {
			t.Errorf("checkBody(%q) = %v, want ok=%v", tt.body, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidBody) {
			t.Errorf("checkBody(%q) = %v, want ErrInvalidBody", tt.body, err)
		}
	}
}

func TestToken(t *testing.T) {
	long := strings.Repeat("a", 129)
	for _, s := range []string{"acct-1", "a!~{}|", strings.Repeat("b", 128), "0190f0c2-7b1e-7c3d-9a8e-1f2e3d4c5b6a"} {
		if got := token(s); got != s {
			t.Errorf("token(%q) = %q, want it unchanged", s, got)
		}
	}
	for _, s := range []string{"has space", "naïve", long, "tab\t"} {
		got := token(s)
		if !strings.HasPrefix(got, hashedPrefix) || !validToken(got) || got != token(s) {
			t.Errorf("token(%q) = %q, want a stable valid hash", s, got)
		}
	}
	if token("a b") == token("a  b") {
		t.Error("different keys hashed to one group")
	}
}

func TestGroupFor(t *testing.T) {
	p := newPublisher(nil, "https://sqs.us-east-1.amazonaws.com/1/q.fifo", "q.fifo", defaultConfig())
	if g := p.groupFor(adapters.Message{ID: "id-1", PartitionKey: "k"}); g != "k" {
		t.Errorf("keyed event: group %q, want its key", g)
	}
	if g := p.groupFor(adapters.Message{ID: "id-1"}); g != "id-1" {
		t.Errorf("keyless event: group %q, want its id", g)
	}
	p.cfg.groupID = "fixed"
	if g := p.groupFor(adapters.Message{ID: "id-1"}); g != "fixed" {
		t.Errorf("keyless event with WithMessageGroupID: group %q, want fixed", g)
	}
}

func TestEntryError(t *testing.T) {
	tests := []struct {
		code        string
		sender      bool
		permanent   bool
		unavailable bool
	}{
		{"InvalidParameterValue", true, true, false},
		{"InvalidMessageContents", true, true, false},
		{"AWS.SimpleQueueService.InvalidMessageContents", true, true, false},
		{"InvalidAttributeValue", true, true, false},
		{"InvalidParameterValue", false, false, false}, // the server's fault: may pass later
		// One entry's internal error says nothing about the queue as a whole.
		{"InternalError", false, false, false},
		{"ServiceUnavailable", false, false, false},
		{"KmsThrottled", true, false, true},
		{"KmsAccessDenied", true, false, true}, // an operator can fix the key policy
		{"KmsDisabled", true, false, true},
		{"RequestThrottled", true, false, true},
		{"ThrottlingException", false, false, true}, // from the SDK's throttling list
		{"AWS.SimpleQueueService.NonExistentQueue", true, false, true},
		{"SomethingNew", true, false, false},
	}
	for _, tt := range tests {
		err := entryError(sqstypes.BatchResultErrorEntry{
			Id: aws.String("0"), Code: aws.String(tt.code), Message: aws.String("msg"), SenderFault: tt.sender,
		})
		if got := errors.Is(err, adapters.ErrPermanent); got != tt.permanent {
			t.Errorf("%s (sender fault %v): permanent = %v, want %v", tt.code, tt.sender, got, tt.permanent)
		}
		if got := errors.Is(err, adapters.ErrUnavailable); got != tt.unavailable {
			t.Errorf("%s (sender fault %v): unavailable = %v, want %v", tt.code, tt.sender, got, tt.unavailable)
		}
		var ee *EntryError
		if !errors.As(err, &ee) || ee.Code != tt.code || !strings.Contains(err.Error(), tt.code) {
			t.Errorf("%s: err = %v, want an EntryError naming the code", tt.code, err)
		}
	}
}

func TestIsContentError(t *testing.T) {
	wrap := func(err error) error {
		// As the SDK returns it: inside an OperationError.
		return fmt.Errorf("sqs: send batch: %w", &smithy.OperationError{ServiceID: "SQS", OperationName: "SendMessageBatch", Err: err})
	}
	tests := []struct {
		err  error
		want bool
	}{
		{wrap(&sqstypes.BatchRequestTooLong{Message: aws.String("too long")}), true},
		{wrap(&sqstypes.InvalidMessageContents{}), true},
		{wrap(&smithy.GenericAPIError{Code: "InvalidParameterValue", Fault: smithy.FaultClient}), true},
		{wrap(&smithy.GenericAPIError{Code: "AWS.SimpleQueueService.BatchRequestTooLong"}), true},
		{wrap(&smithy.GenericAPIError{Code: "InvalidParameterValue", Fault: smithy.FaultServer}), false},
		{wrap(&sqstypes.QueueDoesNotExist{}), false},
		{wrap(&sqstypes.RequestThrottled{}), false},
		{wrap(&sqstypes.KmsDisabled{}), false},
		{wrap(&smithy.GenericAPIError{Code: "AccessDenied"}), false},
		{wrap(errors.New("dial tcp: connection refused")), false},
		{context.Canceled, false},
	}
	for _, tt := range tests {
		if got := isContentError(tt.err); got != tt.want {
			t.Errorf("isContentError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestDestinationWide: what a failed call says about the queue as a whole,
// with errors as the SDK returns them.
func TestDestinationWide(t *testing.T) {
	op := func(err error) error {
		return fmt.Errorf("sqs: send batch: %w", &smithy.OperationError{ServiceID: "SQS", OperationName: "SendMessageBatch", Err: err})
	}
	status := func(code int, err error) error {
		return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: err,
		}}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"throttled", op(&sqstypes.RequestThrottled{}), true},
		{"throttled, generic", op(&smithy.GenericAPIError{Code: "ThrottlingException"}), true},
		{"queue missing", op(&sqstypes.QueueDoesNotExist{}), true},
		{"queue missing, query code", op(&smithy.GenericAPIError{Code: "AWS.SimpleQueueService.NonExistentQueue", Fault: smithy.FaultClient}), true},
		{"access denied", op(status(400, &smithy.GenericAPIError{Code: "AccessDenied", Fault: smithy.FaultClient})), true},
		{"bad key id", op(&smithy.GenericAPIError{Code: "InvalidClientTokenId"}), true},
		{"kms key disabled", op(&sqstypes.KmsDisabled{}), true},
		{"server error", op(status(500, &smithy.GenericAPIError{Code: "InternalError"})), true},
		{"unknown 503", op(status(503, errors.New("no body"))), true},
		{"server fault", op(&smithy.GenericAPIError{Code: "SomethingNew", Fault: smithy.FaultServer}), true},
		{"connection refused", op(&smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}), true},
		{"no credentials", op(&v4.SigningError{Err: errors.New("failed to retrieve credentials: no EC2 IMDS role found")}), true},
		{"dns", op(&net.DNSError{Err: "no such host", Name: "sqs.example", IsNotFound: true}), true},
		// The messages' fault, or an unknown client error: the relay decides.
		{"content", op(&sqstypes.BatchRequestTooLong{}), false},
		{"content, 400", op(status(400, &smithy.GenericAPIError{Code: "InvalidParameterValue", Fault: smithy.FaultClient})), false},
		{"unknown client error", op(status(400, &smithy.GenericAPIError{Code: "SomethingNew", Fault: smithy.FaultClient})), false},
		{"plain", errors.New("something else"), false},
	}
	for _, tt := range tests {
		if got := destinationWide(tt.err); got != tt.want {
			t.Errorf("%s: destinationWide(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestSentIDs(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := newSentIDs()
	s.now = func() time.Time { return now }
	if s.seen("a") || s.seen("b") || !s.seen("a") || s.seen("") || s.seen("") {
		t.Fatal("first sightings must be new, a repeat a duplicate, an empty id never")
	}
	now = now.Add(dedupeInterval)
	if !s.seen("b") {
		t.Error("forgot b within the deduplication interval")
	}
	now = now.Add(time.Second)
	if s.seen("a") {
		t.Error("remembered a past the deduplication interval")
	}
	for i := range maxSentIDs + 10 {
		s.seen(fmt.Sprint("n", i))
	}
	if n := len(s.at); n > maxSentIDs {
		t.Errorf("remembers %d ids, bound is %d", n, maxSentIDs)
	}
	if len(s.order)-s.head != len(s.at) {
		t.Errorf("order holds %d live ids, map %d", len(s.order)-s.head, len(s.at))
	}
	if !s.seen(fmt.Sprint("n", maxSentIDs+9)) {
		t.Error("forgot the newest id")
	}
}

func TestQueueURLs(t *testing.T) {
	for raw, want := range map[string]string{
		"https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo":                "eu-west-1",
		"https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q":                      "cn-north-1",
		"https://vpce-0a1b-c2d3.sqs.us-west-2.vpce.amazonaws.com/123456789012/q":      "us-west-2",
		"https://us-gov-west-1.queue.amazonaws.com/123456789012/q":                    "us-gov-west-1",
		"https://queue.amazonaws.com/123456789012/q":                                  "us-east-1",
		"http://127.0.0.1:4566/000000000000/q":                                        "",
		"http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/q":         "us-east-1",
		"https://sqs.us-east-1.api.aws/123456789012/q":                                "us-east-1",
		"https://my-proxy.example/123456789012/q":                                     "",
		"https://sqs.ap-southeast-2.amazonaws.com/123456789012/name-with.dots_and-x1": "ap-southeast-2",
	} {
		if got := regionOf(raw); got != want {
			t.Errorf("regionOf(%s) = %q, want %q", raw, got, want)
		}
		if _, err := queueNameOf(raw); err != nil {
			t.Errorf("queueNameOf(%s): %v", raw, err)
		}
	}
}

// scriptedSender answers SendMessageBatch calls from a script, standing in
// for SQS where the emulator cannot produce the answer: a transient failure
// of one entry, a whole call refused for one message's content.
type scriptedSender struct {
	calls  [][]string // entry ids (message indexes) per call
	answer func(call int, in *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error)
}

func (s *scriptedSender) SendMessageBatch(_ context.Context, in *awssqs.SendMessageBatchInput, _ ...func(*awssqs.Options)) (*awssqs.SendMessageBatchOutput, error) {
	var ids []string
	for _, e := range in.Entries {
		ids = append(ids, aws.ToString(e.Id))
	}
	s.calls = append(s.calls, ids)
	return s.answer(len(s.calls)-1, in)
}

// succeedAllBut answers success for every entry except the ones in fail.
func succeedAllBut(in *awssqs.SendMessageBatchInput, fail map[string]sqstypes.BatchResultErrorEntry) *awssqs.SendMessageBatchOutput {
	out := &awssqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		if f, ok := fail[aws.ToString(e.Id)]; ok {
			f.Id = e.Id
			out.Failed = append(out.Failed, f)
			continue
		}
		out.Successful = append(out.Successful, sqstypes.SendMessageBatchResultEntry{
			Id: e.Id, MessageId: aws.String("mid-" + aws.ToString(e.MessageDeduplicationId) + aws.ToString(e.Id)),
		})
	}
	return out
}

func scriptedPublisher(t *testing.T, queueName string, s *scriptedSender) *Publisher {
	t.Helper()
	cfg := defaultConfig()
	cfg.logger = discard()
	p := newPublisher(s, "https://sqs.us-east-1.amazonaws.com/123456789012/"+queueName, queueName, cfg)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func keyed(n int, key func(i int) string) []adapters.Message {
	msgs := make([]adapters.Message, n)
	for i := range msgs {
		msgs[i] = adapters.Message{ID: fmt.Sprint("id-", i), Type: "t", PartitionKey: key(i), Payload: []byte(`{}`)}
	}
	return msgs
}

// TestTransientEntryFailureHoldsBackItsKey: SQS fails one entry for a
// transient reason; later messages of its key in later calls are not sent
// (ErrEarlierFailed), other keys go on.
func TestTransientEntryFailureHoldsBackItsKey(t *testing.T) {
	for _, queue := range []string{"q.fifo", "q"} {
		t.Run(queue, func(t *testing.T) {
			s := &scriptedSender{answer: func(call int, in *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error) {
				if call == 0 {
					return succeedAllBut(in, map[string]sqstypes.BatchResultErrorEntry{
						"1": {Code: aws.String("InternalError"), Message: aws.String("try again"), SenderFault: false},
					}), nil
				}
				return succeedAllBut(in, nil), nil
			}}
			p := scriptedPublisher(t, queue, s)
			// Keys alternate a, b: message 1 (key b) fails in the first call.
			msgs := keyed(24, func(i int) string { return []string{"a", "b"}[i%2] })
			res := p.Publish(t.Context(), msgs)
			for i, r := range res {
				switch {
				case i == 1:
					if r.Err == nil || errors.Is(r.Err, adapters.ErrPermanent) {
						t.Errorf("message 1: err = %v, want the transient entry error", r.Err)
					}
				case i%2 == 1 && i < 10:
					// Same call as the failure: already sent when it failed.
					if r.Err != nil {
						t.Errorf("message %d: %v", i, r.Err)
					}
				case i%2 == 1:
					if !errors.Is(r.Err, ErrEarlierFailed) {
						t.Errorf("message %d (key b, after the failure): err = %v, want ErrEarlierFailed", i, r.Err)
					}
				default:
					if r.Err != nil {
						t.Errorf("message %d (key a): %v", i, r.Err)
					}
				}
			}
			// Later calls carry only key a: 10 in the first call, then the
			// seven remaining a's.
			want := [][]string{{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, {"10", "12", "14", "16", "18", "20", "22"}}
			if fmt.Sprint(s.calls) != fmt.Sprint(want) {
				t.Errorf("calls %v, want %v", s.calls, want)
			}
		})
	}
}

// TestPermanentEntryFailureHoldsBackItsKey: a message SQS refuses for its
// content fails permanently, and its key's messages in later calls are held
// back all the same, with an error that is not permanent: the relay decides
// whether they wait for the dead letter. Those in the same call were sent
// with it.
func TestPermanentEntryFailureHoldsBackItsKey(t *testing.T) {
	s := &scriptedSender{answer: func(call int, in *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error) {
		if call == 0 {
			return succeedAllBut(in, map[string]sqstypes.BatchResultErrorEntry{
				"0": {Code: aws.String("InvalidParameterValue"), Message: aws.String("bad"), SenderFault: true},
			}), nil
		}
		return succeedAllBut(in, nil), nil
	}}
	p := scriptedPublisher(t, "q.fifo", s)
	res := p.Publish(t.Context(), keyed(13, func(i int) string { return []string{"k", "k", "j"}[i%3] }))
	if !errors.Is(res[0].Err, adapters.ErrPermanent) {
		t.Errorf("message 0: err = %v, want permanent", res[0].Err)
	}
	for i, r := range res[1:] {
		i++
		switch {
		case i < 10 || i%3 == 2:
			if r.Err != nil {
				t.Errorf("message %d (same call, or key j): %v", i, r.Err)
			}
		case !errors.Is(r.Err, ErrEarlierFailed) || errors.Is(r.Err, adapters.ErrPermanent) ||
			!strings.Contains(r.Err.Error(), "InvalidParameterValue"):
			t.Errorf("message %d (key k, later call): err = %v, want ErrEarlierFailed naming the cause, not permanent", i, r.Err)
		}
	}
	if want := "[[0 1 2 3 4 5 6 7 8 9] [11]]"; fmt.Sprint(s.calls) != want {
		t.Errorf("calls %v, want %s", s.calls, want)
	}
}

// TestInvalidMessageHoldsBackItsKey: a message refused before any call (too
// large, here) holds back the later messages of its key, which are never
// sent; other keys go.
func TestInvalidMessageHoldsBackItsKey(t *testing.T) {
	for _, queue := range []string{"q.fifo", "q"} {
		t.Run(queue, func(t *testing.T) {
			s := &scriptedSender{answer: func(_ int, in *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error) {
				return succeedAllBut(in, nil), nil
			}}
			p := scriptedPublisher(t, queue, s)
			msgs := keyed(4, func(i int) string { return []string{"k", "k", "j", "k"}[i] })
			msgs[0].Payload = []byte(`{"pad":"` + strings.Repeat("x", DefaultMaxMessageSize) + `"}`)
			res := p.Publish(t.Context(), msgs)
			if !errors.Is(res[0].Err, ErrTooLarge) || !errors.Is(res[0].Err, adapters.ErrPermanent) {
				t.Errorf("message 0: err = %v, want permanent ErrTooLarge", res[0].Err)
			}
			for _, i := range []int{1, 3} {
				if err := res[i].Err; !errors.Is(err, ErrEarlierFailed) || errors.Is(err, adapters.ErrPermanent) {
					t.Errorf("message %d: err = %v, want ErrEarlierFailed, not permanent", i, err)
				}
			}
			if res[2].Err != nil {
				t.Errorf("message 2 (key j): %v", res[2].Err)
			}
			if want := "[[2]]"; fmt.Sprint(s.calls) != want {
				t.Errorf("calls %v, want %s", s.calls, want)
			}
		})
	}
}

// TestCallFailureFailsTheRest: a call that fails as a whole (here
// throttling that outlasted the SDK's retries) fails its messages and every
// later one, without more calls.
func TestCallFailureFailsTheRest(t *testing.T) {
	throttled := &smithy.OperationError{ServiceID: "SQS", OperationName: "SendMessageBatch", Err: &sqstypes.RequestThrottled{Message: aws.String("slow down")}}
	s := &scriptedSender{answer: func(call int, in *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error) {
		if call == 1 {
			return nil, throttled
		}
		return succeedAllBut(in, nil), nil
	}}
	p := scriptedPublisher(t, "q", s)
	res := p.Publish(t.Context(), keyed(35, func(int) string { return "" }))
	for i, r := range res {
		switch {
		case i < 10 && r.Err != nil:
			t.Errorf("message %d: %v", i, r.Err)
		case i >= 10 && (!errors.As(r.Err, new(*sqstypes.RequestThrottled)) || errors.Is(r.Err, adapters.ErrPermanent) ||
			!errors.Is(r.Err, adapters.ErrUnavailable)):
			t.Errorf("message %d: err = %v, want the throttling error, marked unavailable, not permanent", i, r.Err)
		}
	}
	if len(s.calls) != 2 {
		t.Errorf("%d calls, want 2 (none after the failure)", len(s.calls))
	}
}

// TestContentRefusalOfWholeCallIsIsolated: if SQS refuses a whole call for
// one message's content (its count differing from ours), the messages are
// sent one by one so that only the culprit fails, permanently; the later
// messages of its key are then held back, and the others go on.
func TestContentRefusalOfWholeCallIsIsolated(t *testing.T) {
	tooLong := &smithy.OperationError{ServiceID: "SQS", OperationName: "SendMessageBatch",
		Err: &sqstypes.BatchRequestTooLong{Message: aws.String("batch too long")}}
	s := &scriptedSender{answer: func(call int, in *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error) {
		for _, e := range in.Entries {
			if aws.ToString(e.Id) == "2" {
				return nil, tooLong
			}
		}
		return succeedAllBut(in, nil), nil
	}}
	p := scriptedPublisher(t, "q.fifo", s)
	// Message 2, the culprit, has key a; a's later messages are held back.
	res := p.Publish(t.Context(), keyed(13, func(i int) string { return []string{"a", "b"}[i%2] }))
	for i, r := range res {
		switch {
		case i == 2:
			if !errors.Is(r.Err, adapters.ErrPermanent) || errors.Is(r.Err, adapters.ErrUnavailable) {
				t.Errorf("the culprit: err = %v, want permanent", r.Err)
			}
		case i > 2 && i%2 == 0:
			if !errors.Is(r.Err, ErrEarlierFailed) || errors.Is(r.Err, adapters.ErrPermanent) {
				t.Errorf("message %d (key a, after the culprit): err = %v, want ErrEarlierFailed, not permanent", i, r.Err)
			}
		case r.Err != nil:
			t.Errorf("message %d: %v", i, r.Err)
		}
	}
	// The batch's remaining b's go one by one, as the isolation started;
	// after the batch, calls are batches again.
	want := "[[0 1 2 3 4 5 6 7 8 9] [0] [1] [2] [3] [5] [7] [9] [11]]"
	if got := fmt.Sprint(s.calls); got != want {
		t.Errorf("calls %s, want %s", got, want)
	}
}

// TestDuplicateWithinOneCall: the same event twice in one call is new the
// first time and a duplicate the second, as SQS answers both with one id.
func TestDuplicateWithinOneCall(t *testing.T) {
	s := &scriptedSender{answer: func(_ int, in *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error) {
		out := &awssqs.SendMessageBatchOutput{}
		// Successful entries in reverse order: the mapping must not care.
		for _, e := range slices.Backward(in.Entries) {
			out.Successful = append(out.Successful, sqstypes.SendMessageBatchResultEntry{
				Id: e.Id, MessageId: aws.String("mid-" + aws.ToString(e.MessageDeduplicationId)),
			})
		}
		return out, nil
	}}
	p := scriptedPublisher(t, "q.fifo", s)
	msg := adapters.Message{ID: "same", Type: "t", Payload: []byte(`{}`)}
	res := p.Publish(t.Context(), []adapters.Message{msg, msg})
	if res[0].Duplicate || !res[1].Duplicate {
		t.Errorf("duplicates = %v, %v; want false, true", res[0].Duplicate, res[1].Duplicate)
	}
}

// TestMissingResultIsTransient: an entry absent from both lists of the
// answer is reported as failed, not sent.
func TestMissingResultIsTransient(t *testing.T) {
	s := &scriptedSender{answer: func(int, *awssqs.SendMessageBatchInput) (*awssqs.SendMessageBatchOutput, error) {
		return &awssqs.SendMessageBatchOutput{}, nil
	}}
	p := scriptedPublisher(t, "q", s)
	res := p.Publish(t.Context(), keyed(1, func(int) string { return "" }))
	if res[0].Err == nil || errors.Is(res[0].Err, adapters.ErrPermanent) {
		t.Errorf("err = %v, want a transient error", res[0].Err)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
