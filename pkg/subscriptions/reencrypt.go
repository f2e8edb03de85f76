package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"gorm.io/gorm"
)

// DefaultReencryptBatch is how many rows one transaction of [Store.Reencrypt]
// re-seals unless told otherwise.
const DefaultReencryptBatch = 100

// ErrNoKeyring: re-encrypting needs a key to seal under.
var ErrNoKeyring = errors.New("re-encrypting webhook secrets needs subscriptions.secrets_key")

// SecretsAtRest is how the stored endpoints' secrets are kept.
type SecretsAtRest struct {
	// Plaintext counts the rows not sealed.
	Plaintext int `json:"plaintext"`
	// Sealed counts the sealed rows by the id of the key that sealed them.
	Sealed map[string]int `json:"sealed"`
}

// Rows is how many rows there are.
func (a SecretsAtRest) Rows() int {
	n := a.Plaintext
	for _, c := range a.Sealed {
		n += c
	}
	return n
}

// Verify opens every row's secrets and reports how they are kept. A row
// that does not open (a key the Store was not given, a value changed or
// copied between rows, a plaintext column that is not a secrets list) is
// an error naming the endpoint and the key id; Verify reports every such
// row, joined.
func (s *Store) Verify(ctx context.Context) (SecretsAtRest, error) {
	at := SecretsAtRest{Sealed: map[string]int{}}
	var errs []error
	err := s.scan(ctx, s.db.WithContext(ctx), "", 0, func(name, column string) error {
		if env, sealed := parseEnvelope(column); sealed {
			at.Sealed[env.keyID]++
		} else {
			at.Plaintext++
		}
		if _, err := s.plaintextOf(name, column); err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		return at, err
	}
	return at, errors.Join(errs...)
}

// plaintextOf opens a stored secrets column and checks that what it holds
// is a secrets list.
func (s *Store) plaintextOf(name, column string) (string, error) {
	plain, err := s.openColumn(name, column)
	if err != nil {
		return "", err
	}
	var list []storedSecret
	if err := json.Unmarshal([]byte(plain), &list); err != nil {
		return "", fmt.Errorf("webhook endpoint %q: column secrets does not hold a list of secrets: %w", name, err)
	}
	return plain, nil
}

// scan calls fn with every row's name and secrets column in name order,
// from after `after`, at most limit rows (0: every row), reading in pages
// so that a large table is never held at once.
func (s *Store) scan(ctx context.Context, db *gorm.DB, after string, limit int, fn func(name, column string) error) error {
	const page = 500
	seen := 0
	for {
		n := page
		if limit > 0 {
			n = min(page, limit-seen)
		}
		rows, err := db.Raw(`SELECT name, secrets FROM `+Table+` WHERE name > ? ORDER BY name LIMIT ?`, after, n).Rows()
		if err != nil {
			return fmt.Errorf("read webhook endpoints: %w", err)
		}
		type pair struct{ name, column string }
		var got []pair
		for rows.Next() {
			var p pair
			if err := rows.Scan(&p.name, &p.column); err != nil {
				_ = rows.Close()
				return fmt.Errorf("read webhook endpoints: %w", err)
			}
			got = append(got, p)
		}
		err = rows.Err()
		_ = rows.Close()
		if err != nil {
			return fmt.Errorf("read webhook endpoints: %w", err)
		}
		for _, p := range got {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(p.name, p.column); err != nil {
				return err
			}
			after = p.name
		}
		seen += len(got)
		if len(got) < n || (limit > 0 && seen >= limit) {
			return nil
		}
	}
}

// Reencrypted is what [Store.Reencrypt] did, or with DryRun would do.
type Reencrypted struct {
	// KeyID is the key every row is sealed under afterwards.
	KeyID string `json:"key_id"`
	// Before is how the rows were kept when it started.
	Before SecretsAtRest `json:"before"`
	// Sealed counts the plaintext rows it sealed, Resealed those it moved
	// from a previous key, Current those already under KeyID, left as
	// they were.
	Sealed   int `json:"sealed"`
	Resealed int `json:"resealed"`
	Current  int `json:"current"`
	// Batches is how many transactions wrote.
	Batches int  `json:"batches"`
	DryRun  bool `json:"dry_run,omitempty"`
}

// ReencryptOptions tune [Store.Reencrypt].
type ReencryptOptions struct {
	// BatchSize is how many rows one transaction re-seals (default
	// DefaultReencryptBatch).
	BatchSize int
	// DryRun verifies and counts, and writes nothing.
	DryRun bool
}

// Reencrypt seals every row's secrets under the Store's current key:
// plaintext rows, and rows sealed under a previous key, so that the
// previous keys can then be dropped. Rows already under the current key
// are left alone, so running it again changes nothing: it is the command
// to run after every key change, and to migrate plaintext rows.
//
// It changes nothing unless it can open every row: it first verifies them
// all ([Store.Verify]) and returns that error, naming each endpoint that
// does not open and its key id. Then it writes in batches of BatchSize
// rows, each in its own transaction that reads its rows again, so that a
// row changed in between is re-sealed as it now is; a batch that fails
// (a row that stopped opening meanwhile, the database) is rolled back
// whole, the batches before it stay done, and a second run finishes the
// job. The secrets' values do not change, so revision stays: running
// Heralds have nothing to reload.
func (s *Store) Reencrypt(ctx context.Context, opts ReencryptOptions) (Reencrypted, error) {
	if s.keys == nil {
		return Reencrypted{}, ErrNoKeyring
	}
	batch := opts.BatchSize
	if batch <= 0 {
		batch = DefaultReencryptBatch
	}
	before, err := s.Verify(ctx)
	res := Reencrypted{KeyID: s.keys.KeyID(), Before: before, DryRun: opts.DryRun}
	if err != nil {
		return res, fmt.Errorf("re-encrypt webhook secrets: nothing changed: %w", err)
	}
	if opts.DryRun {
		res.Sealed, res.Current = before.Plaintext, before.Sealed[res.KeyID]
		res.Resealed = before.Rows() - res.Sealed - res.Current
		return res, nil
	}
	after := ""
	for {
		var done Reencrypted
		var last string
		var n int
		err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			done, last, n = Reencrypted{}, after, 0
			return s.scan(ctx, tx, after, batch, func(name, column string) error {
				n++
				last = name
				return s.reseal(tx, name, column, &done)
			})
		})
		if err != nil {
			return res, fmt.Errorf("re-encrypt webhook secrets: the batch after %q was rolled back (%d rows re-sealed before it; run again to finish): %w",
				after, res.Sealed+res.Resealed, err)
		}
		res.Sealed, res.Resealed, res.Current = res.Sealed+done.Sealed, res.Resealed+done.Resealed, res.Current+done.Current
		if done.Sealed+done.Resealed > 0 {
			res.Batches++
		}
		if n < batch {
			return res, nil
		}
		after = last
	}
}

