package servicebus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/heraldhq/herald/adapters"
)

// messageBatch is the part of *azservicebus.MessageBatch the Publisher uses.
type messageBatch interface {
	AddMessage(m *azservicebus.Message, options *azservicebus.AddMessageOptions) error
	NumMessages() int32
}

// sender is the part of *azservicebus.Sender the Publisher uses, and the seam
// its tests replace for what the local Service Bus peer cannot produce
// (partitioned entities, hung sends, every error the service may return). The batch type is a
// parameter so that the SDK's Sender satisfies it as it is, while a test
// sender can hand out its own batches (the SDK's cannot be made without a
// live link).
type sender[B messageBatch] interface {
	NewMessageBatch(ctx context.Context, options *azservicebus.MessageBatchOptions) (B, error)
	SendMessageBatch(ctx context.Context, batch B, options *azservicebus.SendMessageBatchOptions) error
	SendMessage(ctx context.Context, message *azservicebus.Message, options *azservicebus.SendMessageOptions) error
	Close(ctx context.Context) error
}

var _ sender[*azservicebus.MessageBatch] = (*azservicebus.Sender)(nil)

// Publisher sends events to one Service Bus queue or topic. It implements
// adapters.Publisher; create it with NewFromConnectionString or
// NewWithCredential.
type Publisher struct {
	core *publisher[*azservicebus.MessageBatch]
	// client is the SDK client the constructor made, for Check; core closes it.
	client *azservicebus.Client
}

var (
	_ adapters.Publisher = (*Publisher)(nil)
	_ adapters.Bounded   = (*Publisher)(nil)
	_ adapters.Limited   = (*Publisher)(nil)
)

// NewFromConnectionString connects with a connection string from a shared
// access policy (it needs the Send claim), such as
// "Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...".
// entity names the queue or topic. The connection is opened, authorised and
// the entity checked before it returns, so a wrong secret or name fails here,
// within ctx.
func NewFromConnectionString(ctx context.Context, connectionString, entity string, opts ...Option) (*Publisher, error) {
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("servicebus: %w", err)
	}
	if connectionString == "" {
		return nil, errors.New("servicebus: connection string is empty")
	}
	if entity == "" {
		return nil, errors.New("servicebus: queue or topic name is required")
	}
	client, err := azservicebus.NewClientFromConnectionString(connectionString, &cfg.clientOptions)
	if err != nil {
		// The SDK's parse errors name the faulty key, never the secret.
		return nil, fmt.Errorf("servicebus: connection string: %w", err)
	}
	return open(ctx, client, endpointOf(connectionString), entity, cfg)
}

// NewWithCredential connects to fullyQualifiedNamespace (such as
// "myns.servicebus.windows.net") with a Microsoft Entra ID credential, which
// needs the Azure Service Bus Data Sender role on the entity or namespace.
// On AKS with workload identity, or anywhere with a managed identity, pass
// azidentity.NewDefaultAzureCredential(nil): it picks the identity up from the
// environment. entity names the queue or topic. As with
// NewFromConnectionString, the connection is opened and checked within ctx.
func NewWithCredential(ctx context.Context, fullyQualifiedNamespace, entity string, cred azcore.TokenCredential, opts ...Option) (*Publisher, error) {
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("servicebus: %w", err)
	}
	if fullyQualifiedNamespace == "" || strings.ContainsAny(fullyQualifiedNamespace, "/:") {
		return nil, fmt.Errorf("servicebus: namespace %q: want a host name such as myns.servicebus.windows.net",
			fullyQualifiedNamespace)
	}
	if entity == "" {
		return nil, errors.New("servicebus: queue or topic name is required")
	}
	if cred == nil {
		return nil, errors.New("servicebus: credential is nil")
	}
	client, err := azservicebus.NewClient(fullyQualifiedNamespace, cred, &cfg.clientOptions)
	if err != nil {
		return nil, fmt.Errorf("servicebus: %w", err)
	}
	return open(ctx, client, fullyQualifiedNamespace, entity, cfg)
}

