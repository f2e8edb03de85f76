package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/console"
	"github.com/heraldhq/herald/pkg/outbox"
)

// outboxFlags are the flags every outbox subcommand shares.
type outboxFlags struct {
	config string
	output string
}

func (f *outboxFlags) json() bool { return f.output == "json" }

func outboxCmd(e env) *cobra.Command {
	f := &outboxFlags{}
	cmd := &cobra.Command{
		Use:   "outbox",
		Short: "Inspect the outbox and its delivery log, replay dead letters, purge delivered or dead rows",
		Long: "Operator tools for the outbox table. They work on the live table while relays run:\n" +
			"retry and purge change rows in short batches, so they never hold locks for long.\n" +
			"--output json prints one JSON document on stdout, for scripts.",
		// Runnable, so that NoArgs turns `herald outbox typo` into an
		// unknown-command usage error instead of help and exit 0.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if f.output != "text" && f.output != "json" {
				return usageError{fmt.Errorf("--output: %q is neither text nor json", f.output)}
			}
			return nil
		},
	}
	cmd.PersistentFlags().StringVarP(&f.config, "config", "c", "", "YAML config file (HERALD_* environment variables override it)")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "text", "text (tables for people) or json (one document, for scripts)")
	cmd.AddCommand(outboxStatsCmd(e, f), outboxListCmd(e, f), outboxRetryCmd(e, f), outboxPurgeCmd(e, f), outboxAttemptsCmd(e, f))
	return cmd
}

// openStore connects to the configured outbox and checks its schema is the
// one this binary reads, so a command never half-works on an old table.
func (e env) openStore(ctx context.Context, f *outboxFlags) (*outbox.Store, func(), error) {
	cfg, err := e.loadConfig(f.config)
	if err != nil {
		return nil, nil, err
	}
	db, err := openMigratedDB(ctx, cfg.Database)
	if err != nil {
		return nil, nil, err
	}
	store, err := outbox.NewStore(db)
	if err != nil {
		closeGorm(db)
		return nil, nil, err
	}
	return store, func() { closeGorm(db) }, nil
}

// openMigratedDB opens the outbox database for the operator's commands,
// which read and change what serve works on and so need its schema exactly:
// older, and a table may be missing; newer, and a column may be unknown.
func openMigratedDB(ctx context.Context, cfg config.Database) (*gorm.DB, error) {
	// Opening SQLite creates the file: an operator in the wrong directory
	// would get an empty outbox and a misleading "run migrate".
	if cfg.Driver == "sqlite" && isPlainPath(cfg.DSN) {
		if _, err := os.Stat(cfg.DSN); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no outbox database at %s (database.dsn): pass --config, or create it with `herald migrate`", cfg.DSN)
		}
	}
	db, err := app.OpenDB(cfg)
	if err != nil {
		return nil, err
	}
	cur, latest, err := outbox.SchemaVersion(ctx, db)
	switch {
	case err != nil:
	case cur < latest:
		err = fmt.Errorf("%w: database at version %d, this binary needs %d: run `herald migrate`", app.ErrSchemaOutdated, cur, latest)
	case cur > latest:
		err = fmt.Errorf("outbox schema at version %d is newer than this binary knows (%d): use a newer herald", cur, latest)
	}
	if err != nil {
		closeGorm(db)
		return nil, err
	}
	return db, nil
}

// isPlainPath tells a file path from an SQLite URI or in-memory name, which
// have no file to look for.
func isPlainPath(dsn string) bool {
	return !strings.HasPrefix(dsn, "file:") && !strings.Contains(dsn, "?") && !strings.Contains(dsn, ":memory:")
}

// redactRows hides the config's secrets in the rows' last errors, which an
// adapter's error may have quoted.
func (e env) redactRows(rows []outbox.Row) {
	for i := range rows {
		rows[i].LastError = e.secrets.Text(rows[i].LastError)
	}
}

// writeJSON prints v as the command's one JSON document.
func (e env) writeJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// statsJSON is one line of `outbox stats --output json`; its field names are
// a contract with scripts.
type statsJSON struct {
	Destination string `json:"destination,omitempty"`
	Type        string `json:"type,omitempty"`
	Pending     int    `json:"pending"`
	InFlight    int    `json:"in_flight"`
	Dead        int    `json:"dead"`
	Delivered   int    `json:"delivered"`
	// Null when nothing is pending.
	OldestPendingAt         *time.Time `json:"oldest_pending_at"`
	OldestPendingAgeSeconds *int64     `json:"oldest_pending_age_seconds"`
}

