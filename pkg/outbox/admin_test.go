package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/outbox"
)

const (
	typeAlpha = "io.herald.test.alpha.created"
	typeBeta  = "io.herald.test.beta.updated"
	typeGamma = "io.herald.test.gamma.deleted"
)

// seed is one row to put in the outbox, and the state to drive it to.
type seed struct {
	typ   string
	state string // "pending", "in-flight", "dead" or "delivered"
}

// adminFixture has every state in two types, interleaved so that filters
// and batches have to pick rows out of the middle.
var adminFixture = []seed{
	{typeAlpha, "pending"},
	{typeAlpha, "dead"},
	{typeBeta, "dead"},
	{typeAlpha, "delivered"},
	{typeBeta, "in-flight"},
	{typeBeta, "pending"},
	{typeAlpha, "dead"},
	{typeGamma, "delivered"},
	{typeBeta, "dead"},
}

const (
	// seedLease is how long the seeder leases the in-flight row's bucket.
	seedLease = time.Hour
	// seedBackoff is how far ahead a dead row's last attempt was due: each
	// failed once and waited that long before it died.
	seedBackoff = time.Hour
	// inFlightKey is the partition key of in-flight rows, whose bucket
	// differs from that of the other rows (key '') wherever buckets differ
	// (TestBucketIsComputedFromThePartitionKey checks it). On SQLite every
	// row shares bucket 0, and so every pending row is in flight.
	inFlightKey = "L"
)

type seeded struct {
	db    *gorm.DB // for a second Store with other options over the same rows
	store *outbox.Store
	rows  []outbox.Row // rows[i] is seeds[i]'s row once seeded
}

// seedOutbox writes one event per seed into a fresh outbox of the dialect
// and drives each to its state through the relay's own calls, so the rows
// look exactly as they do in production: one read of everything, then
// Record (a failure and then death, or delivery), nothing (pending), or a
// lease of the row's bucket (in flight).
func seedOutbox(t *testing.T, dialect string, seeds []seed) seeded {
	t.Helper()
	ctx := context.Background()
	db := testdb.Migrated(t, dialect).Gorm
	store, err := outbox.NewStore(db, outbox.WithKeepDelivered(true))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(seeds))
	for i, sd := range seeds {
		var opts []event.Option
		if sd.state == "in-flight" {
			opts = append(opts, event.WithPartitionKey(inFlightKey))
		}
		ev, err := event.New(sd.typ, "/test", map[string]int{"n": i}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		// One Write per row, so seq order is seed order on every database.
		if err := outbox.Write(ctx, db, ev); err != nil {
			t.Fatal(err)
		}
		ids[i] = ev.ID
	}
	read, err := store.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: len(seeds)})
	if err != nil || len(read) != len(seeds) {
		t.Fatalf("read %d seeded rows: got %d, %v", len(seeds), len(read), err)
	}
	seqOf := map[string]int64{}
	for _, r := range read {
		seqOf[r.EventID] = r.Seq
	}
	var failed, finished []outbox.Outcome
	var inFlight []int64
	for i, sd := range seeds {
		seq := seqOf[ids[i]]
		switch sd.state {
		case "dead":
			failed = append(failed, outbox.Outcome{Seq: seq, Err: errors.New("broker down"), RetryAt: time.Now().Add(seedBackoff)})
			finished = append(finished, outbox.Outcome{Seq: seq, Err: fmt.Errorf("broker rejected row %d", i), Dead: true})
		case "delivered":
			finished = append(finished, outbox.Outcome{Seq: seq})
		case "pending":
		case "in-flight":
			inFlight = append(inFlight, seq)
		default:
			t.Fatalf("seed %d: unknown state %q", i, sd.state)
		}
	}
	for _, outcomes := range [][]outbox.Outcome{failed, finished} {
		if err := store.Record(ctx, outcomes); err != nil {
			t.Fatal(err)
		}
	}
	if len(inFlight) > 0 {
		leaseBucketsOf(t, db, store, inFlight)
	}
	return seeded{db: db, store: store, rows: snapshot(t, store, ids)}
}

