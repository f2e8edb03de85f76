package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/heraldhq/herald/adapters"
)

// Sentinel errors callers may test with errors.Is.
var (
	// ErrClosed is reported for every message published after Close, and
	// for those of a Publish that Close interrupted.
	ErrClosed = errors.New("sqs: publisher closed")
	// ErrTooLarge is wrapped (with adapters.ErrPermanent) when a message,
	// with its attributes, exceeds the size limit.
	ErrTooLarge = errors.New("sqs: message too large")
	// ErrInvalidID is wrapped (with adapters.ErrPermanent) for an empty event id.
	ErrInvalidID = errors.New("sqs: invalid event id")
	// ErrInvalidBody is wrapped (with adapters.ErrPermanent) when the payload
	// is empty, not UTF-8, or holds a character SQS refuses (most control
	// characters): SQS would reject it or the event would not arrive byte
	// for byte.
	ErrInvalidBody = errors.New("sqs: payload cannot be sent unchanged")
	// ErrEarlierFailed is reported for a message left unsent because an
	// earlier message of its group (FIFO) or partition key failed in the
	// same Publish: sending it would put it in the queue ahead of its
	// predecessor. It wraps the earlier failure unless that was permanent
	// (see adapters.HeldBack).
	ErrEarlierFailed = errors.New("sqs: not sent, an earlier message with the same ordering key failed")
	// ErrSendTimeout is wrapped when a SendMessageBatch call outlived
	// WithSendTimeout. It is transient, and marked adapters.ErrUnavailable:
	// SQS stores a message without looking at it, so no answer in time is
	// the service's or the network's state, not the batch's.
	ErrSendTimeout = errors.New("sqs: send timed out")
)

// EntryError is SQS's refusal of one message of a batch. It is wrapped in the
// message's Result, together with adapters.ErrPermanent when retrying cannot
// help.
type EntryError struct {
	Code        string // e.g. "InvalidParameterValue"
	Message     string
	SenderFault bool
}

func (e *EntryError) Error() string {
	fault := "server fault"
	if e.SenderFault {
		fault = "sender fault"
	}
	return fmt.Sprintf("sqs: message rejected: %s (%s): %s", e.Code, fault, e.Message)
}

// batchSender is the one SDK call Publish makes; *awssqs.Client is the only
// production implementation. The seam exists so that tests can feed the
// result mapping responses the emulator cannot produce.
type batchSender interface {
	SendMessageBatch(ctx context.Context, in *awssqs.SendMessageBatchInput, optFns ...func(*awssqs.Options)) (*awssqs.SendMessageBatchOutput, error)
}

// Publisher sends events to one SQS queue, standard or FIFO. It implements
// adapters.Publisher; create it with New.
type Publisher struct {
	sender         batchSender
	queueURL       string
	queueName      string
	fifo           bool
	cfg            config
	maxMessageSize int
	limitSource    string // what set maxMessageSize, for error messages
	log            *slog.Logger
	transport      *http.Transport // owned, closed by Close; nil for a caller's HTTP client

	publishMu sync.Mutex // serialises Publish: keeps per-key order across calls, guards sent
	sent      *sentIDs

	life      context.Context // cancelled by Close, with cause ErrClosed
	stop      context.CancelCauseFunc
	closeOnce sync.Once
}

var (
	_ adapters.Publisher = (*Publisher)(nil)
	_ adapters.Bounded   = (*Publisher)(nil)
	_ adapters.Limited   = (*Publisher)(nil)
)

