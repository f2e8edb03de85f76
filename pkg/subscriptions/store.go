package subscriptions

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// Store reads and changes stored endpoints. It is safe for concurrent use,
// also by several processes: every change is one conditional statement or
// one transaction, and a change that raced another is tried again.
type Store struct {
	db       *gorm.DB
	outbox   *outbox.Store
	now      func() time.Time
	validate func(context.Context, Endpoint) error
	// keys seal what the Store writes and open what it reads; nil: it
	// writes plaintext (if plaintext) and opens nothing sealed.
	keys      *Keyring
	plaintext bool
}

// Option configures a Store.
type Option func(*Store)

// WithValidator adds a check run, after the Store's own, on an endpoint
// about to be delivered to differently: when it is added, and when a change
// gives it a new URL, types or headers or enables it again. serve's, for
// instance, is [Validator] with the operator's allowlist, so a URL that
// delivery would refuse is refused when it is registered. A change that
// only disables an endpoint or rotates its secret skips it: an operator can
// always stop deliveries to an endpoint whose URL has turned bad. Its error
// should be a *FieldError.
func WithValidator(fn func(context.Context, Endpoint) error) Option {
	return func(s *Store) { s.validate = fn }
}

// WithKeyring makes the Store seal every secrets column it writes under
// k's current key, and open the rows sealed under any of k's keys (see
// sealing.go for the format). Without it the Store cannot read a sealed
// row, and stores a new secret only [WithPlaintextSecrets].
func WithKeyring(k *Keyring) Option { return func(s *Store) { s.keys = k } }

// WithPlaintextSecrets lets a Store without a keyring store new secrets
// unencrypted (subscriptions.allow_plaintext_secrets). Without it, such a
// Store refuses to add an endpoint or rotate a secret, with
// [ErrPlaintextRefused], and still reads and changes the rest of the
// plaintext rows it finds, so that an upgrade breaks nothing.
func WithPlaintextSecrets() Option { return func(s *Store) { s.plaintext = true } }