// leaseBucketsOf leases the buckets of the rows seqs, and only them, to
// "seeder" for seedLease.
func leaseBucketsOf(t *testing.T, db *gorm.DB, store *outbox.Store, seqs []int64) {
	t.Helper()
	ctx := context.Background()
	var want []int
	if err := db.Raw(`SELECT DISTINCT bucket FROM herald_outbox WHERE seq IN ?`, seqs).Scan(&want).Error; err != nil {
		t.Fatal(err)
	}
	all, err := store.Lease(ctx, "seeder", outbox.Buckets, seedLease)
	if err != nil || len(all.Held) != outbox.Buckets {
		t.Fatalf("seeder leased %v, %v; want every bucket", all.Held, err)
	}
	others := slices.DeleteFunc(all.Held, func(b int) bool { return slices.Contains(want, b) })
	if err := store.ReleaseBuckets(ctx, "seeder", others); err != nil {
		t.Fatal(err)
	}
}

// snapshot reads the rows of ids, in that order.
func snapshot(t *testing.T, store *outbox.Store, ids []string) []outbox.Row {
	t.Helper()
	rows := make([]outbox.Row, len(ids))
	for i, id := range ids {
		r, err := store.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		rows[i] = r
	}
	return rows
}

func eventIDs(rows []outbox.Row) []string {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.EventID
	}
	return ids
}

// indexesWhere returns the positions of seeds that satisfy keep.
func indexesWhere(seeds []seed, keep func(seed) bool) []int {
	var out []int
	for i, sd := range seeds {
		if keep(sd) {
			out = append(out, i)
		}
	}
	return out
}

// progressLog records progress callbacks and checks they count up to the
// operation's result.
type progressLog []int

func (p *progressLog) record(done int) { *p = append(*p, done) }

func (p progressLog) check(t *testing.T, returned int) {
	t.Helper()
	if returned == 0 {
		if len(p) > 0 && p[len(p)-1] != 0 {
			t.Errorf("progress %v for an operation that changed nothing", p)
		}
		return
	}
	if len(p) == 0 || p[len(p)-1] != returned {
		t.Errorf("progress %v does not end at the returned count %d", p, returned)
	}
	for i := 1; i < len(p); i++ {
		if p[i] < p[i-1] {
			t.Errorf("progress %v goes backwards", p)
		}
	}
}

func TestTypeStatsCountsEachTypeByState(t *testing.T) {
	ctx := context.Background()
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			s := seedOutbox(t, dialect, adminFixture)
			for _, tc := range []struct {
				name string
				at   time.Duration // when the stats are taken, from now
				want []outbox.TypeStats
				// sqlite, when set, is what SQLite counts: its rows share
				// one bucket, so the lease puts every pending row in flight.
				sqlite []outbox.TypeStats
			}{
				{"while the lease runs", 0, []outbox.TypeStats{
					{Destination: outbox.MainDestination, Type: typeAlpha, Pending: 1, Dead: 2, Delivered: 1},
					{Destination: outbox.MainDestination, Type: typeBeta, Pending: 2, InFlight: 1, Dead: 2},
					{Destination: outbox.MainDestination, Type: typeGamma, Delivered: 1},
				}, []outbox.TypeStats{
					{Destination: outbox.MainDestination, Type: typeAlpha, Pending: 1, InFlight: 1, Dead: 2, Delivered: 1},
					{Destination: outbox.MainDestination, Type: typeBeta, Pending: 2, InFlight: 2, Dead: 2},
					{Destination: outbox.MainDestination, Type: typeGamma, Delivered: 1},
				}},
				{"after the lease expired nothing is in flight", 2 * seedLease, []outbox.TypeStats{
					{Destination: outbox.MainDestination, Type: typeAlpha, Pending: 1, Dead: 2, Delivered: 1},
					{Destination: outbox.MainDestination, Type: typeBeta, Pending: 2, Dead: 2},
					{Destination: outbox.MainDestination, Type: typeGamma, Delivered: 1},
				}, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					if dialect == "sqlite" && tc.sqlite != nil {
						tc.want = tc.sqlite
					}
					at := time.Now().Add(tc.at)
					store, err := outbox.NewStore(s.db, outbox.WithClock(func() time.Time { return at }))
					if err != nil {
						t.Fatal(err)
					}
					got, err := store.TypeStats(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != len(tc.want) {
						t.Fatalf("got %d types %+v, want %d", len(got), got, len(tc.want))
					}
					for i, w := range tc.want {
						g := got[i]
						oldest := g.OldestPending
						g.OldestPending = time.Time{}
						if g != w {
							t.Errorf("type %d = %+v, want %+v", i, g, w)
						}
						if (w.Pending > 0) != !oldest.IsZero() {
							t.Errorf("%s: oldest pending %v with %d pending", w.Type, oldest, w.Pending)
						}
					}
					// Alpha's oldest pending row is its first seed; beta's is its in-flight row.
					if got[0].OldestPending.Sub(s.rows[0].CreatedAt).Abs() > time.Millisecond {
						t.Errorf("alpha oldest pending = %v, want %v", got[0].OldestPending, s.rows[0].CreatedAt)
					}
					if got[1].OldestPending.Sub(s.rows[4].CreatedAt).Abs() > time.Millisecond {
						t.Errorf("beta oldest pending = %v, want %v", got[1].OldestPending, s.rows[4].CreatedAt)
					}
				})
			}
		})
	}
}

