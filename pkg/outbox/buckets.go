package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Buckets is how many buckets a destination's rows are spread over. The
// schema computes a row's bucket from its partition key, so the number is
// fixed by migration 0006; it bounds how many relays can share one
// destination's work.
const Buckets = 64

// AllBuckets lists every bucket: what a relay holding them all reads, and
// what a tool that has the outbox to itself may read.
func AllBuckets() []int {
	all := make([]int, Buckets)
	for i := range all {
		all[i] = i
	}
	return all
}

// This file is the relay's side of the store (docs/outbox.md, "How relays
// deliver"): bucket leases, relay membership, the PostgreSQL doorbell,
// reading a bucket set in seq order and recording what became of the rows.

// Join renews the membership of the relay name in the store's destination
// until now+lease and returns how many relays, itself included, are members
// now. Relays size their fair share of the buckets by it.
func (s *Store) Join(ctx context.Context, name string, lease time.Duration) (relays int, err error) {
	now := s.now()
	db := s.db.WithContext(ctx)
	if err := db.Exec(s.d.upsertRelay, s.destination, name, s.d.encodeTime(now.Add(lease))).Error; err != nil {
		return 0, fmt.Errorf("outbox join: %w", err)
	}
	var n int64
	if err := db.Raw(`SELECT COUNT(*) FROM herald_outbox_relays WHERE destination = ? AND expires_at > ?`,
		s.destination, s.d.encodeTime(now)).Scan(&n).Error; err != nil {
		return 0, fmt.Errorf("outbox join: count relays: %w", err)
	}
	return max(int(n), 1), nil
}

// Leave ends the membership of the relay name and hands every bucket it
// holds back at once, so that the other relays need not wait for its leases
// to run out. A relay calls it as it shuts down, with nothing in flight.
func (s *Store) Leave(ctx context.Context, name string) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`DELETE FROM herald_outbox_relays WHERE destination = ? AND name = ?`, s.destination, name).Error; err != nil {
			return err
		}
		return tx.Exec(`UPDATE herald_outbox_buckets SET owner = NULL, expires_at = NULL WHERE destination = ? AND owner = ?`,
			s.destination, name).Error
	})
	if err != nil {
		return fmt.Errorf("outbox leave: %w", err)
	}
	return nil
}

// BucketLeases is what Lease found and did.
type BucketLeases struct {
	// Held are the buckets owner holds now, in ascending order.
	Held []int
	// TakenOver are the buckets of Held whose previous holder let its lease
	// run out instead of handing it back: that relay died or stalled, and
	// rows it had published may come again.
	TakenOver []int
}