// New returns a Publisher for the queue at queueURL, e.g.
// https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo. A name ending
// in ".fifo" makes it a FIFO queue.
//
// Credentials come from the default AWS chain (environment, shared profile,
// web identity as with EKS IRSA, container or instance role) unless
// WithAWSConfig provides them. Unless WithVerifyQueue(false) is given, New
// reads the queue's attributes, so a wrong URL, region or credential fails
// here, naming the queue.
func New(ctx context.Context, queueURL string, opts ...Option) (*Publisher, error) {
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("sqs: %w", err)
	}
	name, err := queueNameOf(queueURL)
	if err != nil {
		return nil, err
	}

	var awsCfg aws.Config
	if cfg.awsConfig != nil {
		awsCfg = cfg.awsConfig.Copy()
	} else {
		var loadOpts []func(*awsconfig.LoadOptions) error
		if cfg.region != "" {
			loadOpts = append(loadOpts, awsconfig.WithRegion(cfg.region))
		}
		if awsCfg, err = awsconfig.LoadDefaultConfig(ctx, loadOpts...); err != nil {
			return nil, fmt.Errorf("sqs: load AWS configuration: %w", err)
		}
	}
	transport, httpClient := ownHTTPClient(awsCfg.HTTPClient)
	if httpClient != nil {
		awsCfg.HTTPClient = httpClient
	}
	region := firstNonEmpty(cfg.region, awsCfg.Region, regionOf(queueURL))
	if region == "" {
		return nil, fmt.Errorf("sqs: no AWS region for queue %s: use WithRegion or AWS_REGION", name)
	}
	client := awssqs.NewFromConfig(awsCfg, func(o *awssqs.Options) {
		o.Region = region
		if cfg.endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.endpoint)
		}
	})

	p := newPublisher(client, queueURL, name, cfg)
	p.transport = transport
	if cfg.verifyQueue {
		if err := p.verify(ctx, client); err != nil {
			_ = p.Close()
			return nil, err
		}
	}
	p.log.Info("sqs: publisher ready", "queue", name, "fifo", p.fifo, "region", region,
		"max_message_size", p.maxMessageSize)
	return p, nil
}

// ownHTTPClient replaces the SDK's default HTTP client by one whose
// transport the Publisher holds, so that Close can drop its idle connections
// (and their goroutines). The transport is a copy of the SDK's, keeping what
// the configuration put there (AWS_CA_BUNDLE, proxy settings). A client the
// caller made is not the Publisher's to close: it returns nils.
func ownHTTPClient(hc aws.HTTPClient) (*http.Transport, *http.Client) {
	var b *awshttp.BuildableClient
	switch c := hc.(type) {
	case nil:
		b = awshttp.NewBuildableClient()
	case *awshttp.BuildableClient:
		b = c
	default:
		return nil, nil
	}
	tr := b.GetTransport()
	return tr, &http.Client{
		Transport: tr,
		Timeout:   b.GetTimeout(),
		// As the SDK's client: SQS does not redirect, and a redirect must
		// not resend a signed request elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// newPublisher builds a Publisher around sender, with no I/O.
func newPublisher(sender batchSender, queueURL, name string, cfg config) *Publisher {
	life, stop := context.WithCancelCause(context.Background())
	limitSource := "the SQS maximum"
	if cfg.maxMessageSize != DefaultMaxMessageSize {
		limitSource = "WithMaxMessageSize"
	}
	return &Publisher{
		sender:         sender,
		queueURL:       queueURL,
		queueName:      name,
		fifo:           strings.HasSuffix(name, ".fifo"),
		cfg:            cfg,
		maxMessageSize: cfg.maxMessageSize,
		limitSource:    limitSource,
		log:            cfg.logger,
		sent:           newSentIDs(),
		life:           life,
		stop:           stop,
	}
}

// verify reads the queue's attributes: it must exist and be reachable, be of
// the type its name says, and may lower the size limit.
func (p *Publisher) verify(ctx context.Context, client *awssqs.Client) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.sendTimeout)
	defer cancel()
	out, err := client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(p.queueURL),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameMaximumMessageSize,
			sqstypes.QueueAttributeNameFifoQueue,
		},
	})
	if err != nil {
		return fmt.Errorf("sqs: read attributes of queue %s (WithVerifyQueue(false) skips this): %w", p.queueURL, err)
	}
	attrs := out.Attributes
	if isFIFO := attrs[string(sqstypes.QueueAttributeNameFifoQueue)] == "true"; isFIFO != p.fifo {
		return fmt.Errorf("sqs: queue %s: FifoQueue attribute is %v but the name says %v", p.queueName, isFIFO, p.fifo)
	}
	if raw, ok := attrs[string(sqstypes.QueueAttributeNameMaximumMessageSize)]; ok {
		n, err := strconv.Atoi(raw)
		if err != nil || n < MinMaxMessageSize {
			return fmt.Errorf("sqs: queue %s: unexpected MaximumMessageSize %q", p.queueName, raw)
		}
		if n < p.maxMessageSize {
			p.maxMessageSize = n
			p.limitSource = "the queue's MaximumMessageSize"
		}
	}
	return nil
}

