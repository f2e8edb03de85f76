package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/internal/redact"
)

// ContentType is the Content-Type header of every message published with
// the Structured binding: the body is a CloudEvent in the JSON format.
const ContentType = "application/cloudevents+json"

// defaultDialTimeout is natsgo's own dial timeout, kept unless the context
// passed to Connect expires sooner.
const defaultDialTimeout = 2 * time.Second

// Publisher publishes to one JetStream stream. It implements
// adapters.Publisher; create it with Connect or New.
type Publisher struct {
	nc        *natsgo.Conn
	ownsConn  bool
	js        jetstream.JetStream
	cfg       config
	subject   subjectTemplate
	pubOpts   []jetstream.PublishOpt
	log       *slog.Logger
	publishMu sync.Mutex // serialises Publish calls: one ack window at a time keeps per-key order

	// lifeMu guards closed and is held around each single send, so Close
	// never races a send (which would re-create the reply subscription Close
	// just removed) yet never waits for a batch's acks.
	lifeMu sync.Mutex
	closed bool
	done   chan struct{} // closed by Close; wakes Publish calls waiting for acks
	// connClosed is closed by nats.go's ClosedHandler on an owned connection.
	// Its callbacks run on a goroutine of nats.go's; callbacks run in order,
	// so once this fires none of ours (they log) can run after Close returns.
	connClosed chan struct{}
}

var (
	_ adapters.Publisher = (*Publisher)(nil)
	_ adapters.Bounded   = (*Publisher)(nil)
	_ adapters.Limited   = (*Publisher)(nil)
)

// Connect dials the NATS server(s) at urls (comma separated, nats:// or
// tls://), provisions or checks the stream and returns a Publisher that owns
// the connection: Close closes it. Credentials and TLS come from options
// (WithCredsFile, WithNKeySeedFile, WithToken, WithUserPassword, WithTLS).
//
// The connection is set up so that a dead server fails each Publish at once
// instead of buffering events in memory: no reconnect buffer, and reconnect
// attempts go on forever in the background. The first connection is not
// retried; an unreachable server is an error naming the url.
func Connect(ctx context.Context, urls string, opts ...Option) (*Publisher, error) {
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	nc, connClosed, err := dial(ctx, urls, cfg)
	if err != nil {
		return nil, err
	}
	p, err := newPublisher(ctx, nc, true, cfg)
	if err != nil {
		nc.Close()
		<-connClosed
		return nil, err
	}
	p.connClosed = connClosed
	return p, nil
}

// MaxMessageBytesAt is the MaxMessageBytes a Publisher connected with opts
// would report at urls, for a process that writes events without
// publishing them: it connects as Connect does (credentials, TLS), reads the
// server's max_payload and closes the connection. It touches no stream.
func MaxMessageBytesAt(ctx context.Context, urls string, opts ...Option) (int, error) {
	cfg, err := buildConfig(opts)
	if err != nil {
		return 0, fmt.Errorf("nats: %w", err)
	}
	nc, connClosed, err := dial(ctx, urls, cfg)
	if err != nil {
		return 0, err
	}
	defer func() { nc.Close(); <-connClosed }()
	return PayloadLimit(nc.MaxPayload(), cfg.binding), nil
}

// dial opens the connection Connect and MaxMessageBytesAt use; the channel
// is closed once the connection is.
func dial(ctx context.Context, urls string, cfg config) (*natsgo.Conn, chan struct{}, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("nats: connect %s: %w", redact.URLs(urls), err)
	}
	log := cfg.logger
	dialTimeout := defaultDialTimeout
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < dialTimeout {
		dialTimeout = max(time.Until(deadline), time.Millisecond)
	}
	connClosed := make(chan struct{})
	connOpts := []natsgo.Option{
		natsgo.Name("herald"),
		natsgo.Timeout(dialTimeout),
		natsgo.DisconnectErrHandler(func(nc *natsgo.Conn, err error) {
			if nc.IsClosed() {
				return // Close, not a lost server: nothing to warn about
			}
			log.Warn("nats: disconnected, reconnecting in the background", "err", err)
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			log.Info("nats: reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
			log.Warn("nats: async error", "err", err)
		}),
	}
	connOpts = append(connOpts, cfg.connectOptions...)
	connOpts = append(connOpts,
		// Close waits for this; a caller's ClosedHandler must not replace it.
		natsgo.ClosedHandler(func(*natsgo.Conn) { close(connClosed) }),
		natsgo.ReconnectBufSize(-1),
		natsgo.MaxReconnects(-1),
		natsgo.RetryOnFailedConnect(false),
	)
	nc, err := natsgo.Connect(urls, connOpts...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats: connect %s: %w", redact.URLs(urls), err)
	}
	return nc, connClosed, nil
}

