package enricher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

// The bookkeeping tables, created by the outbox migrations (0003_enricher)
// in the outbox's database, so that they commit with the events.
const (
	ProcessedTable  = "herald_enricher_processed"
	CursorTable     = "herald_enricher_cursor"
	QuarantineTable = "herald_enricher_quarantine"
)

// Status is what happened to one audit record handed to a source (the table
// tail, HTTP ingest or a retry).
type Status string

const (
	// StatusEnriched: its events (possibly none, for an action ignored on
	// purpose) are in the outbox.
	StatusEnriched Status = "enriched"
	// StatusQuarantined: it could not be enriched and waits in the
	// quarantine table with the reason; later records were not held back.
	StatusQuarantined Status = "quarantined"
	// StatusDuplicate: its audit id was handled before; nothing was written.
	StatusDuplicate Status = "duplicate"
)

// Reason kinds of a quarantined record, for operators and scripts.
const (
	KindInvalid  = "invalid"   // a malformed record (ErrInvalidRecord)
	KindUnmapped = "unmapped"  // no rule for its action (ErrUnmapped)
	KindNotFound = "not_found" // an entity it names is missing (ErrEntityNotFound)
	KindTooLarge = "too_large" // an event larger than the main destination takes (ErrEventTooLarge)
	KindFailed   = "failed"    // any other enrichment failure, e.g. a lookup error
)

// Result is what happened to one audit record.
type Result struct {
	AuditID      string
	Source       string    // the source that handled it: "ingest", "tail:<cursor>", ...
	CreatedOn    time.Time // the audit record's created_on; zero when unreadable
	Status       Status
	EventIDs     []string // the events written, when enriched
	QuarantineID string   // the quarantine row, when quarantined
	Kind         string   // the reason's kind, when quarantined
	Reason       error    // why it was quarantined
}

// SourceOption configures the sources that feed the enricher: [NewTail],
// [NewIngestHandler] and [NewQuarantine]. Each ignores the options that are
// not about it.
type SourceOption func(*sourceConfig)

type sourceConfig struct {
	portal       *gorm.DB
	log          *slog.Logger
	pollInterval time.Duration
	overlap      time.Duration
	sweepEvery   time.Duration
	lookback     time.Duration
	retention    time.Duration
	batchSize    int
	cursorName   string
	observer     func(Result)
	maxBody      int64
	maxRecords   int
	maxEvent     int // bytes; 0: no limit
}

func newSourceConfig(opts []SourceOption) sourceConfig {
	c := sourceConfig{
		log:          slog.New(slog.DiscardHandler),
		pollInterval: DefaultPollInterval,
		overlap:      DefaultOverlap,
		sweepEvery:   DefaultSweepEvery,
		lookback:     DefaultLookback,
		retention:    DefaultProcessedRetention,
		batchSize:    DefaultBatchSize,
		cursorName:   DefaultCursorName,
		maxBody:      DefaultMaxBodyBytes,
		maxRecords:   DefaultMaxRecords,
	}
	for _, opt := range opts {
		opt(&c)
	}
	return c
}

// ErrEventTooLarge marks a record whose event is larger than the main
// destination accepts ([WithMaxEventBytes]). Such a record is quarantined by
// the enricher, where `herald enrich retry` reaches it, rather than written
// to the outbox only to be dead-lettered by the relay.
var ErrEventTooLarge = errors.New("event larger than the main destination accepts")

// WithMaxEventBytes sets the largest event, in bytes of its JSON form as the
// outbox stores it, that the main destination accepts (0, the default: no
// limit). A record whose event is larger is quarantined with the size and
// the limit as its reason.
func WithMaxEventBytes(n int) SourceOption {
	return func(c *sourceConfig) {
		if n >= 0 {
			c.maxEvent = n
		}
	}
}

// WithPortal sets the portal's database, where the audit table and the
// entities live, when it is not the outbox's database (the default). The
// events, the processed ids and the quarantine are always written to the
// outbox's database, in one transaction per record; lookups then read the
// portal outside that transaction.
func WithPortal(db *gorm.DB) SourceOption { return func(c *sourceConfig) { c.portal = db } }

// WithSourceLogger sets the logger (default: discard); nil keeps the default.
func WithSourceLogger(l *slog.Logger) SourceOption {
	return func(c *sourceConfig) {
		if l != nil {
			c.log = l
		}
	}
}