func newStatsJSON(ts outbox.TypeStats, now time.Time) statsJSON {
	s := statsJSON{Destination: ts.Destination, Type: ts.Type, Pending: ts.Pending, InFlight: ts.InFlight, Dead: ts.Dead, Delivered: ts.Delivered}
	if !ts.OldestPending.IsZero() {
		at := ts.OldestPending.UTC()
		age := int64(max(0, now.Sub(at)) / time.Second)
		s.OldestPendingAt, s.OldestPendingAgeSeconds = &at, &age
	}
	return s
}

func outboxStatsCmd(e env, f *outboxFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Count rows per event type: pending, in flight, dead, delivered, and how old the oldest pending one is",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, closeDB, err := e.openStore(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeDB()
			types, err := store.TypeStats(cmd.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			total := outbox.TypeStats{}
			for _, ts := range types {
				total.Add(ts)
			}
			if f.json() {
				doc := struct {
					Types []statsJSON `json:"types"`
					Total statsJSON   `json:"total"`
				}{Types: []statsJSON{}, Total: newStatsJSON(total, now)}
				for _, ts := range types {
					doc.Types = append(doc.Types, newStatsJSON(ts, now))
				}
				return e.writeJSON(doc)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "DESTINATION\tTYPE\tPENDING\tIN FLIGHT\tDEAD\tDELIVERED\tOLDEST PENDING")
			for _, ts := range append(types, total) {
				name := ts.Type
				if name == "" {
					name = "total"
				}
				oldest := "-"
				if !ts.OldestPending.IsZero() {
					oldest = humanAge(now.Sub(ts.OldestPending))
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", ts.Destination, name, ts.Pending, ts.InFlight, ts.Dead, ts.Delivered, oldest)
			}
			return tw.Flush()
		},
	}
}

// rowJSON is one row of `outbox list --output json`; its field names are a
// contract with scripts. Optional values are null rather than absent.
type rowJSON struct {
	Seq          int64           `json:"seq"`
	Destination  string          `json:"destination"`
	EventID      string          `json:"event_id"`
	Type         string          `json:"type"`
	PartitionKey string          `json:"partition_key"`
	State        outbox.State    `json:"state"`
	Attempts     int             `json:"attempts"`
	CreatedAt    time.Time       `json:"created_at"`
	AvailableAt  time.Time       `json:"available_at"`
	DeliveredAt  *time.Time      `json:"delivered_at"`
	LastError    *string         `json:"last_error"`
	Event        json.RawMessage `json:"event"` // the stored CloudEvent, as written
}

func newRowJSON(r outbox.Row) rowJSON {
	optString := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	optTime := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	ev := json.RawMessage(r.Payload)
	if !json.Valid(ev) {
		// Write only stores marshalled events, but one bad row edited by
		// hand must not make the whole document unparseable.
		ev, _ = json.Marshal(string(r.Payload))
	}
	return rowJSON{
		Seq: r.Seq, Destination: r.Destination, EventID: r.EventID, Type: r.EventType, PartitionKey: r.PartitionKey, State: r.State,
		Attempts: r.Attempts, CreatedAt: r.CreatedAt, AvailableAt: r.AvailableAt,
		DeliveredAt: optTime(r.DeliveredAt), LastError: optString(r.LastError), Event: ev,
	}
}

// oneState reads mutually exclusive state flags: the one set, or "" for none.
func oneState(flags map[outbox.State]bool) (outbox.State, error) {
	var picked []string
	var state outbox.State
	for st, on := range flags {
		if on {
			picked = append(picked, "--"+string(st))
			state = st
		}
	}
	if len(picked) > 1 {
		slices.Sort(picked) // maps iterate in random order; messages must not
		return "", fmt.Errorf("choose one of %s", strings.Join(picked, ", "))
	}
	return state, nil
}