// New returns a Publisher on a connection the caller owns: Close leaves it
// open. Options that configure a connection (credentials, TLS,
// WithConnectOptions) belong on that connection; New refuses them rather
// than ignore them. For a dead server to fail each Publish fast, the
// connection should have been made with natsgo.ReconnectBufSize(-1); New
// logs a warning when it was not.
func New(ctx context.Context, nc *natsgo.Conn, opts ...Option) (*Publisher, error) {
	if nc == nil {
		return nil, errors.New("nats: New: connection is nil")
	}
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	if len(cfg.connectOnly) > 0 {
		return nil, fmt.Errorf("nats: New: %s: %w", strings.Join(cfg.connectOnly, ", "), errConnectOnly)
	}
	if nc.Opts.ReconnectBufSize >= 0 {
		cfg.logger.Warn("nats: connection buffers publishes while reconnecting; events may wait for the ack timeout instead of failing fast",
			"hint", "connect with natsgo.ReconnectBufSize(-1)")
	}
	return newPublisher(ctx, nc, false, cfg)
}

func newPublisher(ctx context.Context, nc *natsgo.Conn, owns bool, cfg config) (*Publisher, error) {
	tmpl, err := parseSubjectTemplate(cfg.subjectTemplate)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.maxPendingAcks),
		jetstream.WithPublishAsyncTimeout(cfg.ackTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	p := &Publisher{
		nc:       nc,
		ownsConn: owns,
		js:       js,
		cfg:      cfg,
		subject:  tmpl,
		log:      cfg.logger,
		done:     make(chan struct{}),
		pubOpts: []jetstream.PublishOpt{
			// The library's own retry on "no responders" re-sends a message
			// later from a timer, behind messages sent after it: that would
			// break per-key order. The relay retries instead.
			jetstream.WithRetryAttempts(0),
			// Publish keeps its own window under the max-pending bound, so a
			// stall only happens behind acks abandoned by an earlier,
			// cancelled Publish; wait those out rather than fail.
			jetstream.WithStallWait(cfg.ackTimeout),
		},
	}
	subjects, err := p.ensureStream(ctx)
	if err != nil {
		return nil, err
	}
	sample, _ := tmpl.expand("x", "x")
	if !slices.ContainsFunc(subjects, func(f string) bool { return subjectMatches(f, sample) }) {
		return nil, fmt.Errorf("nats: subject template %q (e.g. %q) is not captured by stream %q subjects %q",
			cfg.subjectTemplate, sample, cfg.streamName, subjects)
	}
	return p, nil
}

// ensureStream creates or updates the stream, or checks that it exists, and
// returns the subjects it captures.
func (p *Publisher) ensureStream(ctx context.Context) ([]string, error) {
	name := p.cfg.streamName
	stream, err := p.js.Stream(ctx, name)
	if !p.cfg.provision {
		if err != nil {
			return nil, fmt.Errorf("nats: stream %q (provisioning is off, it must exist): %w", name, err)
		}
		return stream.CachedInfo().Config.Subjects, nil
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = p.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       name,
			Subjects:   p.cfg.streamSubjects,
			Storage:    jetstream.FileStorage,
			Duplicates: p.cfg.duplicateWindow,
		})
		if err == nil {
			p.log.Info("nats: created stream", "stream", name, "subjects", p.cfg.streamSubjects,
				"duplicate_window", p.cfg.duplicateWindow)
			return p.cfg.streamSubjects, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("nats: create stream %q: %w", name, err)
		}
		// Another relay created it between our lookup and create: update
		// theirs like any existing stream.
		stream, err = p.js.Stream(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("nats: look up stream %q: %w", name, err)
	}
	// Update from the stream's own config so that settings an operator
	// chose (retention, max age, replicas) survive a relay restart.
	cur := stream.CachedInfo().Config
	if cur.Storage != jetstream.FileStorage {
		p.log.Warn("nats: stream is not file-backed; a server restart loses events", "stream", name)
	}
	if slices.Equal(cur.Subjects, p.cfg.streamSubjects) && cur.Duplicates == p.cfg.duplicateWindow {
		return cur.Subjects, nil
	}
	want := cur
	want.Subjects = p.cfg.streamSubjects
	want.Duplicates = p.cfg.duplicateWindow
	if _, err := p.js.UpdateStream(ctx, want); err != nil {
		return nil, fmt.Errorf("nats: update stream %q: %w", name, err)
	}
	p.log.Info("nats: updated stream", "stream", name, "subjects", want.Subjects,
		"duplicate_window", want.Duplicates)
	return want.Subjects, nil
}