// reseal seals one row under the current key unless it already is. The
// update is conditional on the column it read: if someone changed the row
// since, it is read and re-sealed again as it now is.
func (s *Store) reseal(tx *gorm.DB, name, column string, done *Reencrypted) error {
	for range 5 {
		env, sealed := parseEnvelope(column)
		if sealed && env.version == sealVersion && env.keyID == s.keys.KeyID() {
			// Opened all the same: Verify's promise holds for what it writes.
			if _, err := s.plaintextOf(name, column); err != nil {
				return err
			}
			done.Current++
			return nil
		}
		plain, err := s.plaintextOf(name, column)
		if err != nil {
			return err
		}
		fresh, err := s.keys.seal(name, []byte(plain))
		if err != nil {
			return err
		}
		res := tx.Exec(`UPDATE `+Table+` SET secrets = ? WHERE name = ? AND secrets = ?`, fresh, name, column)
		if res.Error != nil {
			return fmt.Errorf("re-seal webhook endpoint %q: %w", name, res.Error)
		}
		if res.RowsAffected == 1 {
			if sealed {
				done.Resealed++
			} else {
				done.Sealed++
			}
			return nil
		}
		var now []string
		if err := tx.Raw(`SELECT secrets FROM `+Table+` WHERE name = ?`, name).Scan(&now).Error; err != nil {
			return fmt.Errorf("re-seal webhook endpoint %q: %w", name, err)
		}
		if len(now) == 0 {
			return nil // removed meanwhile: nothing to seal
		}
		column = now[0]
	}
	return fmt.Errorf("re-seal webhook endpoint %q: changed concurrently too often; run again", name)
}

// KeyIDs lists the ids of a SecretsAtRest's keys, sorted, for messages.
func (a SecretsAtRest) KeyIDs() []string { return slices.Sorted(maps.Keys(a.Sealed)) }
