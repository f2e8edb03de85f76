package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/outbox"
)

// enrichFlags are the flags every enrich subcommand shares: --rules
// overrides enricher.rules_file, --portal-driver and --portal-dsn
// enricher.portal_driver and enricher.portal_dsn.
type enrichFlags struct {
	config       string
	output       string
	rules        string
	portalDriver string
	portalDSN    string
}

func enrichCmd(e env) *cobra.Command {
	f := &enrichFlags{}
	cmd := &cobra.Command{
		Use:   "enrich",
		Short: "Turn the portal's audit records into events: tail the audit table, list and retry quarantined records",
		Long: "The enricher reads the portal's audit table, maps each record to business events and writes them\n" +
			"to the outbox. Records it cannot enrich (malformed, unknown action, failed lookup, an event larger\n" +
			"than the main destination takes) are quarantined with the reason: `enrich errors` lists them,\n" +
			"`enrich retry` re-runs them after a fix. `enrich verify` finds audit records that were never handled.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if f.output != "text" && f.output != "json" {
				return usageError{fmt.Errorf("--output: %q is neither text nor json", f.output)}
			}
			return nil
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&f.config, "config", "c", "", "YAML config file (HERALD_* environment variables override it); database.* is the outbox")
	pf.StringVarP(&f.output, "output", "o", "text", "text (for people) or json (one document, for scripts)")
	pf.StringVar(&f.rules, "rules", "", "mapping rules YAML file (default: enricher.rules_file, else the built-in catalogue)")
	pf.StringVar(&f.portalDriver, "portal-driver", "", "the portal database's driver: sqlite, postgres or mysql (default: enricher.portal_driver, else database.driver)")
	pf.StringVar(&f.portalDSN, "portal-dsn", "", "the portal database, when it is not the outbox's database (default: enricher.portal_dsn)")
	cmd.AddCommand(enrichTailCmd(e, f), enrichErrorsCmd(e, f), enrichRetryCmd(e, f), enrichVerifyCmd(e, f))
	return cmd
}

// enrichSetup is what the enrich subcommands work with.
type enrichSetup struct {
	cfg        config.Config
	log        *slog.Logger
	db, portal *gorm.DB // portal is nil when it is the outbox's database
	enricher   *enricher.Enricher
	opts       []enricher.SourceOption
	close      func()
}

// limitEvents adds the main destination's size limit to the sources'
// options, for the commands that write events: it may ask the broker.
func (s *enrichSetup) limitEvents(ctx context.Context) {
	n := app.MaxEventBytes(ctx, s.cfg, s.log)
	s.log.Debug("events larger than the main destination takes are quarantined", "max_event_bytes", n)
	s.opts = append(s.opts, enricher.WithMaxEventBytes(n))
}

// loadEnrichConfig is loadConfig for what `herald enrich` reads: the
// databases, the enricher, the log and the main destination's size limit.
// A webhook adapter's secrets, say, are serve's business, not checked here.
func (e env) loadEnrichConfig(path string) (config.Config, error) {
	cfg, err := config.LoadFor(path, e.environ, config.UseEnrich)
	if err != nil {
		return cfg, usageError{err}
	}
	e.secrets.Merge(cfg.Secrets())
	return cfg, nil
}