// inflight is a sent message whose ack has not been collected yet.
type inflight struct {
	index  int
	future jetstream.PubAckFuture
}

// Publish sends msgs to the stream and reports one Result per message, in
// order. Messages are published asynchronously on one connection, which
// keeps their order in the stream, with at most WithMaxPendingAcks awaiting
// an ack at a time. When ctx ends, messages not yet acknowledged get ctx's
// error. Once a message with a partition key has failed, for whatever
// reason, the later messages with that key are held back (ErrEarlierFailed);
// those already sent when its failure came back cannot be (see the package
// doc). Concurrent calls are safe but run one after the other.
func (p *Publisher) Publish(ctx context.Context, msgs []adapters.Message) []adapters.Result {
	res := make([]adapters.Result, len(msgs))
	if len(msgs) == 0 {
		return res
	}
	if err := p.connErr(); err != nil {
		return adapters.FailAll(len(msgs), markUnavailable(err))
	}
	p.publishMu.Lock()
	defer p.publishMu.Unlock()

	maxPayload := p.nc.MaxPayload()
	// failed maps a partition key to the failure of its earliest failed
	// message, which holds back the later ones. An ack can come back after
	// a later message of the key failed to be sent.
	type failure struct {
		index int
		err   error
	}
	failed := map[string]failure{}
	subjects := make([]string, len(msgs))
	uncaptured := p.uncapturedBy(ctx)
	fail := func(i int, err error) {
		if noResponders(err) && subjects[i] != "" && uncaptured(subjects[i]) {
			// The stream is there and takes other subjects: the event's
			// type is the fault, and it spends its attempts.
			err = fmt.Errorf("publish %s: %w (stream %q)", subjects[i], ErrNotCaptured, p.cfg.streamName)
		}
		res[i].Err = err
		key := msgs[i].PartitionKey
		if f, ok := failed[key]; key != "" && (!ok || i < f.index) {
			failed[key] = failure{index: i, err: err}
		}
	}
	window := make([]inflight, 0, min(len(msgs), p.cfg.maxPendingAcks))
	head := 0 // window[head:] is still awaiting its acks
	collect := func() {
		w := window[head]
		head++
		key := msgs[w.index].PartitionKey
		if p.await(ctx, w.future, &res[w.index]) {
			fail(w.index, res[w.index].Err)
		} else if f, ok := failed[key]; ok && f.index < w.index && !stopped(f.err) {
			// Sent before its predecessor's failure came back. (A
			// predecessor given up on for ctx or Close may be stored too.)
			p.log.Warn("nats: the stream stored a message after an earlier one of its partition key failed; "+
				"their order is broken", "partition_key", key, "subject", w.future.Msg().Subject)
		}
	}
	heldBackErr := func(m adapters.Message) error {
		if f, ok := failed[m.PartitionKey]; ok && m.PartitionKey != "" {
			return adapters.HeldBack(ErrEarlierFailed, m.PartitionKey, f.err)
		}
		return nil
	}

	for i, m := range msgs {
		if err := heldBackErr(m); err != nil {
			res[i].Err = err
			continue
		}
		nm, err := p.prepare(m, maxPayload)
		if err != nil {
			fail(i, err)
			continue
		}
		subjects[i] = nm.Subject
		for len(window)-head >= p.cfg.maxPendingAcks {
			collect()
		}
		// Collecting may just have failed this message's key.
		if err := heldBackErr(m); err != nil {
			res[i].Err = err
			continue
		}
		if err := ctx.Err(); err != nil {
			fail(i, fmt.Errorf("publish %s: %w", nm.Subject, err))
			continue
		}
		future, err := p.send(nm)
		if err != nil {
			fail(i, err)
			continue
		}
		window = append(window, inflight{index: i, future: future})
	}
	for head < len(window) {
		collect()
	}
	return res
}