// pipeline handles one audit record at a time: enrich and write, or
// quarantine, and mark its id processed, in one transaction of the outbox's
// database.
type pipeline struct {
	e      *Enricher
	db     *gorm.DB // the outbox's database
	portal *gorm.DB // nil: the outbox's database
	log    *slog.Logger
	dia    string
	// maxEvent is the main destination's largest event in bytes; 0: no limit.
	maxEvent int
}

func newPipeline(db *gorm.DB, e *Enricher, c sourceConfig) (*pipeline, error) {
	if db == nil {
		return nil, errors.New("enricher: nil outbox database")
	}
	if e == nil {
		return nil, errors.New("enricher: nil Enricher")
	}
	dia := db.Name()
	switch dia {
	case "sqlite", "postgres", "mysql":
	default:
		return nil, fmt.Errorf("enricher: %w: %q", outbox.ErrUnsupportedDialect, dia)
	}
	return &pipeline{e: e, db: db, portal: c.portal, log: c.log, dia: dia, maxEvent: c.maxEvent}, nil
}

// events maps rec through the Enricher, reading the portal as tx sees it
// and keeping the entity's last known state in tx, and checks that the main
// destination accepts the events. It does not write the events.
func (p *pipeline) events(ctx context.Context, tx *gorm.DB, rec AuditRecord) ([]event.Event, error) {
	evs, err := p.e.enrich(ctx, p.lookupDB(tx), tx, rec)
	if err == nil {
		err = p.fits(evs)
	}
	return evs, err
}

// handleBatch handles records like handle, all in one transaction, which is
// what lets a bulk change through at thousands of records a second. A record
// that cannot be enriched rolls the batch back, and the batch is then
// handled one record per transaction, so that the record is quarantined
// alone and the others are enriched as usual. within is run once in the
// batch's transaction (or in each record's).
func (p *pipeline) handleBatch(ctx context.Context, source string, ins []incoming, within func(tx *gorm.DB) error) ([]Result, error) {
	if len(ins) == 1 {
		res, err := p.handle(ctx, source, ins[0], within)
		return []Result{res}, err
	}
	results := make([]Result, len(ins))
	bctx := withLoadMemo(ctx)
	err := p.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for i, in := range ins {
			results[i] = Result{AuditID: auditKey(in.rec.ID), Source: source, CreatedOn: in.rec.CreatedOn}
			if in.badErr != nil || results[i].AuditID == "" {
				return errQuarantine{in.badErr}
			}
		}
		fresh, err := p.claimAll(ctx, tx, source, ins, StatusEnriched)
		if err != nil {
			return err
		}
		var all []event.Event
		for i, in := range ins {
			if !fresh[results[i].AuditID] {
				results[i].Status = StatusDuplicate
				continue
			}
			evs, err := p.events(bctx, tx, in.rec)
			if err != nil {
				return p.fault(ctx, err)
			}
			results[i].Status = StatusEnriched
			for _, ev := range evs {
				results[i].EventIDs = append(results[i].EventIDs, ev.ID)
			}
			all = append(all, evs...)
		}
		if err := outbox.Write(ctx, tx, all...); err != nil {
			if errors.Is(err, event.ErrInvalid) {
				return errQuarantine{err}
			}
			return fmt.Errorf("write %d audit records' events: %w", len(ins), err)
		}
		if within != nil {
			return within(tx)
		}
		return nil
	})
	var q errQuarantine
	switch {
	case err == nil:
		return results, nil
	case !errors.As(err, &q):
		return nil, err
	}
	results = results[:0]
	for _, in := range ins {
		res, err := p.handle(ctx, source, in, within)
		if err != nil {
			return results, err
		}
		results = append(results, res)
	}
	return results, nil
}

// fits fails with ErrEventTooLarge, naming the size and the limit, when an
// event is larger than the main destination accepts.
func (p *pipeline) fits(evs []event.Event) error {
	if p.maxEvent <= 0 {
		return nil
	}
	for _, ev := range evs {
		b, err := ev.MarshalJSON()
		if err != nil {
			return fmt.Errorf("event %s: %w", ev.ID, err)
		}
		if len(b) > p.maxEvent {
			return fmt.Errorf("event %s (%s) is %d bytes, the main destination accepts at most %d: %w",
				ev.ID, ev.Type, len(b), p.maxEvent, ErrEventTooLarge)
		}
	}
	return nil
}

// incoming is a record as a source received it.
type incoming struct {
	rec    AuditRecord
	xid    int64  // the writing transaction on a PostgreSQL portal, from the tail; 0: unknown
	raw    []byte // the record as received, kept in the quarantine
	badErr error  // set when the raw form could not even be decoded
}