func outboxListCmd(e env, f *outboxFlags) *cobra.Command {
	var dead, pending, delivered bool
	filter := outbox.Filter{}
	cmd := &cobra.Command{
		Use:   "list [--dead|--pending|--delivered] [--type T] [--limit N] [--after-seq SEQ]",
		Short: "List rows, oldest first (all states unless one is given)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			filter.State, err = oneState(map[outbox.State]bool{outbox.StateDead: dead, outbox.StatePending: pending, outbox.StateDelivered: delivered})
			if err != nil {
				return usageError{err}
			}
			if filter.Limit < 1 {
				return usageError{fmt.Errorf("--limit: must be at least 1 (got %d)", filter.Limit)}
			}
			store, closeDB, err := e.openStore(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeDB()
			rows, err := store.ListRows(cmd.Context(), filter)
			if err != nil {
				return err
			}
			e.redactRows(rows)
			// A full page may have more behind it; the last seq fetches it.
			var next *int64
			if len(rows) == filter.Limit {
				next = &rows[len(rows)-1].Seq
			}
			if f.json() {
				doc := struct {
					Rows         []rowJSON `json:"rows"`
					NextAfterSeq *int64    `json:"next_after_seq"`
				}{Rows: []rowJSON{}, NextAfterSeq: next}
				for _, r := range rows {
					doc.Rows = append(doc.Rows, newRowJSON(r))
				}
				return e.writeJSON(doc)
			}
			if len(rows) == 0 {
				fmt.Fprintln(e.stdout, "no matching events")
				return nil
			}
			writeRowTable(e.stdout, rows, time.Now())
			if next != nil {
				fmt.Fprintf(e.stderr, "showing %d; for the next page add --after-seq %d\n", len(rows), *next)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dead, "dead", false, "only dead rows")
	cmd.Flags().BoolVar(&pending, "pending", false, "only pending rows (including in flight)")
	cmd.Flags().BoolVar(&delivered, "delivered", false, "only delivered rows (kept only with keep-delivered)")
	cmd.Flags().StringVar(&filter.Type, "type", "", "only events of this exact type")
	cmd.Flags().StringVar(&filter.ErrorContains, "error", "", "only rows whose last error contains this text (any case)")
	cmd.Flags().StringVar(&filter.Destination, "destination", "", "only rows bound for this destination (main, or a destinations[].name); default all")
	cmd.Flags().IntVar(&filter.Limit, "limit", 50, "at most this many rows")
	cmd.Flags().Int64Var(&filter.AfterSeq, "after-seq", 0, "only rows after this seq (the last seq of the previous page)")
	return cmd
}

func writeRowTable(w io.Writer, rows []outbox.Row, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDESTINATION\tEVENT ID\tTYPE\tSTATE\tATTEMPTS\tAGE\tLAST ERROR")
	for _, r := range rows {
		state := string(r.State)
		if r.State == outbox.StatePending && r.AvailableAt.After(now) {
			state = "backoff"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Seq, r.Destination, r.EventID, r.EventType, state, r.Attempts,
			humanAge(now.Sub(r.CreatedAt)), oneLine(r.LastError, 60))
	}
	_ = tw.Flush()
}

// oneLine fits an error message into a table cell.
func oneLine(s string, width int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > width {
		return string(r[:width-1]) + "…"
	}
	return s
}

// humanAge renders a duration as an operator reads it at a glance: the two
// largest units, 42s, 3m12s, 5h07m, 3d04h.
func humanAge(d time.Duration) string { return console.Age(d) }

func outboxRetryCmd(e env, f *outboxFlags) *cobra.Command {
	var all bool
	filter := outbox.Filter{State: outbox.StateDead}
	cmd := &cobra.Command{
		Use:   "retry (--id ID... | --type T | --error TEXT | --all) [--destination D]",
		Short: "Make dead rows pending again, with attempts reset, for relays to publish",
		Long: "Make dead rows pending again: attempts reset to 0, available at once, last error kept as history.\n" +
			"Pending and delivered rows are never touched. Choose exactly one of --id, --type/--error or --all.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			selectors := 0
			for _, on := range []bool{len(filter.IDs) > 0, filter.Type != "" || filter.ErrorContains != "", all} {
				if on {
					selectors++
				}
			}
			if selectors != 1 {
				return usageError{errors.New("retry needs exactly one of --id ID..., --type TYPE and/or --error TEXT, or --all")}
			}
			if filter.BatchSize < 1 {
				return usageError{fmt.Errorf("--batch-size: must be at least 1 (got %d)", filter.BatchSize)}
			}
			if len(filter.IDs) > outbox.MaxFilterIDs {
				return usageError{fmt.Errorf("--id: at most %d ids at a time (got %d)", outbox.MaxFilterIDs, len(filter.IDs))}
			}
			ctx := cmd.Context()
			store, closeDB, err := e.openStore(ctx, f)
			if err != nil {
				return err
			}
			defer closeDB()
			bar := e.progressBar("retrying dead events", func() (int, error) { return store.Count(ctx, filter) })
			n, err := store.Retry(ctx, filter, bar.update)
			bar.finish()
			if err != nil {
				return fmt.Errorf("retried %d dead events before stopping: %w", n, err)
			}
			if f.json() {
				return e.writeJSON(struct {
					Retried int `json:"retried"`
				}{n})
			}
			fmt.Fprintf(e.stdout, "retried %d dead events: they are pending again\n", n)
			if len(filter.IDs) > 0 && n < len(filter.IDs) {
				fmt.Fprintf(e.stdout, "%d of the %d ids given are not dead events (unknown, pending or delivered): left alone\n",
					len(filter.IDs)-n, len(filter.IDs))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&filter.IDs, "id", nil, "retry the dead event with this id (repeat, or separate with commas)")
	cmd.Flags().StringVar(&filter.Type, "type", "", "retry every dead event of this exact type")
	cmd.Flags().StringVar(&filter.ErrorContains, "error", "", "retry every dead event whose last error contains this text (any case)")
	cmd.Flags().StringVar(&filter.Destination, "destination", "", "retry only for this destination (main, or a destinations[].name), e.g. once a partner is back; default all")
	cmd.Flags().BoolVar(&all, "all", false, "retry every dead event")
	cmd.Flags().IntVar(&filter.BatchSize, "batch-size", outbox.DefaultBatchSize, "rows changed per statement")
	return cmd
}

func outboxPurgeCmd(e env, f *outboxFlags) *cobra.Command {
	var dead, delivered, dryRun bool
	var olderThan time.Duration
	filter := outbox.PurgeFilter{}
	cmd := &cobra.Command{
		Use:   "purge (--dead|--delivered) [--type T] [--older-than 72h]",
		Short: "Delete dead or delivered rows in batches; pending rows are never deleted",
		Long: "Delete dead or delivered rows in short batches. --older-than counts from delivery for delivered rows\n" +
			"and from the last attempt for dead rows. Pending rows are never deleted.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			filter.State, err = oneState(map[outbox.State]bool{outbox.StateDead: dead, outbox.StateDelivered: delivered})
			if err != nil {
				return usageError{err}
			}
			if filter.State == "" {
				return usageError{errors.New("purge needs --dead or --delivered (pending rows are never purged)")}
			}
			if olderThan < 0 {
				return usageError{fmt.Errorf("--older-than: must not be negative (got %s)", olderThan)}
			}
			if filter.BatchSize < 1 {
				return usageError{fmt.Errorf("--batch-size: must be at least 1 (got %d)", filter.BatchSize)}
			}
			if olderThan > 0 {
				filter.OlderThan = time.Now().Add(-olderThan)
			}
			ctx := cmd.Context()
			store, closeDB, err := e.openStore(ctx, f)
			if err != nil {
				return err
			}
			defer closeDB()
			var n int
			if dryRun {
				n, err = store.PurgeCount(ctx, filter)
			} else {
				bar := e.progressBar("purging "+string(filter.State)+" events", func() (int, error) { return store.PurgeCount(ctx, filter) })
				n, err = store.Purge(ctx, filter, bar.update)
				bar.finish()
			}
			if err != nil {
				return fmt.Errorf("purged %d %s events before stopping: %w", n, filter.State, err)
			}
			if f.json() {
				return e.writeJSON(struct {
					State  outbox.State `json:"state"`
					Purged int          `json:"purged"`
					DryRun bool         `json:"dry_run"` // purged is then what would be
				}{filter.State, n, dryRun})
			}
			if dryRun {
				fmt.Fprintf(e.stdout, "would purge %d %s events (dry run: nothing deleted)\n", n, filter.State)
			} else {
				fmt.Fprintf(e.stdout, "purged %d %s events\n", n, filter.State)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dead, "dead", false, "purge dead rows")
	cmd.Flags().BoolVar(&delivered, "delivered", false, "purge delivered rows")
	cmd.Flags().StringVar(&filter.Type, "type", "", "only events of this exact type")
	cmd.Flags().StringVar(&filter.Destination, "destination", "", "only rows of this destination; default all")
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "only rows delivered, or last attempted, longer ago than this (e.g. 72h); default any age")
	cmd.Flags().IntVar(&filter.BatchSize, "batch-size", outbox.DefaultBatchSize, "rows deleted per statement")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count what would be purged, delete nothing")
	return cmd
}

// progress is a bar on stderr for a long retry or purge. It is drawn only
// when stderr is a terminal: pipes, log files and tests get the result line
// and no control characters.
type progress struct{ bar *progressbar.ProgressBar }

// progressBar counts the rows to come (only when a bar will show, since the
// count costs a query) and returns a bar for them.
func (e env) progressBar(description string, total func() (int, error)) progress {
	fd, ok := e.stderr.(interface{ Fd() uintptr })
	if !ok || !term.IsTerminal(int(fd.Fd())) {
		return progress{}
	}
	n, err := total()
	if err != nil || n == 0 {
		// No bar rather than no retry or purge: the operation itself
		// reports any database error.
		return progress{}
	}
	return progress{bar: progressbar.NewOptions(n,
		progressbar.OptionSetWriter(e.stderr),
		progressbar.OptionSetDescription(description),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)}
}

func (p progress) update(done int) {
	if p.bar == nil {
		return
	}
	// Rows may die (retry) or finish (purge) while the command runs.
	if done > p.bar.GetMax() {
		p.bar.ChangeMax(done)
	}
	_ = p.bar.Set(done)
}

func (p progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