// uncapturedBy returns a func that tells whether the stream exists and does
// not capture a subject, looking the stream up at most once per Publish, and only when a
// publish met no responders: that is either the stream gone (the
// destination's fault) or a subject it does not take (the event's).
func (p *Publisher) uncapturedBy(ctx context.Context) func(subject string) bool {
	var (
		looked  bool
		filters []string
	)
	return func(subject string) bool {
		if !looked {
			looked = true
			lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if st, err := p.js.Stream(lctx, p.cfg.streamName); err == nil {
				filters = st.CachedInfo().Config.Subjects
			}
		}
		// Gone, unknown, or captured: not the subject's fault.
		return filters != nil && !slices.ContainsFunc(filters, func(f string) bool { return subjectMatches(f, subject) })
	}
}

// MaxPublishTime implements adapters.Bounded. Publish keeps at most
// WithMaxPendingAcks messages awaiting their ack, and gives up on each ack
// WithAckTimeout after sending it, so the window turns over at least once
// per ack timeout: n messages take at most ceil(n / max pending) ack
// timeouts. One more covers a first send stalled behind acks that an
// earlier, cut-off Publish abandoned, which expire within an ack timeout;
// sends themselves never wait, since the connection buffers nothing while
// reconnecting.
func (p *Publisher) MaxPublishTime(n int) time.Duration {
	windows := (max(n, 1) + p.cfg.maxPendingAcks - 1) / p.cfg.maxPendingAcks
	return time.Duration(windows+1)*p.cfg.ackTimeout + adapters.BoundSlack
}

// stopped reports whether err is the caller or Close ending the wait rather
// than an outcome of the message.
func stopped(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrClosed)
}

// send publishes one message unless the Publisher has been closed.
func (p *Publisher) send(nm *natsgo.Msg) (jetstream.PubAckFuture, error) {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	future, err := p.js.PublishMsgAsync(nm, p.pubOpts...)
	if err != nil {
		return nil, markUnavailable(fmt.Errorf("publish %s: %w", nm.Subject, err))
	}
	return future, nil
}

// await fills r from the message's ack, or from ctx or Close ending the wait
// first, and reports whether the message failed.
func (p *Publisher) await(ctx context.Context, f jetstream.PubAckFuture, r *adapters.Result) bool {
	subject := f.Msg().Subject
	// An outcome that has already arrived wins over a cancelled context:
	// reporting a stored message as failed only costs a duplicate, but
	// there is no reason to.
	select {
	case ack := <-f.Ok():
		r.Duplicate = ack.Duplicate
		return false
	case err := <-f.Err():
		r.Err = ackError(subject, err)
		return true
	default:
	}
	select {
	case ack := <-f.Ok():
		r.Duplicate = ack.Duplicate
		return false
	case err := <-f.Err():
		r.Err = ackError(subject, err)
	case <-ctx.Done():
		r.Err = fmt.Errorf("publish %s: awaiting ack: %w", subject, ctx.Err())
	case <-p.done:
		r.Err = fmt.Errorf("publish %s: awaiting ack: %w", subject, ErrClosed)
	}
	return true
}

// ackError wraps a failed ack, marking the server's size rejection (a stream
// max_msg_size below max_payload) as permanent and a fault of the stream or
// connection as a whole (no responders, no ack in time, a full stream) as
// adapters.ErrUnavailable.
func ackError(subject string, err error) error {
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) || (errors.As(err, &apiErr) && storeRefusedSize(apiErr)) {
		return adapters.Permanent(fmt.Errorf("publish %s: %w: %w", subject, ErrTooLarge, err))
	}
	return markUnavailable(fmt.Errorf("publish %s: %w", subject, err))
}

