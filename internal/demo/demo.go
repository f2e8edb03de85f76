// Package demo runs Herald's whole data path on one machine with nothing
// installed: the portal's sample audit records go through the enricher into
// an SQLite outbox, the relay publishes them to an in-process JetStream
// server, and a consumer reads them back and prints them.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
)

// Options configure a demo run.
type Options struct {
	// Dir holds the SQLite file and JetStream's storage. Empty: a temporary
	// directory, removed afterwards.
	Dir string
	// Out receives the consumer's lines and the summary.
	Out io.Writer
	// Logger receives Herald's own logs; the CLI keeps them at warn level so
	// the consumer's lines stay readable.
	Logger *slog.Logger
	// Wait bounds how long the demo waits for every event to arrive.
	Wait time.Duration
}

// Summary is what the demo counted.
type Summary struct {
	AuditRecords int
	Written      int
	Unmapped     map[string]int // action name → records the enricher has no rule for
	NoEvent      int            // records handled that yield no event on purpose (ignored actions, pending approvals)
	Published    int64
	Consumed     int
	Duplicates   int
	Lost         int // written but never consumed; must be 0
	Altered      int // consumed bytes differ from the bytes written; must be 0
	Wall         time.Duration
}

// ErrLost is returned when an event written to the outbox never arrived.
var ErrLost = errors.New("events lost")

// Run executes the demo and prints as it goes.
func Run(ctx context.Context, opts Options) (Summary, error) {
	start := time.Now()
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	if opts.Wait <= 0 {
		opts.Wait = 30 * time.Second
	}
	dir := opts.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "herald-demo-")
		if err != nil {
			return Summary{}, fmt.Errorf("demo dir: %w", err)
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		dir = tmp
	}

	cfg := config.Default()
	cfg.Database.DSN = filepath.Join(dir, "outbox.db")
	cfg.NATS.EmbeddedStoreDir = filepath.Join(dir, "jetstream")
	cfg.Relay.PollInterval = 100 * time.Millisecond
	a, err := app.Open(ctx, cfg, app.Options{Migrate: true, Logger: opts.Logger})
	if err != nil {
		return Summary{}, err
	}
	defer func() { _ = a.Close() }()
	fmt.Fprintf(out, "Herald demo\n  outbox:  SQLite %s\n  broker:  in-process NATS JetStream %s, stream %s\n",
		cfg.Database.DSN, a.BrokerURL, cfg.NATS.Stream)

	if err := portalsample.Load(ctx, a.DB); err != nil {
		return Summary{}, fmt.Errorf("load portal sample: %w", err)
	}
	records, err := portalsample.AuditRecords(ctx, a.DB)
	if err != nil {
		return Summary{}, err
	}
	fmt.Fprintf(out, "  source:  the portal sample, %d audit records, each fed to enricher.Record in its own transaction\n\n", len(records))

	c, err := startConsumer(ctx, a.BrokerURL, cfg.NATS.Stream, out)
	if err != nil {
		return Summary{}, err
	}
	defer c.stop()

	relayCtx, stopRelay := context.WithCancel(ctx)
	var relayWG sync.WaitGroup
	var relayErr error
	relayWG.Go(func() { relayErr = a.Run(relayCtx) })
	defer func() { stopRelay(); relayWG.Wait() }()

	sum := Summary{AuditRecords: len(records), Unmapped: map[string]int{}}
	written := map[string][]byte{}
	enr := enricher.New(enricher.WithLogger(opts.Logger))
	for _, rec := range records {
		var evs []event.Event
		err := a.DB.Transaction(func(tx *gorm.DB) error {
			var err error
			evs, err = enr.Record(ctx, tx, rec)
			return err
		})
		switch {
		case errors.Is(err, enricher.ErrUnmapped):
			sum.Unmapped[rec.Name]++
			continue
		case err != nil:
			return sum, fmt.Errorf("audit record %s: %w", rec.ID, err)
		case len(evs) == 0:
			sum.NoEvent++
		}
		for _, ev := range evs {
			b, err := ev.MarshalJSON()
			if err != nil {
				return sum, err
			}
			written[ev.ID] = b
		}
		a.Notify()
	}
	sum.Written = len(written)

	c.waitFor(ctx, written, opts.Wait)
	stopRelay()
	relayWG.Wait()
	c.stop()
	if relayErr != nil {
		return sum, fmt.Errorf("relay: %w", relayErr)
	}

	sum.Published = a.Relay.Stats().Published
	sum.Consumed, sum.Duplicates = c.counts()
	for id, b := range written {
		got, ok := c.payload(id)
		switch {
		case !ok:
			sum.Lost++
		case !bytes.Equal(got, b):
			sum.Altered++
		}
	}
	sum.Wall = time.Since(start)
	printSummary(out, sum)
	if sum.Lost > 0 || sum.Altered > 0 {
		return sum, fmt.Errorf("%w: %d lost, %d altered", ErrLost, sum.Lost, sum.Altered)
	}
	return sum, nil
}