// open makes the sender, checks it can send and hands the client to the
// Publisher, which closes it.
func open(ctx context.Context, client *azservicebus.Client, namespace, entity string, cfg config) (*Publisher, error) {
	s, err := client.NewSender(entity, nil)
	if err != nil {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		return nil, errors.Join(fmt.Errorf("servicebus: sender for %q: %w", entity, err), client.Close(closeCtx))
	}
	core := newPublisher[*azservicebus.MessageBatch](s, namespace, entity, cfg)
	core.closeClient = client.Close
	if err := core.probe(ctx); err != nil {
		_ = core.Close() // the probe's error is the one worth reporting
		return nil, err
	}
	cfg.logger.Info("servicebus: ready to send", "namespace", namespace, "entity", entity,
		"binding", cfg.binding.String(), "sessions", cfg.sessions, "partitioned", cfg.partitioned)
	return &Publisher{core: core, client: client}, nil
}

// Publish sends msgs to the queue or topic and reports one Result per
// message, in order. Messages go out in batches as large as the entity
// allows, one batch at a time and in the order given, so events sharing a
// partition key are stored in order. A message is reported sent once the
// service has accepted its batch. Service Bus accepts a duplicate (an id
// seen inside the entity's duplicate-detection window) like any message and
// then drops it, so Result.Duplicate is never set.
//
// When a send fails, each of its messages gets the error (marked
// adapters.ErrUnavailable when the fault is the entity's or the way to it),
// and once a message with a partition key has failed, for whatever reason,
// the later messages with that key are held back (ErrEarlierFailed) for the
// relay to decide on. When the failure concerns the whole entity
// (credentials, a missing entity, a lost connection, no answer within
// WithSendTimeout) or ctx ends, the remaining messages fail at once.
// Concurrent calls are safe but run one after the other.
func (p *Publisher) Publish(ctx context.Context, msgs []adapters.Message) []adapters.Result {
	return p.core.Publish(ctx, msgs)
}

// MaxPublishTime implements adapters.Bounded: see publisher.MaxPublishTime.
func (p *Publisher) MaxPublishTime(n int) time.Duration {
	return p.core.MaxPublishTime(n)
}

// MaxMessageBytes implements adapters.Limited: see publisher.MaxMessageBytes.
func (p *Publisher) MaxMessageBytes() int {
	return p.core.MaxMessageBytes()
}

// Close closes the link and the connection. A send in progress is cut short
// and reported as failed with ErrClosed; later Publish calls fail with
// ErrClosed. It is safe to call more than once and from any goroutine.
func (p *Publisher) Close() error {
	return p.core.Close()
}

// publisher is the Publisher's logic over any sender: the SDK's in
// production, a test double in the unit tests.
type publisher[B messageBatch] struct {
	sender    sender[B]
	namespace string // for messages only
	entity    string
	cfg       config
	log       *slog.Logger
	// closeClient closes the SDK client the constructor made, after the
	// sender; nil when there is none.
	closeClient func(context.Context) error

	publishMu sync.Mutex // one Publish at a time keeps batches, and keys, in order

	// sendMu is held around each call into the sender, so that Close,
	// which takes it too, never closes the link under a running send.
	sendMu sync.Mutex
	// lifeMu guards closed and cancelSend. It is never held during a send,
	// so Close can cancel one without waiting for it.
	lifeMu     sync.Mutex
	closed     bool
	cancelSend context.CancelCauseFunc // the running send's, if any
}

func newPublisher[B messageBatch](s sender[B], namespace, entity string, cfg config) *publisher[B] {
	return &publisher[B]{
		sender:    s,
		namespace: namespace,
		entity:    entity,
		cfg:       cfg,
		log:       cfg.logger.With("entity", entity),
	}
}