// Lease renews the buckets owner holds until now+lease and, while it holds
// fewer than want, takes free buckets or buckets whose lease has run out.
// Buckets whose lease has run out it takes whatever it holds: their relay
// died or stalled, and its keys must not wait until a relay short of its
// share comes by (the relays' count still includes the dead one until its
// own lease runs out); the caller gives back what is beyond its share. A
// bucket changes hands only by a conditional UPDATE that re-checks it is
// free, so two relays never both take one.
func (s *Store) Lease(ctx context.Context, owner string, want int, lease time.Duration) (BucketLeases, error) {
	var out BucketLeases
	now := s.now()
	until, nowEnc := s.d.encodeTime(now.Add(lease)), s.d.encodeTime(now)
	db := s.db.WithContext(ctx)
	var exists int64
	if err := db.Raw(`SELECT COUNT(*) FROM herald_outbox_buckets WHERE destination = ?`, s.destination).Scan(&exists).Error; err != nil {
		return out, fmt.Errorf("outbox lease: %w", err)
	}
	if exists < Buckets {
		if err := db.Exec(s.d.insertBuckets(s.destination)).Error; err != nil {
			return out, fmt.Errorf("outbox lease: create buckets: %w", err)
		}
	}
	// Renew by primary key: an UPDATE filtered on owner alone would lock
	// every bucket row it scans on MySQL (REPEATABLE READ) and deadlock with
	// relays taking buckets at the same time.
	held, err := s.heldBuckets(ctx, owner)
	if err != nil {
		return out, err
	}
	if len(held) > 0 {
		r := db.Exec(`UPDATE herald_outbox_buckets SET expires_at = ? WHERE destination = ? AND bucket IN ? AND owner = ?`,
			until, s.destination, held, owner)
		if r.Error != nil {
			return out, fmt.Errorf("outbox lease: renew: %w", r.Error)
		}
		if r.RowsAffected < int64(len(held)) {
			// A bucket may have been taken between the read and the
			// renewal (its lease had run out): hold only what is ours.
			if held, err = s.heldBuckets(ctx, owner); err != nil {
				return out, err
			}
		}
	}
	prev := map[int]bool{} // buckets taken whose lease another relay let run out
	missing := want - len(held)
	took := false
	if missing <= 0 {
		// Holding its share, the relay looks only for buckets whose lease
		// ran out, and without locking anything unless there are some.
		var lapsed int64
		if err := db.Raw(`SELECT COUNT(*) FROM herald_outbox_buckets WHERE destination = ? AND owner IS NOT NULL AND expires_at <= ?`,
			s.destination, nowEnc).Scan(&lapsed).Error; err != nil {
			return out, fmt.Errorf("outbox lease: %w", err)
		}
		if lapsed == 0 {
			out.Held = held
			return out, nil
		}
	}
	{
		// Candidates are locked, skipping those another taker holds, and
		// taken in one transaction: a taker never waits on another, so
		// relays joining at once cannot deadlock (multi-row UPDATEs lock
		// rows in no fixed order).
		err := db.Transaction(func(tx *gorm.DB) error {
			var free []struct {
				Bucket int
				Owner  sql.NullString
			}
			cond := `owner IS NOT NULL AND expires_at <= ?` // run out
			if missing > 0 {
				cond = `(owner IS NULL OR expires_at <= ?)`
			}
			if err := tx.Raw(`SELECT bucket, owner FROM herald_outbox_buckets
WHERE destination = ? AND `+cond+` ORDER BY bucket`+s.d.skipLocked, s.destination, nowEnc).Scan(&free).Error; err != nil {
				return fmt.Errorf("find free buckets: %w", err)
			}
			// Start at a point of the owner's own: relays joining together
			// then mostly ask for different buckets.
			if len(free) > 0 {
				off := int(hashName(owner) % uint32(len(free)))
				free = append(free[off:], free[:off]...)
			}
			var take []struct {
				Bucket int
				Owner  sql.NullString
			}
			for i, f := range free {
				if i < missing || f.Owner.Valid {
					take = append(take, f)
				}
			}
			if len(take) == 0 {
				return nil
			}
			args := []any{owner, until, s.destination}
			for _, f := range take {
				args = append(args, f.Bucket)
			}
			if err := tx.Exec(`UPDATE herald_outbox_buckets SET owner = ?, expires_at = ?
WHERE destination = ? AND bucket IN (`+placeholders(len(take))+`) AND (owner IS NULL OR expires_at <= ?)`,
				append(args, nowEnc)...).Error; err != nil {
				return fmt.Errorf("take buckets: %w", err)
			}
			took = true
			for _, f := range take {
				if f.Owner.Valid && f.Owner.String != owner {
					prev[f.Bucket] = true
				}
			}
			return nil
		}, &sql.TxOptions{Isolation: s.d.leaseIsolation})
		if err != nil {
			return out, fmt.Errorf("outbox lease: %w", err)
		}
		if took {
			if held, err = s.heldBuckets(ctx, owner); err != nil {
				return out, err
			}
		}
	}
	out.Held = held
	for _, b := range held {
		if prev[b] {
			out.TakenOver = append(out.TakenOver, b)
		}
	}
	return out, nil
}

func (s *Store) heldBuckets(ctx context.Context, owner string) ([]int, error) {
	var held []int
	if err := s.db.WithContext(ctx).Raw(`SELECT bucket FROM herald_outbox_buckets WHERE destination = ? AND owner = ? ORDER BY bucket`,
		s.destination, owner).Scan(&held).Error; err != nil {
		return nil, fmt.Errorf("outbox lease: read held buckets: %w", err)
	}
	return held, nil
}