func TestListRowsFiltersAndPages(t *testing.T) {
	ctx := context.Background()
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			s := seedOutbox(t, dialect, adminFixture)
			all := indexesWhere(adminFixture, func(seed) bool { return true })
			for _, tc := range []struct {
				name   string
				filter func(rows []outbox.Row) outbox.Filter
				want   []int // seed indexes, in order
			}{
				{"zero filter lists everything", func([]outbox.Row) outbox.Filter { return outbox.Filter{} }, all},
				{"dead", func([]outbox.Row) outbox.Filter { return outbox.Filter{State: outbox.StateDead} },
					indexesWhere(adminFixture, func(sd seed) bool { return sd.state == "dead" })},
				{"pending includes in flight", func([]outbox.Row) outbox.Filter { return outbox.Filter{State: outbox.StatePending} },
					indexesWhere(adminFixture, func(sd seed) bool { return sd.state == "pending" || sd.state == "in-flight" })},
				{"delivered of one type", func([]outbox.Row) outbox.Filter {
					return outbox.Filter{State: outbox.StateDelivered, Type: typeGamma}
				}, []int{7}},
				{"type", func([]outbox.Row) outbox.Filter { return outbox.Filter{Type: typeBeta} },
					indexesWhere(adminFixture, func(sd seed) bool { return sd.typ == typeBeta })},
				{"ids", func(rows []outbox.Row) outbox.Filter {
					return outbox.Filter{IDs: []string{rows[5].EventID, rows[1].EventID, "no-such-id"}}
				}, []int{1, 5}},
				{"ids and state", func(rows []outbox.Row) outbox.Filter {
					return outbox.Filter{State: outbox.StateDead, IDs: []string{rows[5].EventID, rows[1].EventID}}
				}, []int{1}},
				{"limit", func([]outbox.Row) outbox.Filter { return outbox.Filter{Limit: 3} }, []int{0, 1, 2}},
				{"after seq", func(rows []outbox.Row) outbox.Filter {
					return outbox.Filter{State: outbox.StateDead, AfterSeq: rows[2].Seq}
				}, []int{6, 8}},
				{"unknown type", func([]outbox.Row) outbox.Filter { return outbox.Filter{Type: "io.herald.test.none"} }, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					f := tc.filter(s.rows)
					got, err := s.store.ListRows(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					var want []string
					for _, i := range tc.want {
						want = append(want, s.rows[i].EventID)
					}
					if !slices.Equal(eventIDs(got), want) {
						t.Errorf("ListRows(%+v) = %v, want %v", f, eventIDs(got), want)
					}
					if n, err := s.store.Count(ctx, f); err != nil || n != len(want) {
						t.Errorf("Count(%+v) = %d, %v; want %d", f, n, err, len(want))
					}
				})
			}

			t.Run("pages of two cover every row once", func(t *testing.T) {
				var seen []string
				f := outbox.Filter{Limit: 2}
				for page := 0; ; page++ {
					rows, err := s.store.ListRows(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					if len(rows) == 0 {
						break
					}
					if len(rows) > 2 || page > len(adminFixture) {
						t.Fatalf("page %d has %d rows", page, len(rows))
					}
					seen = append(seen, eventIDs(rows)...)
					f.AfterSeq = rows[len(rows)-1].Seq
				}
				if !slices.Equal(seen, eventIDs(s.rows)) {
					t.Errorf("paged %v, want %v", seen, eventIDs(s.rows))
				}
			})

			t.Run("invalid filters are refused", func(t *testing.T) {
				for _, f := range []outbox.Filter{
					{State: "lost"},
					{Limit: -1},
					{IDs: make([]string, outbox.MaxFilterIDs+1)},
				} {
					if _, err := s.store.ListRows(ctx, f); !errors.Is(err, outbox.ErrInvalidFilter) {
						t.Errorf("ListRows(%+v) error = %v, want ErrInvalidFilter", f.State, err)
					}
				}
			})
		})
	}
}