// probe creates a batch, which makes the SDK open the connection and link:
// that is where credentials and the entity's existence are checked.
func (p *publisher[B]) probe(ctx context.Context) error {
	err := p.call(ctx, "open", func(ctx context.Context) error {
		_, err := p.sender.NewMessageBatch(ctx, p.batchOptions())
		return err
	})
	if err == nil {
		return nil
	}
	where := p.entity
	if p.namespace != "" {
		where = p.namespace + "/" + p.entity
	}
	if h := hint(err, p.entity); h != "" {
		return fmt.Errorf("servicebus: open sender for %s (%s): %w", where, h, err)
	}
	return fmt.Errorf("servicebus: open sender for %s: %w", where, err)
}

func (p *publisher[B]) batchOptions() *azservicebus.MessageBatchOptions {
	if p.cfg.maxBatchBytes == 0 {
		return nil // the limit the service announces on the link
	}
	return &azservicebus.MessageBatchOptions{MaxBytes: p.cfg.maxBatchBytes}
}

// Publish implements adapters.Publisher; see Publisher.Publish.
func (p *publisher[B]) Publish(ctx context.Context, msgs []adapters.Message) []adapters.Result {
	res := make([]adapters.Result, len(msgs))
	if len(msgs) == 0 {
		return res
	}
	if p.isClosed() {
		return adapters.FailAll(len(msgs), ErrClosed)
	}
	p.publishMu.Lock()
	defer p.publishMu.Unlock()
	r := &run[B]{p: p, ctx: ctx, msgs: msgs, res: res, failedKeys: map[string]error{}}
	for _, group := range p.groups(msgs) {
		for _, i := range group {
			r.place(i)
		}
		r.flush()
	}
	return res
}

// MaxPublishTime bounds a Publish of n messages. Calls into the SDK go one
// at a time, each cut off after WithSendTimeout. A message costs at most two:
// the one that opens the batch it is added to (or that it is measured
// against, when it must go alone) and the one that sends that batch (or it
// alone). The sizes decide how many share a batch, and n alone does not say,
// so 2n calls is the bound, plus a little slack.
func (p *publisher[B]) MaxPublishTime(n int) time.Duration {
	return time.Duration(2*max(n, 1))*p.cfg.sendTimeout + adapters.BoundSlack
}

// MaxMessageBytes is the entity's maximum message size (WithMaxMessageSize)
// less EnvelopeAllowance.
func (p *publisher[B]) MaxMessageBytes() int { return PayloadLimit(p.cfg.maxMessage) }