// hashName is FNV-1a: a stable spread of relay names, nothing secret.
func hashName(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// ReleaseBuckets hands buckets owner holds back at once. The caller must
// have nothing of them in flight.
func (s *Store) ReleaseBuckets(ctx context.Context, owner string, buckets []int) error {
	if len(buckets) == 0 {
		return nil
	}
	args := []any{s.destination, owner}
	for _, b := range buckets {
		args = append(args, b)
	}
	err := s.db.WithContext(ctx).Exec(`UPDATE herald_outbox_buckets SET owner = NULL, expires_at = NULL
WHERE destination = ? AND owner = ? AND bucket IN (`+placeholders(len(buckets))+`)`, args...).Error
	if err != nil {
		return fmt.Errorf("outbox release buckets: %w", err)
	}
	return nil
}

// Wait registers the relay name as waiting until the given time, so that
// writers' commits ring the doorbell (NotifyChannel) for it. Writers pay for
// NOTIFY only while some relay waits. Without a doorbell it does nothing.
func (s *Store) Wait(ctx context.Context, name string, until time.Time) error {
	if !s.d.doorbell {
		return nil
	}
	err := s.setDoorbell(ctx, `INSERT INTO herald_outbox_waiters (name, expires_at) VALUES (?, ?)
ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at`, name, s.d.encodeTime(until))
	if err != nil {
		return fmt.Errorf("outbox wait: %w", err)
	}
	return nil
}

// StopWaiting takes the relay name off the doorbell: it has work again.
func (s *Store) StopWaiting(ctx context.Context, name string) error {
	if !s.d.doorbell {
		return nil
	}
	if err := s.setDoorbell(ctx, `DELETE FROM herald_outbox_waiters WHERE name = ?`, name); err != nil {
		return fmt.Errorf("outbox stop waiting: %w", err)
	}
	return nil
}

// setDoorbell changes a relay's row of herald_outbox_waiters with stmt and
// sets the sequence the writers' trigger reads (migration 0010) to the
// latest expiry among the waiting relays, in epoch seconds: 0 when none
// waits.
func (s *Store) setDoorbell(ctx context.Context, stmt string, args ...any) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// setval is not transactional: relays changing their rows at once
		// take turns, so that the last to set the sequence has seen every
		// other's committed row, and a waiting relay is never switched off.
		if err := tx.Exec(`LOCK TABLE herald_outbox_waiters IN SHARE ROW EXCLUSIVE MODE`).Error; err != nil {
			return err
		}
		if err := tx.Exec(stmt, args...).Error; err != nil {
			return err
		}
		return tx.Exec(`SELECT setval('herald_outbox_doorbell', COALESCE(CEIL(EXTRACT(EPOCH FROM MAX(expires_at)))::bigint, 0))
FROM herald_outbox_waiters WHERE expires_at > now()`).Error
	})
}

// ReadQuery selects what Read returns.
type ReadQuery struct {
	// Buckets are the buckets to read: those the caller holds. None reads
	// nothing.
	Buckets []int
	// After returns only rows with a greater seq.
	After int64
	// SkipKeys leaves out the rows of these partition keys (keys the relay
	// holds back), so that a long held backlog is not sent over the wire on
	// every pass.
	SkipKeys []string
	// RoutedOnly leaves out rows the relay has not yet fanned out (Route):
	// a row must reach every destination before main may delete it.
	RoutedOnly bool
	Limit      int
}

// Read returns up to q.Limit pending rows of the store's destination in seq
// order, taking no locks and writing nothing: the caller must hold the
// buckets it reads (see Lease). Rows in backoff are returned too, with their
// AvailableAt, because a key's waiting head holds back the rest of its key.
func (s *Store) Read(ctx context.Context, q ReadQuery) ([]Row, error) {
	var b strings.Builder
	b.WriteString(`SELECT seq, destination, event_id, event_type, partition_key, payload, attempts, available_at, created_at, last_error
FROM herald_outbox WHERE state = 'pending' AND destination = ? AND seq > ?`)
	args := []any{s.destination, q.After}
	if len(q.Buckets) == 0 {
		return nil, nil
	}
	if len(q.Buckets) < Buckets { // holding them all needs no filter
		b.WriteString(` AND bucket IN (` + placeholders(len(q.Buckets)) + `)`)
		for _, bk := range q.Buckets {
			args = append(args, bk)
		}
	}
	if len(q.SkipKeys) > 0 {
		b.WriteString(` AND partition_key NOT IN (` + placeholders(len(q.SkipKeys)) + `)`)
		for _, k := range q.SkipKeys {
			args = append(args, k)
		}
	}
	if q.RoutedOnly {
		b.WriteString(` AND ` + s.d.routed)
	}
	b.WriteString(` ORDER BY seq LIMIT ?`)
	args = append(args, q.Limit)
	rows, err := s.db.WithContext(ctx).Raw(b.String(), args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("outbox read: %w", err)
	}
	defer rows.Close()
	out := make([]Row, 0, q.Limit)
	for rows.Next() {
		r := Row{State: StatePending}
		var avail, created any
		var lastErr sql.NullString
		if err := rows.Scan(&r.Seq, &r.Destination, &r.EventID, &r.EventType, &r.PartitionKey, &r.Payload, &r.Attempts,
			&avail, &created, &lastErr); err != nil {
			return nil, fmt.Errorf("outbox read: scan: %w", err)
		}
		if r.AvailableAt, err = decodeTime(avail); err != nil {
			return nil, fmt.Errorf("outbox read: available_at of %s: %w", r.EventID, err)
		}
		if r.CreatedAt, err = decodeTime(created); err != nil {
			return nil, fmt.Errorf("outbox read: created_at of %s: %w", r.EventID, err)
		}
		r.LastError = lastErr.String
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox read: %w", err)
	}
	return out, nil
}