// fault sorts an enrichment failure: ctx's end and a portal that cannot be
// read are returned as they are (nothing is recorded, the record comes
// again); anything else is the record's own and quarantines it.
func (p *pipeline) fault(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if transient := p.portalDown(ctx, err); transient != nil {
		return transient
	}
	return errQuarantine{err}
}

// errQuarantine carries an enrichment failure out of the first transaction.
type errQuarantine struct{ err error }

func (e errQuarantine) Error() string { return e.err.Error() }

var errDuplicate = errors.New("duplicate audit record")

// handle processes one record. source names who delivered it ("tail:<name>",
// "ingest"); within is run in each committing transaction (the tail advances
// its cursor there). Only infrastructure failures and a cancelled ctx are
// returned as errors; a bad record is a quarantined Result.
func (p *pipeline) handle(ctx context.Context, source string, in incoming, within func(tx *gorm.DB) error) (Result, error) {
	key := auditKey(in.rec.ID)
	res := Result{AuditID: key, Source: source, CreatedOn: in.rec.CreatedOn}
	var enrichErr error
	if in.badErr == nil {
		var evs []event.Event
		err := p.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if key != "" {
				fresh, err := p.claim(ctx, tx, source, in, StatusEnriched)
				if err != nil {
					return err
				}
				if !fresh {
					return errDuplicate
				}
			}
			var err error
			evs, err = p.events(ctx, tx, in.rec)
			if err == nil {
				err = outbox.Write(ctx, tx, evs...)
				if err != nil && !errors.Is(err, event.ErrInvalid) {
					return fmt.Errorf("audit record %s: %w", key, err)
				}
			}
			if err != nil {
				return p.fault(ctx, err)
			}
			if within != nil {
				return within(tx)
			}
			return nil
		})
		var q errQuarantine
		switch {
		case err == nil:
			res.Status = StatusEnriched
			for _, ev := range evs {
				res.EventIDs = append(res.EventIDs, ev.ID)
			}
			return res, nil
		case errors.Is(err, errDuplicate):
			res.Status = StatusDuplicate
			return res, nil
		case errors.As(err, &q):
			enrichErr = q.err
		default:
			return res, err
		}
	} else {
		enrichErr = in.badErr
	}

	// The first transaction rolled back (on PostgreSQL a failed lookup aborts
	// it anyway); a second one quarantines and marks the id processed.
	qid := uuid.NewString()
	err := p.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if key != "" {
			fresh, err := p.claim(ctx, tx, source, in, StatusQuarantined)
			if err != nil {
				return err
			}
			if !fresh {
				return errDuplicate
			}
		}
		if err := p.insertQuarantine(ctx, tx, qid, key, source, in, enrichErr); err != nil {
			return err
		}
		if within != nil {
			return within(tx)
		}
		return nil
	})
	switch {
	case errors.Is(err, errDuplicate):
		res.Status = StatusDuplicate
		return res, nil
	case err != nil:
		return res, err
	}
	res.Status, res.QuarantineID, res.Kind, res.Reason = StatusQuarantined, qid, kindOf(enrichErr), enrichErr
	p.log.WarnContext(ctx, "audit record quarantined",
		slog.String("audit_record_id", key), slog.String("action", in.rec.Name), slog.String("source", source),
		slog.String("quarantine_id", qid), slog.String("kind", res.Kind), slog.String("reason", enrichErr.Error()))
	return res, nil
}

func kindOf(err error) string {
	switch {
	case errors.Is(err, ErrInvalidRecord):
		return KindInvalid
	case errors.Is(err, ErrUnmapped):
		return KindUnmapped
	case errors.Is(err, ErrEntityNotFound):
		return KindNotFound
	case errors.Is(err, ErrEventTooLarge):
		return KindTooLarge
	}
	return KindFailed
}

// auditKey is the id a record is deduplicated by: the canonical UUID, or the
// id as sent when it is no UUID (such a record is quarantined, still once).
func auditKey(id string) string {
	if u, err := uuid.Parse(id); err == nil && len(id) == 36 {
		return u.String()
	}
	return strings.TrimSpace(id)
}

// claim marks one record processed with outcome; false when it already
// was. A concurrent claim of the same key waits for this transaction and
// then finds it taken.
func (p *pipeline) claim(ctx context.Context, tx *gorm.DB, source string, in incoming, outcome Status) (bool, error) {
	fresh, err := p.claimAll(ctx, tx, source, []incoming{in}, outcome)
	return fresh[auditKey(in.rec.ID)], err
}