func TestRetryMovesOnlyDeadRowsBackToPending(t *testing.T) {
	ctx := context.Background()
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				filter func(rows []outbox.Row) outbox.Filter
				want   []int // seed indexes retried
			}{
				{"by id, ignoring ids of rows that are not dead", func(rows []outbox.Row) outbox.Filter {
					return outbox.Filter{IDs: []string{rows[2].EventID, rows[0].EventID, rows[3].EventID, rows[4].EventID}}
				}, []int{2}},
				{"by type", func([]outbox.Row) outbox.Filter { return outbox.Filter{Type: typeAlpha} }, []int{1, 6}},
				{"all, in batches of one", func([]outbox.Row) outbox.Filter { return outbox.Filter{BatchSize: 1} }, []int{1, 2, 6, 8}},
				{"all, in batches of two", func([]outbox.Row) outbox.Filter { return outbox.Filter{BatchSize: 2} }, []int{1, 2, 6, 8}},
				{"limit", func([]outbox.Row) outbox.Filter { return outbox.Filter{Limit: 3, BatchSize: 2} }, []int{1, 2, 6}},
				{"a type without dead rows", func([]outbox.Row) outbox.Filter { return outbox.Filter{Type: typeGamma} }, nil},
				{"by error text, in any case", func([]outbox.Row) outbox.Filter { return outbox.Filter{ErrorContains: "REJECTED row 6"} }, []int{6}},
				{"by error text and type", func([]outbox.Row) outbox.Filter {
					return outbox.Filter{ErrorContains: "rejected", Type: typeBeta}
				}, []int{2, 8}},
				// LIKE's wildcards are text like any other.
				{"by error text with wildcards", func([]outbox.Row) outbox.Filter { return outbox.Filter{ErrorContains: "broker%row"} }, nil},
				{"by error text with an underscore", func([]outbox.Row) outbox.Filter { return outbox.Filter{ErrorContains: "row_"} }, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					s := seedOutbox(t, dialect, adminFixture)
					f := tc.filter(s.rows)
					if n, err := s.store.Count(ctx, outbox.Filter{State: outbox.StateDead, Type: f.Type, IDs: f.IDs,
						ErrorContains: f.ErrorContains, Limit: f.Limit}); err != nil || n != len(tc.want) {
						t.Errorf("Count of dead rows = %d, %v; want %d", n, err, len(tc.want))
					}
					var progress progressLog
					n, err := s.store.Retry(ctx, f, progress.record)
					if err != nil {
						t.Fatal(err)
					}
					if n != len(tc.want) {
						t.Errorf("Retry = %d, want %d", n, len(tc.want))
					}
					progress.check(t, n)
					if f.BatchSize == 1 && len(progress) != n {
						t.Errorf("batches of one reported progress %v for %d rows", progress, n)
					}

					after := snapshot(t, s.store, eventIDs(s.rows))
					for i, before := range s.rows {
						got := after[i]
						if !slices.Contains(tc.want, i) {
							if !rowsEqual(got, before) {
								t.Errorf("row %d (%s) changed:\n got %+v\nwant %+v", i, adminFixture[i].state, got, before)
							}
							continue
						}
						// Its last backoff ran an hour ahead; a retried row
						// waits for nothing.
						if got.State != outbox.StatePending || got.Attempts != 0 || got.AvailableAt.After(time.Now()) {
							t.Errorf("retried row %d = %+v, want pending, 0 attempts, available now", i, got)
						}
						if got.LastError == "" || got.LastError != before.LastError {
							t.Errorf("retried row %d last error = %q, want the old %q kept", i, got.LastError, before.LastError)
						}
					}

					// A relay reads the retried rows again, in seq order
					// among the pending and in-flight ones.
					read, err := s.store.Read(ctx, outbox.ReadQuery{Buckets: outbox.AllBuckets(), Limit: 100})
					if err != nil {
						t.Fatal(err)
					}
					var want []string
					for i, sd := range adminFixture {
						if sd.state == "pending" || sd.state == "in-flight" || slices.Contains(tc.want, i) {
							want = append(want, s.rows[i].EventID)
						}
					}
					if !slices.Equal(eventIDs(read), want) {
						t.Errorf("read %v after retry, want %v", eventIDs(read), want)
					}
				})
			}

			t.Run("refuses states other than dead", func(t *testing.T) {
				s := seedOutbox(t, dialect, adminFixture)
				for _, st := range []outbox.State{outbox.StatePending, outbox.StateDelivered} {
					n, err := s.store.Retry(ctx, outbox.Filter{State: st}, nil)
					if !errors.Is(err, outbox.ErrInvalidFilter) || n != 0 {
						t.Errorf("Retry(state %s) = %d, %v; want ErrInvalidFilter", st, n, err)
					}
				}
			})
		})
	}
}