// prepare builds the wire message, refusing what the server could never
// accept; every error it returns is permanent.
func (p *Publisher) prepare(m adapters.Message, maxPayload int64) (*natsgo.Msg, error) {
	if err := checkID(m.ID); err != nil {
		return nil, adapters.Permanent(err)
	}
	subject, err := p.subject.expand(m.Type, m.PartitionKey)
	if err != nil {
		return nil, adapters.Permanent(fmt.Errorf("event type %q, partition key %q: %w", m.Type, m.PartitionKey, err))
	}
	nm, err := newMessage(p.cfg.binding, subject, m.ID, m.TraceParent, m.Payload)
	if err != nil {
		return nil, adapters.Permanent(fmt.Errorf("event %s: %w", m.ID, err))
	}
	// The server's max_payload counts headers and body together.
	if size := int64(nm.Size() - len(nm.Subject)); size > maxPayload {
		return nil, adapters.Permanent(fmt.Errorf("%w: %d bytes with headers, server max_payload is %d bytes",
			ErrTooLarge, size, maxPayload))
	}
	return nm, nil
}

// DefaultMaxPayload is nats-server's default max_payload, which the
// embedded server keeps: the limit to assume for a server that cannot be
// asked.
const DefaultMaxPayload = 1 << 20

// Stand-ins for the header values of the largest size: an event id is a
// canonical UUID (event.Validate) and a W3C traceparent has a fixed length.
const (
	sampleID          = "00000000-0000-0000-0000-000000000000"
	sampleTraceParent = "00-00000000000000000000000000000000-0000000000000000-00"
)

// binaryHeaderAllowance is what the Binary binding adds on top of the
// Structured one's headers: each attribute moves from the JSON body into a
// "ce-" header, a few bytes longer, and a value with characters outside
// printable ASCII is percent-encoded. Herald's attributes (ids, types, URIs,
// times) are ASCII, so this is ample.
const binaryHeaderAllowance = 512

// MaxMessageBytes implements adapters.Limited: the server's max_payload,
// which counts headers and body together, less the headers each message
// carries (see [PayloadLimit]). It reads max_payload from the connection
// each time, since a reconnect may reach a server with another.
func (p *Publisher) MaxMessageBytes() int {
	return PayloadLimit(p.nc.MaxPayload(), p.cfg.binding)
}

// PayloadLimit is the largest stored event a server with maxPayload takes in
// the binding b: maxPayload less the headers the Publisher adds (Nats-Msg-Id,
// Content-Type, traceparent), and in the Binary binding an allowance for
// the attributes' headers. It is never below zero.
func PayloadLimit(maxPayload int64, b Binding) int {
	nm, _ := newMessage(Structured, "", sampleID, sampleTraceParent, nil) // Structured never fails
	overhead := int64(nm.Size())
	if b == Binary {
		overhead += binaryHeaderAllowance
	}
	return int(max(maxPayload-overhead, 0))
}

// checkID refuses ids the header encoding would alter (trimmed or with line
// breaks replaced), since an altered id defeats duplicate detection.
func checkID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidID)
	case strings.ContainsAny(id, "\r\n"):
		return fmt.Errorf("%w: %q contains a line break", ErrInvalidID, id)
	case strings.TrimSpace(id) != id:
		return fmt.Errorf("%w: %q has leading or trailing space", ErrInvalidID, id)
	}
	return nil
}

// connErr fails a whole batch up front when the connection cannot carry it,
// instead of discovering that message by message.
func (p *Publisher) connErr() error {
	p.lifeMu.Lock()
	closed := p.closed
	p.lifeMu.Unlock()
	if closed {
		return ErrClosed
	}
	switch st := p.nc.Status(); st {
	case natsgo.CONNECTED:
		return nil
	case natsgo.CLOSED:
		return fmt.Errorf("publish: %w", natsgo.ErrConnectionClosed)
	case natsgo.RECONNECTING:
		return fmt.Errorf("publish: %w", natsgo.ErrConnectionReconnecting)
	default:
		return fmt.Errorf("publish: connection %s: %w", st, natsgo.ErrDisconnected)
	}
}

// Close stops the Publisher: later Publish calls fail with ErrClosed, and a
// Publish still waiting for acks returns at once with ErrClosed for them.
// Close closes the connection only if Connect made it. It is safe to call
// more than once and from any goroutine.
func (p *Publisher) Close() error {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	close(p.done)
	// Drops the reply subscription, which on a caller-owned connection
	// would otherwise outlive the Publisher.
	p.js.CleanupPublisher()
	if p.ownsConn {
		p.nc.Close()
		<-p.connClosed
	}
	return nil
}

// redactURLs hides credentials in a comma-separated url list for errors.