// Publish sends msgs to the queue in SendMessageBatch calls of at most 10
// messages and 1 MiB, one call at a time and in order, and reports one Result
// per message.
//
// A message SQS can never take (too large, empty id, characters SQS refuses)
// fails permanently without being sent. A message SQS refuses for a reason
// retrying cannot fix (InvalidParameterValue, say) fails permanently; any
// other refusal is transient. Either way the later messages of the same
// group or key are held back (ErrEarlierFailed). A call that fails as a
// whole (network, throttling after the SDK's retries, credentials) fails its
// messages and all that were still to be sent, marked adapters.ErrUnavailable
// when the fault is the queue's or the way to it. When ctx ends or Close is
// called, messages not yet sent get its cause. Concurrent calls are safe but
// run one after the other.
func (p *Publisher) Publish(ctx context.Context, msgs []adapters.Message) []adapters.Result {
	res := make([]adapters.Result, len(msgs))
	if len(msgs) == 0 {
		return res
	}
	p.publishMu.Lock()
	defer p.publishMu.Unlock()
	if p.life.Err() != nil {
		return adapters.FailAll(len(msgs), ErrClosed)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Close interrupts a call in flight; its messages may still have been
	// stored, which costs at most a duplicate the FIFO queue drops.
	defer context.AfterFunc(p.life, func() { cancel(ErrClosed) })()
	defer p.dropIdleAfterClose()

	// failed maps a group (FIFO) or partition key (standard) to the first
	// failure of one of its messages, which holds back the later ones.
	failed := map[string]error{}
	pending := make([]*entry, 0, len(msgs))
	for i, m := range msgs {
		group := p.orderKey(m)
		if cause := failed[group]; cause != nil {
			res[i].Err = adapters.HeldBack(ErrEarlierFailed, group, cause)
			continue
		}
		e, err := p.prepare(i, m)
		if err != nil {
			res[i].Err = err
			if group != "" {
				failed[group] = err
			}
			continue
		}
		pending = append(pending, e)
	}

	singles := 0 // the next this many entries go one per call (isolating a bad one)
	for len(pending) > 0 {
		if ctx.Err() != nil {
			failRest(pending, res, fmt.Errorf("sqs: not sent: %w", context.Cause(ctx)))
			break
		}
		limit := MaxBatchEntries
		if singles > 0 {
			limit = 1
		}
		batch := pending[:cutBatch(pending, limit, MaxBatchBytes)]
		out, err := p.sendBatch(ctx, batch)
		if err != nil {
			if len(batch) > 1 && isContentError(err) {
				// SQS refused the call for one message's content, without
				// saying which: send them one by one to find out.
				singles = len(batch)
				continue
			}
			if len(batch) == 1 && isContentError(err) {
				e := batch[0]
				res[e.index].Err = adapters.Permanent(err)
				pending = pending[1:]
				singles = max(singles-1, 0)
				if e.group != "" {
					pending, singles = holdBack(pending, singles, map[string]error{e.group: res[e.index].Err}, res)
				}
				continue
			}
			// The call path is broken (network, throttling, credentials):
			// later calls would fail the same way, slowly.
			failRest(batch, res, err)
			failRest(pending[len(batch):], res, fmt.Errorf("sqs: not sent after an earlier call failed: %w", err))
			break
		}
		pending = pending[len(batch):]
		singles = max(singles-len(batch), 0)
		if refused := p.record(batch, out, res); len(refused) > 0 {
			pending, singles = holdBack(pending, singles, refused, res)
		}
	}
	return res
}

// MaxMessageBytes implements adapters.Limited: the message size limit in
// force (WithMaxMessageSize, lowered to the queue's MaximumMessageSize when
// New read it) less AttributeAllowance for the message attributes, which
// SQS counts against the same limit.
func (p *Publisher) MaxMessageBytes() int { return PayloadLimit(p.maxMessageSize) }

// MaxPublishTime implements adapters.Bounded. Calls go one at a time, each
// cut off after WithSendTimeout, the SDK's retries included. Every message
// goes out in at most two calls: once in a batch and, should SQS refuse that
// batch for a content it does not pin on one entry, once alone. A batch may
// hold a single message (a call carries at most 1 MiB), so without knowing
// their sizes nothing smaller than 2n calls bounds n messages.
func (p *Publisher) MaxPublishTime(n int) time.Duration {
	return time.Duration(2*max(n, 1))*p.cfg.sendTimeout + adapters.BoundSlack
}

// sendBatch makes one SendMessageBatch call, bounded by WithSendTimeout.
func (p *Publisher) sendBatch(ctx context.Context, batch []*entry) (*awssqs.SendMessageBatchOutput, error) {
	in := &awssqs.SendMessageBatchInput{
		QueueUrl: aws.String(p.queueURL),
		Entries:  make([]sqstypes.SendMessageBatchRequestEntry, len(batch)),
	}
	for i, e := range batch {
		in.Entries[i] = e.input
	}
	callCtx, cancel := context.WithTimeout(ctx, p.cfg.sendTimeout)
	defer cancel()
	out, err := p.sender.SendMessageBatch(callCtx, in)
	switch {
	case err == nil && out == nil:
		return nil, fmt.Errorf("sqs: send batch of %d to %s: empty response", len(batch), p.queueName)
	case err == nil:
		return out, nil
	case ctx.Err() != nil:
		// The SDK reports a plain context error; name what ended it
		// (the caller's context or Close).
		//nolint:errorlint // the cause is the error to match; the SDK's is detail
		return nil, fmt.Errorf("sqs: send batch of %d to %s: %w (%v)", len(batch), p.queueName, context.Cause(ctx), err)
	case callCtx.Err() != nil:
		// Not wrapping the SDK's context.DeadlineExceeded: the caller's
		// deadline did not pass, and must not look as if it had. SQS stores
		// a message without looking at it, so a call that got no answer in
		// time says the service or the network is at fault, not the batch.
		//nolint:errorlint // deliberately not wrapping context.DeadlineExceeded
		return nil, adapters.Unavailable(fmt.Errorf("sqs: send batch of %d to %s: %w after %s (WithSendTimeout): %v",
			len(batch), p.queueName, ErrSendTimeout, p.cfg.sendTimeout, err))
	default:
		return nil, markUnavailable(fmt.Errorf("sqs: send batch of %d to %s: %w", len(batch), p.queueName, err))
	}
}

// record fills in the results of one answered call and returns the ordering
// keys of the messages that failed, each with the first failure.
func (p *Publisher) record(batch []*entry, out *awssqs.SendMessageBatchOutput, res []adapters.Result) map[string]error {
	succeeded := make(map[string]sqstypes.SendMessageBatchResultEntry, len(out.Successful))
	for _, s := range out.Successful {
		succeeded[aws.ToString(s.Id)] = s
	}
	refused := make(map[string]sqstypes.BatchResultErrorEntry, len(out.Failed))
	for _, f := range out.Failed {
		refused[aws.ToString(f.Id)] = f
	}
	var failed map[string]error
	// In batch order, so that a FIFO message sent twice in one call is the
	// first time new and the second time a duplicate.
	for _, e := range batch {
		id := aws.ToString(e.input.Id)
		r := &res[e.index]
		if s, ok := succeeded[id]; ok {
			if failed[e.group] != nil {
				p.log.Warn("sqs: SQS stored a message after refusing an earlier one of its group in the same call; their order is broken",
					"queue", p.queueName, "group", e.group)
			}
			r.Duplicate = p.fifo && p.sent.seen(aws.ToString(s.MessageId))
			continue
		}
		if f, ok := refused[id]; ok {
			r.Err = entryError(f)
		} else {
			r.Err = fmt.Errorf("sqs: send to %s: no result for the message in the SendMessageBatch response", p.queueName)
		}
		if e.group != "" && failed[e.group] == nil {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[e.group] = r.Err
		}
	}
	return failed
}

// dropIdleAfterClose closes the connections a Publish interrupted by Close
// left idle, which Close itself could not reach.
func (p *Publisher) dropIdleAfterClose() {
	if p.life.Err() != nil && p.transport != nil {
		p.transport.CloseIdleConnections()
	}
}

// Close stops the Publisher: later Publish calls fail with ErrClosed, and a
// Publish in progress stops with ErrClosed for its unsent messages. It closes
// the idle connections of the HTTP client it made itself. It never waits for
// a Publish, is safe to call more than once and from any goroutine, and
// returns nil.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		p.stop(ErrClosed)
		if p.transport != nil {
			p.transport.CloseIdleConnections()
		}
	})
	return nil
}