func printSummary(out io.Writer, s Summary) {
	unmapped := 0
	var names []string
	for name, n := range s.Unmapped {
		unmapped += n
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(out, "\nSummary\n")
	fmt.Fprintf(out, "  audit records read   %d\n", s.AuditRecords)
	fmt.Fprintf(out, "  events written       %d\n", s.Written)
	if s.NoEvent > 0 {
		fmt.Fprintf(out, "  no event (on purpose) %d\n", s.NoEvent)
	}
	if unmapped > 0 {
		fmt.Fprintf(out, "  no rule (unmapped)   %d  (%s)\n", unmapped, strings.Join(names, ", "))
	}
	fmt.Fprintf(out, "  published            %d\n", s.Published)
	fmt.Fprintf(out, "  consumed             %d\n", s.Consumed)
	fmt.Fprintf(out, "  duplicates           %d\n", s.Duplicates)
	fmt.Fprintf(out, "  lost                 %d\n", s.Lost)
	if s.Altered > 0 {
		fmt.Fprintf(out, "  altered bytes        %d\n", s.Altered)
	}
	fmt.Fprintf(out, "  wall time            %s\n", s.Wall.Round(time.Millisecond))
}

// consumer reads the stream back the way a customer's client would: a
// durable pull consumer with explicit acks, de-duplicating by event id.
type consumer struct {
	nc   *natsgo.Conn
	iter jetstream.MessagesContext
	wg   sync.WaitGroup
	once sync.Once

	mu       sync.Mutex
	seen     map[string][]byte
	total    int
	arrived  chan struct{} // signalled on every new event
	printOut io.Writer
}

func startConsumer(ctx context.Context, url, stream string, out io.Writer) (*consumer, error) {
	nc, err := natsgo.Connect(url, natsgo.Name("herald-demo-consumer"))
	if err != nil {
		return nil, fmt.Errorf("consumer connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("consumer: %w", err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       "herald-demo",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("create consumer on stream %s: %w", stream, err)
	}
	iter, err := cons.Messages()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("consume: %w", err)
	}
	c := &consumer{nc: nc, iter: iter, seen: map[string][]byte{}, arrived: make(chan struct{}, 1), printOut: out}
	c.wg.Go(c.loop)
	return c, nil
}

func (c *consumer) loop() {
	for {
		msg, err := c.iter.Next()
		if err != nil {
			return // iterator stopped
		}
		c.handle(msg)
		_ = msg.Ack()
	}
}

func (c *consumer) handle(msg jetstream.Msg) {
	ev, err := event.Parse(msg.Data())
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		// A real consumer would park it for a human; the demo just says so.
		fmt.Fprintf(c.printOut, "  ! unreadable message on %s: %v\n", msg.Subject(), err)
		return
	}
	c.total++
	if _, dup := c.seen[ev.ID]; dup {
		fmt.Fprintf(c.printOut, "  = duplicate %s (ignored: already processed)\n", ev.ID)
		return
	}
	c.seen[ev.ID] = append([]byte(nil), msg.Data()...)
	fmt.Fprintf(c.printOut, "  ← %-45s %-50s %s\n", ev.Type, ev.Subject, describe(ev))
	select {
	case c.arrived <- struct{}{}:
	default:
	}
}

// describe picks the human part of an event's data for the demo's line.
func describe(ev event.Event) string {
	type named struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	var d struct {
		Name           string `json:"name"`
		Namespace      string `json:"namespace"`
		DataProduct    *named `json:"data_product"`
		OutputPort     *named `json:"output_port"`
		TechnicalAsset *named `json:"technical_asset"`
		User           *named `json:"user"`
		Status         string `json:"status"`
	}
	_ = json.Unmarshal(ev.Data, &d)
	switch {
	case d.User != nil && d.DataProduct != nil: // team member
		return fmt.Sprintf("%s on %q", d.User.Email, d.DataProduct.Name)
	case d.TechnicalAsset != nil && d.OutputPort != nil: // port asset
		return fmt.Sprintf("%q on %q", d.TechnicalAsset.Name, d.OutputPort.Name)
	case d.DataProduct != nil && d.OutputPort != nil: // input port
		return fmt.Sprintf("%q reads %q (%s)", d.DataProduct.Name, d.OutputPort.Name, d.Status)
	case d.Namespace != "":
		return fmt.Sprintf("%q (%s)", d.Name, d.Namespace)
	}
	return fmt.Sprintf("%q", d.Name)
}

func (c *consumer) waitFor(ctx context.Context, want map[string][]byte, limit time.Duration) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		missing := 0
		for id := range want {
			if _, ok := c.seen[id]; !ok {
				missing++
			}
		}
		c.mu.Unlock()
		if missing == 0 {
			return
		}
		select {
		case <-c.arrived:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (c *consumer) counts() (consumed, duplicates int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen), c.total - len(c.seen)
}

func (c *consumer) payload(id string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.seen[id]
	return b, ok
}

func (c *consumer) stop() {
	c.once.Do(func() {
		c.iter.Stop()
		c.wg.Wait()
		c.nc.Close()
	})
}