func (e env) openEnrich(ctx context.Context, f *enrichFlags) (*enrichSetup, error) {
	cfg, err := e.loadEnrichConfig(f.config)
	if err != nil {
		return nil, err
	}
	log := e.logger(cfg.Log)
	// The rules are checked before the database is opened, so that a bad
	// rules file is a usage error whatever the database's state.
	if _, err := app.EnricherOptions(cfg, f.rules); err != nil {
		return nil, usageError{err}
	}
	db, err := app.OpenDB(cfg.Database)
	if err != nil {
		return nil, err
	}
	s := &enrichSetup{cfg: cfg, log: log, db: db, opts: []enricher.SourceOption{enricher.WithSourceLogger(log)}}
	s.close = func() { closeGorm(s.db); closeGorm(s.portal) }
	cur, latest, err := outbox.SchemaVersion(ctx, db)
	switch {
	case err != nil:
		s.close()
		return nil, err
	case cur < latest:
		s.close()
		return nil, fmt.Errorf("%w: database at version %d, this binary needs %d: run `herald migrate`", app.ErrSchemaOutdated, cur, latest)
	}
	// Events are written once, for main; serve's relay fans them out to
	// the other destinations.
	eopts, err := app.EnricherOptions(cfg, f.rules)
	if err != nil {
		s.close()
		return nil, usageError{err}
	}
	topts, stopTracing, err := app.EnricherTracing(ctx, cfg.Tracing)
	if err != nil {
		s.close()
		return nil, err
	}
	closeDBs := s.close
	s.close = func() {
		if err := stopTracing(); err != nil {
			log.Warn("flushing traces failed", slog.Any("error", err))
		}
		closeDBs()
	}
	s.enricher = enricher.New(append(append(eopts, topts...), enricher.WithLogger(log))...)
	// The portal: --portal-dsn, else enricher.portal_dsn, else the
	// outbox's database.
	portal, configured := cfg.Enricher.Portal(cfg.Database)
	key := "enricher.portal_dsn"
	switch {
	case f.portalDSN != "":
		portal = config.Database{DSN: f.portalDSN, Driver: cmp.Or(f.portalDriver, cfg.Enricher.PortalDriver, cfg.Database.Driver)}
		key = "--portal-dsn"
	case f.portalDriver != "" && !configured:
		s.close()
		return nil, usageError{errors.New("--portal-driver: set only together with --portal-dsn or enricher.portal_dsn")}
	case f.portalDriver != "":
		portal.Driver = f.portalDriver
	}
	if portal.DSN != "" {
		e.secrets.AddDSN(portal.Driver, portal.DSN)
		// Connected at once, unlike serve's lazily opened portal: a
		// command run by hand had better stop at a portal it cannot reach.
		if s.portal, err = outbox.Open(portal.Driver, portal.DSN); err != nil {
			s.close()
			return nil, usageError{fmt.Errorf("%s: %w", key, err)}
		}
		s.opts = append(s.opts, enricher.WithPortal(s.portal))
	}
	return s, nil
}

func closeGorm(db *gorm.DB) {
	if db == nil {
		return
	}
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
}

func enrichTailCmd(e env, f *enrichFlags) *cobra.Command {
	var interval, overlap, sweepEvery, lookback time.Duration
	var batch int
	var name, metricsListen string
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow the portal's audit table and write its events to the outbox until interrupted",
		Long: "Follow the portal's audit table (events) and write each new record's events to the outbox, a page of\n" +
			"records per transaction with their processed marks and the cursor. Each poll reads the rows dated from\n" +
			"--overlap before the latest processed (never past the database's now()); every --sweep-every a sweep\n" +
			"finds the rest: on PostgreSQL by transaction id, in commit order, elsewhere the rows dated within\n" +
			"--lookback of now() or not dated. No committed row is passed over, whatever its created_on says; one\n" +
			"that cannot be placed is quarantined. SIGINT/SIGTERM stops after the page in hand.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if overlap < 0 || sweepEvery < 0 || interval <= 0 || batch <= 0 || lookback <= 0 {
				return usageError{errors.New("--poll-interval, --lookback and --batch-size must be positive, --overlap and --sweep-every not negative")}
			}
			s, err := e.openEnrich(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer s.close()
			s.limitEvents(cmd.Context())
			opts := append(s.opts, enricher.WithPollInterval(interval), enricher.WithOverlap(overlap),
				enricher.WithSweepEvery(sweepEvery), enricher.WithLookback(lookback), enricher.WithBatchSize(batch), enricher.WithCursorName(name))
			if metricsListen != "" {
				m, stop, err := e.serveEnricherMetrics(cmd.Context(), s.db, metricsListen)
				if err != nil {
					return err
				}
				defer stop()
				opts = append(opts, enricher.WithObserver(m.Enriched))
			}
			tail, err := enricher.NewTail(s.db, s.enricher, opts...)
			if err != nil {
				return err
			}
			return tail.Run(cmd.Context())
		},
	}
	cmd.Flags().DurationVar(&interval, "poll-interval", enricher.DefaultPollInterval, "time between polls of the audit table")
	cmd.Flags().DurationVar(&overlap, "overlap", enricher.DefaultOverlap, "how far before the latest processed created_on each poll re-reads, so a row committed a little late comes at the next poll, not the next sweep")
	cmd.Flags().DurationVar(&sweepEvery, "sweep-every", enricher.DefaultSweepEvery, "time between sweeps for the rows the window cannot see (0: every poll)")
	cmd.Flags().DurationVar(&lookback, "lookback", enricher.DefaultLookback, "on MySQL/MariaDB and SQLite, how far back from now() the sweep reads")
	cmd.Flags().IntVar(&batch, "batch-size", enricher.DefaultBatchSize, "audit rows read per query and handled per transaction")
	cmd.Flags().StringVar(&name, "cursor", enricher.DefaultCursorName, "the cursor's name, when several portals share one outbox")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", "serve /metrics (enricher lag and counts, the outbox), /healthz and /readyz on this address, e.g. :9091")
	return cmd
}