// cutBatch returns how many entries from the front of pending make the next
// call: at most maxEntries, and at most maxBytes together, but always one,
// since prepare refused any single entry over the limit.
func cutBatch(pending []*entry, maxEntries, maxBytes int) int {
	n, bytes := 0, 0
	for n < len(pending) && n < maxEntries {
		if n > 0 && bytes+pending[n].size > maxBytes {
			break
		}
		bytes += pending[n].size
		n++
	}
	return n
}

// holdBack fails the pending entries whose ordering key failed, and returns
// the others, and singles (how many of the first entries go one per call)
// less those of them it removed.
func holdBack(pending []*entry, singles int, failed map[string]error, res []adapters.Result) ([]*entry, int) {
	kept := pending[:0]
	left := singles
	for n, e := range pending {
		if cause := failed[e.group]; e.group != "" && cause != nil {
			res[e.index].Err = adapters.HeldBack(ErrEarlierFailed, e.group, cause)
			if n < singles {
				left--
			}
			continue
		}
		kept = append(kept, e)
	}
	return kept, left
}

func failRest(entries []*entry, res []adapters.Result, err error) {
	for _, e := range entries {
		res[e.index].Err = err
	}
}

// queueNameOf checks a queue URL and returns the queue's name, its last
// path segment.
func queueNameOf(queueURL string) (string, error) {
	u, err := url.Parse(queueURL)
	if err != nil {
		return "", fmt.Errorf("sqs: queue URL: %w", err)
	}
	name := u.Path[strings.LastIndex(u.Path, "/")+1:]
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || name == "" {
		return "", fmt.Errorf("sqs: queue URL %q is not of the form https://sqs.<region>.amazonaws.com/<account>/<name>", queueURL)
	}
	return name, nil
}

// regionOf takes the region from an AWS queue URL host
// (sqs.<region>.amazonaws.com, a VPC endpoint's ...sqs.<region>.vpce...,
// or the legacy <region>.queue.amazonaws.com), or returns "".
func regionOf(queueURL string) string {
	u, err := url.Parse(queueURL)
	if err != nil {
		return ""
	}
	labels := strings.Split(u.Hostname(), ".")
	for i, l := range labels {
		switch {
		case l == "sqs" && i+1 < len(labels) && strings.Count(labels[i+1], "-") >= 2:
			return labels[i+1]
		case l == "queue" && i > 0 && strings.Count(labels[i-1], "-") >= 2:
			return labels[i-1]
		}
	}
	if u.Hostname() == "queue.amazonaws.com" {
		return "us-east-1"
	}
	return ""
}

// firstNonEmpty returns the first non-empty string.
func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