func TestPurgeDeletesFinishedRowsAndNeverPending(t *testing.T) {
	ctx := context.Background()
	for _, dialect := range testdb.Dialects() {
		t.Run(dialect, func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				filter  func(now time.Time) outbox.PurgeFilter
				want    []int // seed indexes deleted
				wantErr error
			}{
				{"dead", func(time.Time) outbox.PurgeFilter { return outbox.PurgeFilter{State: outbox.StateDead} }, []int{1, 2, 6, 8}, nil},
				{"dead in batches of one", func(time.Time) outbox.PurgeFilter {
					return outbox.PurgeFilter{State: outbox.StateDead, BatchSize: 1}
				}, []int{1, 2, 6, 8}, nil},
				{"delivered", func(time.Time) outbox.PurgeFilter {
					return outbox.PurgeFilter{State: outbox.StateDelivered, BatchSize: 1}
				}, []int{3, 7}, nil},
				{"dead of one type", func(time.Time) outbox.PurgeFilter {
					return outbox.PurgeFilter{State: outbox.StateDead, Type: typeBeta}
				}, []int{2, 8}, nil},
				// Dead rows age from when they died (available_at, set
				// by Record then), not from their event's creation nor
				// from the backoff they were waiting out (an hour ahead):
				// the seeding killed them a moment ago.
				{"dead older than an hour ago", func(now time.Time) outbox.PurgeFilter {
					return outbox.PurgeFilter{State: outbox.StateDead, OlderThan: now.Add(-time.Hour)}
				}, nil, nil},
				{"dead older than now", func(now time.Time) outbox.PurgeFilter {
					return outbox.PurgeFilter{State: outbox.StateDead, OlderThan: now.Add(time.Second)}
				}, []int{1, 2, 6, 8}, nil},
				{"delivered older than an hour ago", func(now time.Time) outbox.PurgeFilter {
					return outbox.PurgeFilter{State: outbox.StateDelivered, OlderThan: now.Add(-time.Hour)}
				}, nil, nil},
				{"delivered older than now", func(now time.Time) outbox.PurgeFilter {
					return outbox.PurgeFilter{State: outbox.StateDelivered, OlderThan: now}
				}, []int{3, 7}, nil},
				{"pending is refused", func(time.Time) outbox.PurgeFilter { return outbox.PurgeFilter{State: outbox.StatePending} }, nil, outbox.ErrInvalidFilter},
				{"no state is refused", func(time.Time) outbox.PurgeFilter { return outbox.PurgeFilter{Type: typeAlpha} }, nil, outbox.ErrInvalidFilter},
			} {
				t.Run(tc.name, func(t *testing.T) {
					s := seedOutbox(t, dialect, adminFixture)
					f := tc.filter(time.Now())
					count, countErr := s.store.PurgeCount(ctx, f)
					var progress progressLog
					n, err := s.store.Purge(ctx, f, progress.record)
					if !errors.Is(err, tc.wantErr) || !errors.Is(countErr, tc.wantErr) {
						t.Fatalf("Purge error = %v, PurgeCount error = %v; want %v", err, countErr, tc.wantErr)
					}
					if n != len(tc.want) || count != n {
						t.Errorf("Purge = %d, PurgeCount = %d; want %d", n, count, len(tc.want))
					}
					progress.check(t, n)
					if f.BatchSize == 1 && len(progress) != n {
						t.Errorf("batches of one reported progress %v for %d rows", progress, n)
					}
					for i, before := range s.rows {
						got, err := s.store.Get(ctx, before.EventID)
						switch {
						case slices.Contains(tc.want, i):
							if !errors.Is(err, outbox.ErrNotFound) {
								t.Errorf("row %d (%s) not purged: %+v, %v", i, adminFixture[i].state, got, err)
							}
						case err != nil:
							t.Errorf("row %d (%s) gone: %v", i, adminFixture[i].state, err)
						case !rowsEqual(got, before):
							t.Errorf("row %d (%s) changed:\n got %+v\nwant %+v", i, adminFixture[i].state, got, before)
						}
					}
				})
			}
		})
	}
}

