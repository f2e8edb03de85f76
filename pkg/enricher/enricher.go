package enricher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// Defaults for [New].
const (
	DefaultSource     = "/portal"
	DefaultSchemaBase = "https://heraldhq.github.io/herald/schemas/"
)

var (
	// ErrUnmapped is returned, wrapped with the action name, for an audit
	// record whose action has no rule: neither mapped nor ignored on purpose.
	// Callers must not skip such a record silently: it may be a change
	// consumers never hear about. After adding a rule, the record can be
	// enriched again.
	ErrUnmapped = errors.New("no mapping for audit action")

	// ErrEntityNotFound is returned when the entity a record is about has no
	// row in the portal and no recorded deletion explains why. A deletion
	// whose audit row is not visible yet (it belongs to a later-committing
	// transaction) looks like this too, so a retry may succeed.
	ErrEntityNotFound = errors.New("entity not found in portal")
)

// EnrichFunc is a custom enricher for one portal action, registered with
// [WithCustom]. It gets the record validated and normalised (canonical ids,
// UTC time) and the handle lookups read the portal through (the caller's
// transaction, unless a source reads a separate portal), and returns the
// events for it: none is fine, an error is returned to the caller as it is
// (wrapped with the record's id). Build events with [event.New];
// [Enricher.Record] writes them, and gives those without a traceparent the
// record's.
type EnrichFunc func(ctx context.Context, tx *gorm.DB, rec AuditRecord) ([]event.Event, error)

// Enricher maps portal audit records to business events. It holds no
// connection and no mutable state, so one Enricher serves any number of
// goroutines and transactions.
type Enricher struct {
	source     string
	schemaBase string
	log        *slog.Logger
	tracer     trace.Tracer
	rules      Rules
	custom     map[string]EnrichFunc
	now        func() time.Time
}

// Option configures an [Enricher].
type Option func(*Enricher)

// WithSource sets the CloudEvents source of every event (default "/portal").
func WithSource(uri string) Option { return func(e *Enricher) { e.source = uri } }

// WithSchemaBase sets the URI the dataschema of every event is resolved
// against: <base><type>/v1.json, e.g.
// <base>io.herald.portal.data_product.created/v1.json; the files at those
// paths are the ones `herald schema export` writes under schemas/. A missing
// trailing slash is added, since without it the type would be glued onto the
// last path segment.
func WithSchemaBase(uri string) Option {
	return func(e *Enricher) {
		if uri != "" && !strings.HasSuffix(uri, "/") {
			uri += "/"
		}
		e.schemaBase = uri
	}
}

// WithLogger sets the logger (default: discard). A nil logger keeps the default.
func WithLogger(l *slog.Logger) Option {
	return func(e *Enricher) {
		if l != nil {
			e.log = l
		}
	}
}

// WithRules replaces the mapping table (default: [DefaultRules]), e.g. with
// one read by [ParseRules] from the configuration at boot.
func WithRules(r Rules) Option { return func(e *Enricher) { e.rules = r } }

// WithCustom makes fn the enricher of action, ahead of any rule for it: the
// Go extension point for what a declarative rule cannot say. A nil fn
// removes the custom enricher, so the rules apply again.
func WithCustom(action string, fn EnrichFunc) Option {
	return func(e *Enricher) {
		if fn == nil {
			delete(e.custom, action)
			return
		}
		e.custom[action] = fn
	}
}

// WithClock sets the clock that dates data read at enrichment (its as_of;
// default time.Now). A clock behind the records dates such data at each
// record's own time, as if every record were enriched the moment it was
// written: how the portal sample is replayed for the documented examples and
// golden files. A nil clock keeps the default.
func WithClock(now func() time.Time) Option {
	return func(e *Enricher) {
		if now != nil {
			e.now = now
		}
	}
}

// New returns an Enricher with the built-in catalogue ([DefaultRules]).
func New(opts ...Option) *Enricher {
	e := &Enricher{
		source:     DefaultSource,
		schemaBase: DefaultSchemaBase,
		log:        slog.New(slog.DiscardHandler),
		tracer:     otel.GetTracerProvider().Tracer(tracerName),
		rules:      DefaultRules(),
		custom:     map[string]EnrichFunc{},
		now:        time.Now,
	}
	for _, opt := range opts {
		opt(e)
	}
	return e
}

// Rules returns the mapping table the Enricher uses.
func (e *Enricher) Rules() Rules { return e.rules }

// SchemaURL is the dataschema of events of type typ.
func (e *Enricher) SchemaURL(typ string) string { return e.schemaBase + SchemaPath(typ) }

// Events validates rec, maps its action and reads what the event needs
// through tx, returning the events that describe the change. It writes
// nothing. The lookups read the portal as tx sees it now, which for a record
// processed late is a later state than the one the action left; each data
// type's as_of says which state it holds.
//
// A deletion's last_known comes from the enricher's state table when tx's
// database has one ([StateTable]); without it last_known is null. Events
// never adds to that table, so only [Enricher.Record] and the enricher's
// sources (tail, ingest, retry) remember what later deletions carry.
//
// An action the rules ignore on purpose, and a role assignment still
// awaiting approval, yield no events and a nil error: the record is handled.
// An action without a rule fails with [ErrUnmapped].
func (e *Enricher) Events(ctx context.Context, tx *gorm.DB, rec AuditRecord) ([]event.Event, error) {
	return e.traced(ctx, tx, stateStore{db: tx, readOnly: true}, rec)
}