// serveEnricherMetrics serves the tail's metrics and probes on addr until
// stop, which waits for the server to end.
func (e env) serveEnricherMetrics(ctx context.Context, db *gorm.DB, addr string) (_ *metrics.Metrics, stop func(), _ error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--metrics-listen: %w", err)}
	}
	store, err := outbox.NewStore(db)
	if err != nil {
		_ = ln.Close()
		return nil, nil, err
	}
	m := metrics.New(store)
	srv := &http.Server{Handler: m.Handler(app.DatabaseCheck(db)), ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	_, _ = fmt.Fprintf(e.stderr, "herald enrich tail: metrics on http://%s/metrics\n", ln.Addr())
	return m, func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
		wg.Wait()
	}, nil
}

func enrichErrorsCmd(e env, f *enrichFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "errors",
		Short: "List quarantined audit records with the reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := e.openEnrich(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer s.close()
			q, err := enricher.NewQuarantine(s.db, s.enricher, s.opts...)
			if err != nil {
				return err
			}
			rows, err := q.List(cmd.Context())
			if err != nil {
				return err
			}
			if f.output == "json" {
				if rows == nil {
					rows = []enricher.Quarantined{}
				}
				return e.writeJSON(map[string]any{"quarantined": rows})
			}
			if len(rows) == 0 {
				fmt.Fprintln(e.stdout, "No quarantined audit records.")
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tAUDIT RECORD\tACTION\tKIND\tATTEMPTS\tLAST ATTEMPT\tREASON")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.AuditID, r.Action, r.Kind, r.Attempts,
					r.LastAttemptAt.Format(time.RFC3339), strings.ReplaceAll(r.Reason, "\n", "; "))
			}
			return tw.Flush()
		},
	}
}

// retryJSON is one line of `enrich retry --output json`.
type retryJSON struct {
	QuarantineID string   `json:"quarantine_id"`
	AuditID      string   `json:"audit_record_id"`
	Status       string   `json:"status"`
	EventIDs     []string `json:"event_ids,omitempty"`
	Reason       string   `json:"reason,omitempty"`
}