// rowsEqual compares rows field by field; times by instant, since a
// database hands them back in its own location and precision.
func rowsEqual(a, b outbox.Row) bool {
	times := func(r outbox.Row) []time.Time {
		return []time.Time{r.AvailableAt, r.CreatedAt, r.DeliveredAt}
	}
	if !slices.EqualFunc(times(a), times(b), time.Time.Equal) {
		return false
	}
	a.AvailableAt, a.CreatedAt, a.DeliveredAt = time.Time{}, time.Time{}, time.Time{}
	b.AvailableAt, b.CreatedAt, b.DeliveredAt = time.Time{}, time.Time{}, time.Time{}
	return a.Seq == b.Seq && a.Destination == b.Destination && a.EventID == b.EventID && a.EventType == b.EventType &&
		a.PartitionKey == b.PartitionKey && string(a.Payload) == string(b.Payload) && a.State == b.State &&
		a.Attempts == b.Attempts && a.LastError == b.LastError
}

// Totals keep the oldest pending of all, and ignore a type with none.
func TestTypeStatsAdd(t *testing.T) {
	older, newer := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	var total outbox.TypeStats
	for _, s := range []outbox.TypeStats{
		{Pending: 2, InFlight: 1, OldestPending: newer},
		{Dead: 3},
		{Pending: 1, Delivered: 4, OldestPending: older},
	} {
		total.Add(s)
	}
	want := outbox.TypeStats{Pending: 3, InFlight: 1, Dead: 3, Delivered: 4, OldestPending: older}
	if total != want {
		t.Errorf("total = %+v, want %+v", total, want)
	}
}