// errClaimedElsewhere rolls a batch back on MySQL when another source
// claimed one of its records meanwhile: INSERT IGNORE does not say which.
var errClaimedElsewhere = errQuarantine{errors.New("a record of the batch was handled meanwhile")}

// claimAll marks the records processed with outcome, a chunk of rows per
// statement, and returns the keys that were not processed before. A record
// without a created_on is marked with none, so that no pruning by time ever
// forgets it.
func (p *pipeline) claimAll(ctx context.Context, tx *gorm.DB, source string, ins []incoming, outcome Status) (map[string]bool, error) {
	fresh := make(map[string]bool, len(ins))
	now := p.encodeTime(time.Now())
	const cols = 6
	for start := 0; start < len(ins); start += claimChunk {
		chunk := ins[start:min(start+claimChunk, len(ins))]
		args := make([]any, 0, len(chunk)*cols)
		for _, in := range chunk {
			var created, xid any
			if !in.rec.CreatedOn.IsZero() {
				created = p.encodeTime(in.rec.CreatedOn)
			}
			if in.xid != 0 {
				xid = in.xid
			}
			args = append(args, auditKey(in.rec.ID), source, created, xid, string(outcome), now)
		}
		q := "INSERT INTO " + ProcessedTable + " (audit_id, source, created_on, xid, outcome, processed_at) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", len(chunk)), ", ")
		if p.dia == "mysql" {
			r := tx.WithContext(ctx).Exec(strings.Replace(q, "INSERT INTO", "INSERT IGNORE INTO", 1), args...)
			switch {
			case r.Error != nil:
				return nil, fmt.Errorf("mark %d audit records processed: %w", len(chunk), r.Error)
			case r.RowsAffected == int64(len(chunk)):
				for _, in := range chunk {
					fresh[auditKey(in.rec.ID)] = true
				}
			case len(ins) > 1:
				return nil, errClaimedElsewhere
			}
			continue
		}
		var keys []string
		err := tx.WithContext(ctx).Raw(q+" ON CONFLICT (audit_id) DO NOTHING RETURNING audit_id", args...).Scan(&keys).Error
		if err != nil {
			return nil, fmt.Errorf("mark %d audit records processed: %w", len(chunk), err)
		}
		for _, k := range keys {
			fresh[k] = true
		}
	}
	return fresh, nil
}

// claimChunk bounds the rows per claiming INSERT well below every driver's
// limit on bound parameters.
const claimChunk = 200

func (p *pipeline) insertQuarantine(ctx context.Context, tx *gorm.DB, qid, key, source string, in incoming, reason error) error {
	raw := in.raw
	if raw == nil {
		var err error
		if raw, err = json.Marshal(wireOf(in.rec)); err != nil {
			return fmt.Errorf("quarantine audit record %s: encode: %w", key, err)
		}
	}
	now := p.encodeTime(time.Now())
	err := tx.WithContext(ctx).Exec("INSERT INTO "+QuarantineTable+
		" (id, audit_id, action, source, kind, reason, record, attempts, first_seen_at, last_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
		qid, key, in.rec.Name, source, kindOf(reason), reason.Error(), string(raw), now, now).Error
	if err != nil {
		return fmt.Errorf("quarantine audit record %s: %w", key, err)
	}
	return nil
}

// sqliteTime is the fixed-width form the enricher's SQLite tables hold, so
// that string order is time order.
const sqliteTime = "2006-01-02T15:04:05.000000Z"

func (p *pipeline) encodeTime(t time.Time) any {
	if p.dia == "sqlite" {
		return t.UTC().Format(sqliteTime)
	}
	return t.UTC()
}

// decodeTime reads a timestamp column as the drivers return it: time.Time,
// or text on SQLite, where a time without a zone is UTC.
func decodeTime(v any) (time.Time, error) {
	var s string
	switch x := v.(type) {
	case time.Time:
		return x.UTC(), nil
	case string:
		s = x
	case []byte:
		s = string(x)
	case nil:
		return time.Time{}, nil
	default:
		return time.Time{}, fmt.Errorf("timestamp: unexpected %T", v)
	}
	s = strings.TrimSpace(s)
	for _, layout := range [...]string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05.999999999",
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999",
		"2006-01-02 15:04:05.999999999 -0700 MST",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("timestamp: %q is not a timestamp", s)
}