// groups splits msgs (as indexes, each group in publish order) into the sets
// that may share a batch: all of them, or on a partitioned entity those with
// the same partition. Order only matters within a partition key, and a key
// never spans two groups, so sending group after group keeps it.
func (p *publisher[B]) groups(msgs []adapters.Message) [][]int {
	if !p.cfg.partitioned {
		all := make([]int, len(msgs))
		for i := range all {
			all[i] = i
		}
		return [][]int{all}
	}
	var groups [][]int
	slot := map[string]int{} // partition -> index in groups
	for i, m := range msgs {
		key := p.cfg.partitionOf(m)
		g, ok := slot[key]
		if !ok {
			g = len(groups)
			slot[key] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// call runs one call into the sender, unless the Publisher is closed, with a
// context that Close cancels.
func (p *publisher[B]) call(ctx context.Context, what string, f func(context.Context) error) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p.lifeMu.Lock()
	if p.closed {
		p.lifeMu.Unlock()
		return ErrClosed
	}
	p.cancelSend = cancel
	p.lifeMu.Unlock()

	err := f(ctx)

	p.lifeMu.Lock()
	p.cancelSend = nil
	p.lifeMu.Unlock()
	if err != nil && errors.Is(context.Cause(ctx), ErrClosed) {
		return fmt.Errorf("%w: %s cut short: %w", ErrClosed, what, err)
	}
	return err
}

func (p *publisher[B]) isClosed() bool {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	return p.closed
}

// Close implements adapters.Publisher; see Publisher.Close.
func (p *publisher[B]) Close() error {
	p.lifeMu.Lock()
	if p.closed {
		p.lifeMu.Unlock()
		return nil
	}
	p.closed = true
	if p.cancelSend != nil {
		p.cancelSend(ErrClosed)
	}
	p.lifeMu.Unlock()

	// Wait for the send just cancelled to return before closing under it.
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := p.sender.Close(ctx)
	if p.closeClient != nil {
		err = errors.Join(err, p.closeClient(ctx))
	}
	if err != nil {
		return fmt.Errorf("servicebus: close %s: %w", p.entity, err)
	}
	return nil
}

// run is the state of one Publish call: the batch being filled and what has
// failed so far.
type run[B messageBatch] struct {
	p    *publisher[B]
	ctx  context.Context
	msgs []adapters.Message
	res  []adapters.Result

	// failedKeys maps a partition key to the first failure of a message
	// with that key, permanent ones included; later messages with it are
	// held back.
	failedKeys map[string]error
	// abort, once set, fails every message not yet sent.
	abort error

	batch   B
	open    bool  // batch has been created
	batched []int // indexes of the messages in batch
}

// place maps message i and adds it to the current batch, sending the batch
// first when it is full.
func (r *run[B]) place(i int) {
	if err := r.blocked(i); err != nil {
		r.res[i].Err = err
		return
	}
	msg, err := r.p.cfg.toMessage(r.msgs[i])
	if err != nil {
		// Permanent: the same event would fail the same way again.
		r.failOne(i, err)
		return
	}
	r.add(i, msg)
}

func (r *run[B]) add(i int, msg *azservicebus.Message) {
	if !r.open {
		var b B
		err := r.call("create batch", func(ctx context.Context) (err error) {
			b, err = r.p.sender.NewMessageBatch(ctx, r.p.batchOptions())
			return err
		})
		if err != nil {
			r.fail([]int{i}, err)
			return
		}
		r.batch, r.open = b, true
	}
	err := r.batch.AddMessage(msg, nil)
	switch {
	case err == nil:
		r.batched = append(r.batched, i)
	case !errors.Is(err, azservicebus.ErrMessageTooLarge):
		// Encoding the message failed; it would fail the same way again.
		r.failOne(i, adapters.Permanent(fmt.Errorf("servicebus: encode event %s: %w", r.msgs[i].ID, err)))
	case len(r.batched) > 0:
		// The batch is full: send it and start the next with this message,
		// unless the send just failed for this message's key.
		r.flush()
		if err := r.blocked(i); err != nil {
			r.res[i].Err = err
			return
		}
		r.add(i, msg)
	default:
		// Too large even for an empty batch. A Premium entity may take
		// messages larger than its batch limit, so try it on its own.
		r.sendAlone(i, msg)
	}
}

// flush sends the current batch, if it holds anything.
func (r *run[B]) flush() {
	batch, indexes := r.batch, r.batched
	var zero B
	r.batch, r.open, r.batched = zero, false, nil
	if len(indexes) == 0 {
		return
	}
	err := r.call("send batch", func(ctx context.Context) error {
		return r.p.sender.SendMessageBatch(ctx, batch, nil)
	})
	if err != nil {
		r.fail(indexes, err)
	}
}

func (r *run[B]) sendAlone(i int, msg *azservicebus.Message) {
	err := r.call("send", func(ctx context.Context) error {
		return r.p.sender.SendMessage(ctx, msg, nil)
	})
	if err != nil {
		r.fail([]int{i}, err)
	}
}

// call runs one call into the sender for this Publish, cut off after
// WithSendTimeout. A call cut off by that timeout, rather than by the
// caller's context or Close, fails with ErrSendTimeout, which does not wrap
// context.DeadlineExceeded: the caller's deadline did not pass.
func (r *run[B]) call(what string, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.p.cfg.sendTimeout)
	defer cancel()
	err := r.p.call(ctx, what, f)
	if err == nil || errors.Is(err, ErrClosed) || r.ctx.Err() != nil || ctx.Err() == nil {
		return err
	}
	//nolint:errorlint // deliberately not wrapping the SDK's context.DeadlineExceeded
	return fmt.Errorf("%w: %s after %s (WithSendTimeout): %v", ErrSendTimeout, what, r.p.cfg.sendTimeout, err)
}

// blocked returns why message i must not be sent now, or nil.
func (r *run[B]) blocked(i int) error {
	if err := r.ctx.Err(); err != nil {
		return fmt.Errorf("servicebus: not sent: %w", err)
	}
	if r.abort != nil {
		return fmt.Errorf("servicebus: not sent after an earlier send failed: %w", r.abort)
	}
	if key := r.msgs[i].PartitionKey; key != "" {
		if cause := r.failedKeys[key]; cause != nil {
			return adapters.HeldBack(ErrEarlierFailed, key, cause)
		}
	}
	return nil
}

// failOne records the failure of message i, which holds back the later
// messages of its key.
func (r *run[B]) failOne(i int, err error) {
	r.res[i].Err = err
	if key := r.msgs[i].PartitionKey; key != "" && r.failedKeys[key] == nil {
		r.failedKeys[key] = err
	}
}

// fail records a failed send of the messages at indexes.
func (r *run[B]) fail(indexes []int, err error) {
	if len(indexes) == 1 && isTooLarge(err) {
		// Refused for its size on its own: no retry can change that.
		m := r.msgs[indexes[0]]
		r.failOne(indexes[0], adapters.Permanent(fmt.Errorf(
			"%w: event %s (%d-byte payload) exceeds what %q accepts: Service Bus takes at most 256 KB "+
				"per message on Standard, 1 MB on Premium unless the entity's maximum is raised (up to 100 MB): %w",
			ErrTooLarge, m.ID, len(m.Payload), r.p.entity, err)))
		return
	}
	unavailable := destinationWide(err) && r.ctx.Err() == nil
	err = r.describe(len(indexes), err)
	if unavailable {
		err = adapters.Unavailable(err)
	}
	for _, i := range indexes {
		r.failOne(i, err)
	}
	if affectsEntity(err) || r.ctx.Err() != nil {
		r.abort = err
	}
	r.logFailure(len(indexes), err)
}

// describe adds what was being done to a send error, and the caller's
// context error when that ended the send: the SDK's *Error does not wrap it.
func (r *run[B]) describe(n int, err error) error {
	what := fmt.Sprintf("servicebus: send %d message(s) to %q", n, r.p.entity)
	if h := hint(err, r.p.entity); h != "" {
		what += " (" + h + ")"
	}
	if ctxErr := r.ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%s: %w: %w", what, ctxErr, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (r *run[B]) logFailure(n int, err error) {
	switch {
	case errors.Is(err, ErrClosed) || r.ctx.Err() != nil:
		// Shutdown or the caller giving up: not a broker problem.
		r.p.log.Debug("servicebus: send stopped", "messages", n, "error", err)
	case needsOperator(err):
		r.p.log.Error("servicebus: send refused; retrying will not help until this is fixed",
			"messages", n, "error", err)
	default:
		r.p.log.Warn("servicebus: send failed; the relay will retry", "messages", n, "error", err)
	}
}

// endpointOf returns the host named by a connection string's Endpoint key,
// for messages; the rest of the string holds the secret.
func endpointOf(connectionString string) string {
	for part := range strings.SplitSeq(connectionString, ";") {
		key, value, ok := strings.Cut(part, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(key), "Endpoint") {
			continue
		}
		value = strings.TrimSpace(value)
		value = strings.TrimPrefix(value, "sb://")
		return strings.TrimSuffix(value, "/")
	}
	return ""
}