// WithClock sets the clock (default time.Now), for tests.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// NewStore returns a Store over db, the outbox's database, whose outbox ob
// holds the endpoints' events (for replay and removal).
func NewStore(db *gorm.DB, ob *outbox.Store, opts ...Option) *Store {
	s := &Store{db: db, outbox: ob, now: time.Now}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

const columns = `name, url, types, headers, secrets, enabled, disabled_reason, disabled_at, revision, created_at, updated_at,
last_attempt_at, last_success_at, failing_since, last_status_code, last_error, attempts, failures`

// Add stores a new endpoint. Without secrets it gets a fresh one; the
// returned endpoint holds it, and this is the only time it is shown.
// Revision and times are set by the Store; Status starts empty.
func (s *Store) Add(ctx context.Context, e Endpoint) (Endpoint, error) {
	if len(e.Secrets) == 0 {
		v, err := webhooks.NewSecret()
		if err != nil {
			return Endpoint{}, err
		}
		e.Secrets = []Secret{{Value: v}}
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	e.Revision, e.CreatedAt, e.UpdatedAt, e.Status = 1, now, now, Status{}
	if e.Types == nil {
		e.Types = []string{} // as Get returns it
	}
	if !e.Enabled {
		e.DisabledReason = cmp.Or(e.DisabledReason, "added disabled")
		e.DisabledAt = now
	} else {
		e.DisabledReason, e.DisabledAt = "", time.Time{}
	}
	if err := s.check(ctx, e, true); err != nil {
		return Endpoint{}, err
	}
	r, err := encode(e)
	if err != nil {
		return Endpoint{}, err
	}
	if r.secrets, err = s.sealColumn(e.Name, r.secrets, true); err != nil {
		return Endpoint{}, err
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var n int64
		if err := tx.Raw(`SELECT COUNT(*) FROM `+Table+` WHERE name = ?`, e.Name).Scan(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: %q", ErrExists, e.Name)
		}
		return tx.Exec(`INSERT INTO `+Table+` (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, '', 0, 0)`,
			e.Name, e.URL, r.types, r.headers, r.secrets, e.Enabled, e.DisabledReason, millis(e.DisabledAt),
			e.Revision, millis(e.CreatedAt), millis(e.UpdatedAt)).Error
	})
	if err != nil {
		if errors.Is(err, ErrExists) {
			return Endpoint{}, err
		}
		// A concurrent Add of the same name loses on the primary key.
		if _, getErr := s.Get(ctx, e.Name); getErr == nil {
			return Endpoint{}, fmt.Errorf("%w: %q", ErrExists, e.Name)
		}
		return Endpoint{}, fmt.Errorf("add webhook endpoint %q: %w", e.Name, err)
	}
	return e, nil
}

// check validates e before it is stored: always by the Store's own rules,
// and by the validator too when delivery changes (see WithValidator).
func (s *Store) check(ctx context.Context, e Endpoint, deliveryChanges bool) error {
	if err := e.validate(); err != nil {
		return err
	}
	if _, err := e.ActiveSecrets(s.now()); err != nil {
		return err
	}
	if s.validate != nil && deliveryChanges {
		return s.validate(ctx, e)
	}
	return nil
}

// Get returns one endpoint, or ErrNotFound.
func (s *Store) Get(ctx context.Context, name string) (Endpoint, error) {
	eps, err := s.query(ctx, true, ` WHERE name = ?`, name)
	if err != nil {
		return Endpoint{}, err
	}
	if len(eps) == 0 {
		return Endpoint{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return eps[0], nil
}

// List returns every endpoint, by name.
func (s *Store) List(ctx context.Context) ([]Endpoint, error) {
	return s.query(ctx, true, ` ORDER BY name`)
}

// ListForRouting is List without the secrets, which it leaves unopened
// (Secrets is nil): routing an event needs only the types. So a writer
// needs no key, and a row that does not open keeps getting its events,
// which wait in the outbox while the key is put right.
func (s *Store) ListForRouting(ctx context.Context) ([]Endpoint, error) {
	return s.query(ctx, false, ` ORDER BY name`)
}

func (s *Store) query(ctx context.Context, open bool, tail string, args ...any) ([]Endpoint, error) {
	rows, err := s.db.WithContext(ctx).Raw(`SELECT `+columns+` FROM `+Table+tail, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("read webhook endpoints: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []Endpoint
	for rows.Next() {
		var e Endpoint
		var r row
		var disabledAt, created, updated, lastAttempt, lastSuccess, failingSince int64
		if err := rows.Scan(&e.Name, &e.URL, &r.types, &r.headers, &r.secrets, &e.Enabled, &e.DisabledReason,
			&disabledAt, &e.Revision, &created, &updated, &lastAttempt, &lastSuccess, &failingSince,
			&e.Status.LastStatusCode, &e.Status.LastError, &e.Status.Attempts, &e.Status.Failures); err != nil {
			return nil, fmt.Errorf("read webhook endpoints: %w", err)
		}
		if !open {
			r.secrets = "null"
		} else if r.secrets, err = s.openColumn(e.Name, r.secrets); err != nil {
			return nil, err
		}
		if err := r.decode(&e); err != nil {
			return nil, fmt.Errorf("webhook endpoint %q: %w", e.Name, err)
		}
		if !open {
			e.Secrets = nil
		}
		e.DisabledAt, e.CreatedAt, e.UpdatedAt = fromMillis(disabledAt), fromMillis(created), fromMillis(updated)
		e.Status.LastAttemptAt, e.Status.LastSuccessAt, e.Status.FailingSince = fromMillis(lastAttempt), fromMillis(lastSuccess), fromMillis(failingSince)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read webhook endpoints: %w", err)
	}
	return out, nil
}

// Patch is a change to an endpoint; nil fields stay as they are.
type Patch struct {
	URL     *string
	Types   *[]string
	Headers *map[string]string
	// Enabled true re-enables a disabled endpoint: its dead letters are
	// replayed first, so what it missed goes out before what waited behind
	// it, in order per partition key (unless NoReplay). False disables it
	// with the reason "disabled by an operator".
	Enabled  *bool
	NoReplay bool
}

// Update applies p to an endpoint and returns it, with how many dead
// letters were replayed when p re-enabled it.
func (s *Store) Update(ctx context.Context, name string, p Patch) (Endpoint, int, error) {
	apply := func(e *Endpoint, now time.Time) error {
		if p.URL != nil {
			e.URL = *p.URL
		}
		if p.Types != nil {
			e.Types = *p.Types
		}
		if p.Headers != nil {
			e.Headers = *p.Headers
		}
		if p.Enabled != nil && *p.Enabled != e.Enabled {
			e.Enabled = *p.Enabled
			if e.Enabled {
				e.DisabledReason, e.DisabledAt = "", time.Time{}
			} else {
				e.DisabledReason, e.DisabledAt = "disabled by an operator", now
			}
		}
		return nil
	}
	replayed := 0
	if p.Enabled != nil && *p.Enabled && !p.NoReplay {
		cur, err := s.Get(ctx, name)
		if err != nil {
			return Endpoint{}, 0, err
		}
		if !cur.Enabled {
			// A patch that will be refused must not replay anything.
			if err := apply(&cur, s.now()); err != nil {
				return Endpoint{}, 0, err
			}
			if err := s.check(ctx, cur, true); err != nil {
				return Endpoint{}, 0, err
			}
			// Before enabling: no relay serves the endpoint yet, so the
			// replayed rows are in the queue before the relay looks.
			if replayed, err = s.replay(ctx, name); err != nil {
				return Endpoint{}, replayed, err
			}
		}
	}
	e, err := s.change(ctx, name, apply)
	return e, replayed, err
}

// RotateSecret makes value (a fresh secret when "") the endpoint's signing
// secret. The secrets it had keep signing, after the new one, until grace
// has passed, so receivers can switch over without rejecting a request; a
// grace of 0 drops them at once. It returns the endpoint and the new secret,
// shown this once.
func (s *Store) RotateSecret(ctx context.Context, name, value string, grace time.Duration) (Endpoint, Secret, error) {
	if grace < 0 {
		return Endpoint{}, Secret{}, &FieldError{Field: "grace", Reason: fmt.Sprintf("must not be negative (got %s)", grace)}
	}
	if value == "" {
		v, err := webhooks.NewSecret()
		if err != nil {
			return Endpoint{}, Secret{}, err
		}
		value = v
	} else if _, err := webhooks.ParseSecret(value); err != nil {
		return Endpoint{}, Secret{}, &FieldError{Field: "secret", Reason: err.Error()}
	}
	fresh := Secret{Value: value}
	e, err := s.change(ctx, name, func(e *Endpoint, now time.Time) error {
		kept := []Secret{fresh}
		for _, old := range e.Secrets {
			if old.Value == value || grace == 0 || (!old.ExpiresAt.IsZero() && !now.Before(old.ExpiresAt)) {
				continue
			}
			if until := now.Add(grace); old.ExpiresAt.IsZero() || until.Before(old.ExpiresAt) {
				old.ExpiresAt = until
			}
			kept = append(kept, old)
		}
		e.Secrets = kept
		return nil
	})
	return e, fresh, err
}

// Disable stops deliveries to an endpoint, recording why. It reports
// whether this call disabled it: false when it was disabled already, so
// that of several Herald replicas seeing the same 410 only one announces
// it.
func (s *Store) Disable(ctx context.Context, name, reason string) (bool, error) {
	now := s.now()
	res := s.db.WithContext(ctx).Exec(`UPDATE `+Table+` SET enabled = ?, disabled_reason = ?, disabled_at = ?,
revision = revision + 1, updated_at = ? WHERE name = ? AND enabled = ?`, false, reason, millis(now), millis(now), name, true)
	if res.Error != nil {
		return false, fmt.Errorf("disable webhook endpoint %q: %w", name, res.Error)
	}
	if res.RowsAffected == 0 {
		if _, err := s.Get(ctx, name); err != nil {
			return false, err
		}
	}
	return res.RowsAffected > 0, nil
}

// Replay gives the endpoint's dead letters another life: they become
// pending again, keep their place in the queue, and are delivered in order
// per partition key before newer events of the same key that are still
// waiting. It returns how many. On a disabled endpoint they wait, pending,
// until it is enabled.
func (s *Store) Replay(ctx context.Context, name string) (int, error) {
	if _, err := s.Get(ctx, name); err != nil {
		return 0, err
	}
	return s.replay(ctx, name)
}

func (s *Store) replay(ctx context.Context, name string) (int, error) {
	n, err := s.outbox.Retry(ctx, outbox.Filter{State: outbox.StateDead, Destination: Destination(name)}, nil)
	if err != nil {
		return n, fmt.Errorf("replay webhook endpoint %q: %w", name, err)
	}
	return n, nil
}

// Remove deletes an endpoint and, in the same transaction, every outbox row
// still bound for it (pending, dead or kept delivered), so nothing is left
// that no relay would ever serve. It returns how many rows went.
func (s *Store) Remove(ctx context.Context, name string) (int, error) {
	var discarded int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`DELETE FROM `+Table+` WHERE name = ?`, name)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		res = tx.Exec(`DELETE FROM herald_outbox WHERE destination = ?`, Destination(name))
		discarded = res.RowsAffected
		return res.Error
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("remove webhook endpoint %q: %w", name, err)
	}
	return int(discarded), err
}

// Attempts is what the delivering Herald saw of one endpoint since it last
// recorded: the counts, and the last attempt.
type Attempts struct {
	Attempts, Failures int64
	Last               time.Time // the last attempt
	LastStatusCode     int
	LastError          string    // "" when the last attempt succeeded
	LastSuccess        time.Time // the last attempt that succeeded; zero if none did
	// FirstFailure is when the failures since the last success in this
	// window began; zero when the last attempt succeeded.
	FirstFailure time.Time
}

// RecordAttempts adds a window of delivery attempts to the endpoint's
// Status. It leaves Revision alone: status is not a change to deliver
// differently.
func (s *Store) RecordAttempts(ctx context.Context, name string, a Attempts) error {
	if a.Attempts == 0 {
		return nil
	}
	ok := a.LastError == ""
	lastSuccess := a.LastSuccess
	if ok && lastSuccess.IsZero() {
		lastSuccess = a.Last
	}
	// A success inside the window ended any run of failures an earlier
	// window began: the run, if any, starts at this window's FirstFailure.
	brokeRun := a.Failures < a.Attempts
	err := s.db.WithContext(ctx).Exec(`UPDATE `+Table+` SET attempts = attempts + ?, failures = failures + ?,
last_attempt_at = ?, last_status_code = ?, last_error = ?,
last_success_at = CASE WHEN ? THEN ? ELSE last_success_at END,
failing_since = CASE WHEN ? THEN 0 WHEN ? OR failing_since = 0 THEN ? ELSE failing_since END
WHERE name = ?`,
		a.Attempts, a.Failures, millis(a.Last), a.LastStatusCode, truncate(a.LastError, 1000),
		!lastSuccess.IsZero(), millis(lastSuccess), ok, brokeRun, millis(a.FirstFailure), name).Error
	if err != nil {
		return fmt.Errorf("record attempts of webhook endpoint %q: %w", name, err)
	}
	return nil
}

// change applies fn to the stored endpoint and writes it back if no one
// changed it meanwhile, trying again when someone did.
func (s *Store) change(ctx context.Context, name string, fn func(e *Endpoint, now time.Time) error) (Endpoint, error) {
	for range 5 {
		e, err := s.Get(ctx, name)
		if err != nil {
			return Endpoint{}, err
		}
		now := s.now().UTC().Truncate(time.Millisecond)
		before, err := encode(e)
		if err != nil {
			return Endpoint{}, err
		}
		was := e
		if err := fn(&e, now); err != nil {
			return Endpoint{}, err
		}
		r, err := encode(e)
		if err != nil {
			return Endpoint{}, err
		}
		deliveryChanges := e.URL != was.URL || r.types != before.types || r.headers != before.headers ||
			(e.Enabled && !was.Enabled)
		if err := s.check(ctx, e, deliveryChanges); err != nil {
			return Endpoint{}, err
		}
		if r == before && e.URL == was.URL && e.Enabled == was.Enabled {
			// Nothing to deliver differently: a new revision would only make
			// every running Herald reload the endpoint.
			return e, nil
		}
		// Only a new secret set is refused without a key: the rest of
		// the changes go on working on a plaintext row.
		column, err := s.sealColumn(name, r.secrets, r.secrets != before.secrets)
		if err != nil {
			return Endpoint{}, err
		}
		res := s.db.WithContext(ctx).Exec(`UPDATE `+Table+` SET url = ?, types = ?, headers = ?, secrets = ?, enabled = ?,
disabled_reason = ?, disabled_at = ?, revision = revision + 1, updated_at = ? WHERE name = ? AND revision = ?`,
			e.URL, r.types, r.headers, column, e.Enabled, e.DisabledReason, millis(e.DisabledAt), millis(now),
			name, e.Revision)
		if res.Error != nil {
			return Endpoint{}, fmt.Errorf("update webhook endpoint %q: %w", name, res.Error)
		}
		if res.RowsAffected == 1 {
			e.Revision++
			e.UpdatedAt = now
			return e, nil
		}
	}
	return Endpoint{}, fmt.Errorf("update webhook endpoint %q: changed concurrently too often; try again", name)
}

// sealColumn returns what to store as endpoint's secrets column, whose
// plaintext is plain: sealed under the current key when the Store has
// keys, else plain itself, which fresh (a new secret set) needs
// [WithPlaintextSecrets] for.
func (s *Store) sealColumn(endpoint, plain string, fresh bool) (string, error) {
	switch {
	case s.keys != nil:
		return s.keys.seal(endpoint, []byte(plain))
	case fresh && !s.plaintext:
		return "", fmt.Errorf("webhook endpoint %q: %w", endpoint, ErrPlaintextRefused)
	}
	return plain, nil
}

// openColumn returns the plaintext of endpoint's stored secrets column.
func (s *Store) openColumn(endpoint, column string) (string, error) {
	env, sealed := parseEnvelope(column)
	if !sealed {
		return column, nil
	}
	plain, err := s.keys.open(endpoint, env)
	return string(plain), err
}

// row holds an endpoint's JSON columns.
type row struct{ types, headers, secrets string }

type storedSecret struct {
	Secret    string `json:"secret"`
	ExpiresAt int64  `json:"expires_at"`
}

func encode(e Endpoint) (row, error) {
	types := e.Types
	if types == nil {
		types = []string{}
	}
	headers := e.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	secrets := make([]storedSecret, len(e.Secrets))
	for i, sec := range e.Secrets {
		secrets[i] = storedSecret{Secret: sec.Value, ExpiresAt: millis(sec.ExpiresAt)}
	}
	var r row
	for _, f := range []struct {
		dst *string
		v   any
	}{{&r.types, types}, {&r.headers, headers}, {&r.secrets, secrets}} {
		b, err := json.Marshal(f.v)
		if err != nil {
			return row{}, fmt.Errorf("encode webhook endpoint %q: %w", e.Name, err)
		}
		*f.dst = string(b)
	}
	return r, nil
}

func (r row) decode(e *Endpoint) error {
	var secrets []storedSecret
	for _, f := range []struct {
		col string
		src string
		dst any
	}{{"types", r.types, &e.Types}, {"headers", r.headers, &e.Headers}, {"secrets", r.secrets, &secrets}} {
		if err := json.Unmarshal([]byte(f.src), f.dst); err != nil {
			// The column's text is not quoted: secrets is one of them.
			return fmt.Errorf("column %s is not valid JSON: %w", f.col, err)
		}
	}
	if len(e.Headers) == 0 {
		e.Headers = nil
	}
	e.Secrets = make([]Secret, len(secrets))
	for i, sec := range secrets {
		e.Secrets[i] = Secret{Value: sec.Secret, ExpiresAt: fromMillis(sec.ExpiresAt)}
	}
	return nil
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