// Record maps rec like [Enricher.Events] and writes the events to the outbox
// in tx, the same transaction the caller uses for everything else, so the
// events commit or roll back with it; so does the last known state of the
// entities they describe. An unmapped or invalid record writes nothing and
// returns the error; an ignored one writes nothing and returns no events and
// no error.
func (e *Enricher) Record(ctx context.Context, tx *gorm.DB, rec AuditRecord) ([]event.Event, error) {
	evs, err := e.enrich(ctx, tx, tx, rec)
	if err != nil {
		return nil, err
	}
	if err := outbox.Write(ctx, tx, evs...); err != nil {
		return nil, fmt.Errorf("audit record %s (%s): %w", rec.ID, rec.Name, err)
	}
	return evs, nil
}

// enrich returns rec's events for a caller that writes them to the outbox in
// outboxTx. The portal may be another database than the outbox: lookups read
// portal, outside the outbox transaction, while the last known state of the
// entities is read and written through outboxTx, so that it commits with the
// events.
func (e *Enricher) enrich(ctx context.Context, portal, outboxTx *gorm.DB, rec AuditRecord) ([]event.Event, error) {
	return e.traced(ctx, portal, stateStore{db: outboxTx}, rec)
}

// traced is events inside the record's span; every event gets the span's
// traceparent.
func (e *Enricher) traced(ctx context.Context, portal *gorm.DB, st stateStore, rec AuditRecord) (evs []event.Event, err error) {
	ctx, span := e.startSpan(ctx, rec)
	defer func() { endSpan(span, evs, err) }()
	return e.events(ctx, portal, st, rec)
}

func (e *Enricher) events(ctx context.Context, portal *gorm.DB, st stateStore, rec AuditRecord) ([]event.Event, error) {
	rec, err := rec.normalize()
	if err != nil {
		return nil, err
	}
	tp := traceParent(ctx)
	if fn, ok := e.custom[rec.Name]; ok {
		if portal == nil {
			return nil, fmt.Errorf("audit record %s: nil transaction", rec.ID)
		}
		evs, err := fn(ctx, portal, rec)
		if err != nil {
			return nil, fmt.Errorf("audit record %s (%s): custom enricher: %w", rec.ID, rec.Name, err)
		}
		for i := range evs {
			if evs[i].TraceParent == "" {
				evs[i].TraceParent = tp
			}
		}
		return evs, nil
	}
	r, ok := e.rules.byAction[rec.Name]
	if !ok {
		return nil, fmt.Errorf("audit record %s: action %q: %w", rec.ID, rec.Name, ErrUnmapped)
	}
	if r.kind == nil {
		e.log.DebugContext(ctx, "audit action ignored on purpose",
			slog.String("audit_record_id", rec.ID), slog.String("action", rec.Name), slog.String("reason", r.Ignore))
		return nil, nil
	}
	if portal == nil {
		return nil, fmt.Errorf("audit record %s: nil transaction", rec.ID)
	}
	sides, err := r.sidesOf(rec)
	if err != nil {
		return nil, err
	}
	b, err := r.kind.build(ctx, portal, call{
		rec: rec, verb: r.verb, sides: sides, rules: e.rules, log: e.log, state: st, now: e.now,
		prov: Provenance{ActorID: rec.ActorID, AuditRecordID: rec.ID},
	})
	if err != nil {
		return nil, fmt.Errorf("audit record %s (%s): %w", rec.ID, rec.Name, err)
	}
	if b.skip != "" {
		e.log.DebugContext(ctx, "audit record yields no event",
			slog.String("audit_record_id", rec.ID), slog.String("action", rec.Name), slog.String("reason", b.skip))
		return nil, nil
	}
	typ := r.eventType()
	opts := []event.Option{
		event.WithSubject(b.subject),
		event.WithTime(rec.CreatedOn),
		event.WithPartitionKey(b.key),
		event.WithDataSchema(e.SchemaURL(typ)),
	}
	if tp != "" {
		opts = append(opts, event.WithTraceParent(tp))
	}
	ev, err := event.New(typ, e.source, b.data, opts...)
	if err != nil {
		return nil, fmt.Errorf("audit record %s (%s): build event: %w", rec.ID, rec.Name, err)
	}
	if m := b.remember; m != nil {
		// The event's own bytes, so last_known is exactly what consumers saw.
		if err := st.put(ctx, m.kind, m.id, ev.Data, m.asOf); err != nil {
			return nil, fmt.Errorf("audit record %s (%s): %w", rec.ID, rec.Name, err)
		}
	}
	e.log.DebugContext(ctx, "mapped audit record",
		slog.String("audit_record_id", rec.ID), slog.String("action", rec.Name),
		slog.String("event_id", ev.ID), slog.String("event_type", ev.Type), slog.String("subject", ev.Subject))
	return []event.Event{ev}, nil
}