// ParkedKeys returns the partition keys in buckets that have a dead letter
// in the store's destination: with a relay's ParkKey policy their pending
// rows wait until it is retried or purged. Rows without a key are never
// parked.
func (s *Store) ParkedKeys(ctx context.Context, buckets []int) ([]string, error) {
	if len(buckets) == 0 {
		return nil, nil
	}
	q := `SELECT DISTINCT partition_key FROM herald_outbox WHERE state = 'dead' AND destination = ? AND partition_key <> ''`
	args := []any{s.destination}
	if len(buckets) < Buckets {
		q += ` AND bucket IN (` + placeholders(len(buckets)) + `)`
		for _, bk := range buckets {
			args = append(args, bk)
		}
	}
	var keys []string
	if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&keys).Error; err != nil {
		return nil, fmt.Errorf("outbox parked keys: %w", err)
	}
	return keys, nil
}

// Record stores what became of rows a relay read, in one transaction:
// delivered rows are deleted (or kept as delivered, with
// WithKeepDelivered), failed ones count an attempt and wait until RetryAt,
// dead ones keep Err as their reason. Only rows still pending are touched:
// an operator may have dead-lettered or purged one meanwhile, and that
// decision stands. Nothing is fenced by owner: recording that the broker
// acknowledged a row is right whoever does it.
//
// attempts, when given, go into the delivery log (Attempts) in the same
// transaction, so the log holds an attempt if and only if its outcome was
// stored. They may include attempts without an outcome: one to a destination
// that was down as a whole changes no row.
func (s *Store) Record(ctx context.Context, outcomes []Outcome, attempts ...Attempt) error {
	if len(outcomes) == 0 && len(attempts) == 0 {
		return nil
	}
	delivered := make([]any, 0, len(outcomes))
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		delivered = delivered[:0]
		for _, o := range outcomes {
			var err error
			switch {
			case o.Err == nil:
				delivered = append(delivered, o.Seq)
				continue
			case o.Dead:
				// available_at dates the death: purge --older-than
				// measures a dead letter's age by it.
				err = tx.Exec(`UPDATE herald_outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, available_at = ?
WHERE seq = ? AND state = 'pending'`, o.Err.Error(), s.d.encodeTime(s.now()), o.Seq).Error
			default:
				err = tx.Exec(`UPDATE herald_outbox SET attempts = attempts + 1, last_error = ?, available_at = ?
WHERE seq = ? AND state = 'pending'`, o.Err.Error(), s.d.encodeTime(o.RetryAt), o.Seq).Error
			}
			if err != nil {
				return fmt.Errorf("record failure of row %d: %w", o.Seq, err)
			}
		}
		if err := s.insertAttempts(tx, attempts); err != nil {
			return err
		}
		if len(delivered) == 0 {
			return nil
		}
		in := placeholders(len(delivered))
		var err error
		if s.keepDelivered {
			err = tx.Exec(`UPDATE herald_outbox SET state = 'delivered', delivered_at = ?, last_error = NULL
WHERE state = 'pending' AND seq IN (`+in+`)`, append([]any{s.d.encodeTime(s.now())}, delivered...)...).Error
		} else {
			err = tx.Exec(`DELETE FROM herald_outbox WHERE state = 'pending' AND seq IN (`+in+`)`, delivered...).Error
		}
		if err != nil {
			return fmt.Errorf("record %d delivered: %w", len(delivered), err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox record: %w", err)
	}
	return nil
}

// Ordered reports whether the store keeps each partition key's events in
// order (WithOrdering).
func (s *Store) Ordered() bool { return s.ordered }

// bucketRows is the VALUES list creating every bucket of a destination.
func bucketRows(destination string) string {
	vals := make([]string, Buckets)
	quoted := "'" + strings.ReplaceAll(destination, "'", "''") + "'"
	for i := range vals {
		vals[i] = fmt.Sprintf("(%s, %d)", quoted, i)
	}
	return strings.Join(vals, ", ")
}