func enrichRetryCmd(e env, f *enrichFlags) *cobra.Command {
	var id string
	var all bool
	cmd := &cobra.Command{
		Use:   "retry (--id ID | --all)",
		Short: "Re-run quarantined audit records through the current mapping rules",
		Long: "Re-run quarantined records through the current rules (--rules). A record that now enriches has its\n" +
			"events written and leaves the quarantine in one transaction; one that still fails keeps its row\n" +
			"with the new reason. --id takes a quarantine id or an audit record id.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (id == "") == !all {
				return usageError{errors.New("pass exactly one of --id and --all")}
			}
			s, err := e.openEnrich(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer s.close()
			s.limitEvents(cmd.Context())
			q, err := enricher.NewQuarantine(s.db, s.enricher, s.opts...)
			if err != nil {
				return err
			}
			var results []enricher.Result
			if all {
				results, err = q.RetryAll(cmd.Context())
			} else {
				var r enricher.Result
				r, err = q.Retry(cmd.Context(), id)
				if errors.Is(err, enricher.ErrNotQuarantined) {
					return usageError{err}
				}
				if err == nil {
					results = append(results, r)
				}
			}
			out := make([]retryJSON, 0, len(results))
			stillFailing := 0
			for _, r := range results {
				j := retryJSON{QuarantineID: r.QuarantineID, AuditID: r.AuditID, Status: string(r.Status), EventIDs: r.EventIDs}
				if r.Reason != nil {
					j.Reason = r.Reason.Error()
					stillFailing++
				}
				out = append(out, j)
			}
			if f.output == "json" {
				if werr := e.writeJSON(map[string]any{"results": out}); werr != nil {
					return werr
				}
			} else {
				for _, j := range out {
					if j.Reason != "" {
						fmt.Fprintf(e.stdout, "%s (audit record %s): still failing: %s\n", j.QuarantineID, j.AuditID, j.Reason)
					} else {
						fmt.Fprintf(e.stdout, "%s (audit record %s): enriched, %d event(s)\n", j.QuarantineID, j.AuditID, len(j.EventIDs))
					}
				}
				fmt.Fprintf(e.stdout, "%d retried, %d enriched, %d still quarantined\n", len(out), len(out)-stillFailing, stillFailing)
			}
			if err != nil {
				return err
			}
			if stillFailing > 0 {
				return fmt.Errorf("%d record(s) still quarantined", stillFailing)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the quarantine id or audit record id to retry")
	cmd.Flags().BoolVar(&all, "all", false, "retry every quarantined record")
	return cmd
}

func enrichVerifyCmd(e env, f *enrichFlags) *cobra.Command {
	var since string
	cmd := &cobra.Command{
		Use:   "verify [--since DURATION_OR_TIME]",
		Short: "Find audit records the enricher never handled: neither enriched nor quarantined",
		Long: "Compare the portal's audit table (events) with the enricher's processed ids and quarantine in the\n" +
			"outbox database, and list every audit record created since --since (and every one without a\n" +
			"created_on) that is in neither. Exit 1 when there is one, 0 when every record is accounted for.\n" +
			"--since takes a duration back from now (48h, 7d) or a time (2026-11-01, 2026-11-01T10:00:00Z);\n" +
			"the default is how long the tail keeps processed ids, the furthest back the check is sound.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return usageError{fmt.Errorf("--since: %w", err)}
			}
			s, err := e.openEnrich(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer s.close()
			rep, err := enricher.Verify(cmd.Context(), s.db, s.portal, from)
			if err != nil {
				return err
			}
			if err := e.writeVerify(f.output, rep); err != nil {
				return err
			}
			if n := len(rep.Missing); n > 0 {
				return fmt.Errorf("%d audit record(s) since %s were never handled", n, from.Format(time.RFC3339))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "",
		fmt.Sprintf("check audit records created since this long ago or this time (default %s: as long as processed ids are kept)",
			formatDays(enricher.DefaultProcessedRetention)))
	return cmd
}

func (e env) writeVerify(output string, rep enricher.VerifyReport) error {
	if output == "json" {
		missing := rep.Missing
		if missing == nil {
			missing = []enricher.MissingRecord{}
		}
		return e.writeJSON(map[string]any{"since": rep.Since.UTC(), "checked": rep.Checked, "missing": missing})
	}
	if len(rep.Missing) > 0 {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "AUDIT RECORD\tACTION\tCREATED ON")
		for _, m := range rep.Missing {
			created := "(none)"
			if !m.CreatedOn.IsZero() {
				created = m.CreatedOn.UTC().Format(time.RFC3339Nano)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.ID, m.Name, created)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	verdict := "every one was enriched or quarantined"
	if n := len(rep.Missing); n > 0 {
		verdict = fmt.Sprintf("%d never handled", n)
	}
	_, err := fmt.Fprintf(e.stdout, "%d audit record(s) created since %s checked: %s\n", rep.Checked, rep.Since.UTC().Format(time.RFC3339), verdict)
	return err
}

// parseSince reads --since: a duration back from now (Go's, or whole days
// such as 7d), a date (midnight UTC) or an RFC 3339 time. Empty is the
// processed ids' retention.
func parseSince(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return now.Add(-enricher.DefaultProcessedRetention), nil
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration back from now must not be negative", v)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (48h, 7d) nor a time (2026-11-01, 2026-11-01T10:00:00Z)", v)
}

// formatDays shows a whole number of days as --since takes it.
func formatDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
