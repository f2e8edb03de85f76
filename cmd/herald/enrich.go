package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gorm.io/gorm"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/outbox"
)

// enrichFlags are the flags every enrich subcommand shares. The portal
// settings are flags until the config has a portal section; --rules
// overrides enricher.rules_file.
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
			"to the outbox. Records it cannot enrich (malformed, unknown action, failed lookup) are quarantined\n" +
			"with the reason: `enrich errors` lists them, `enrich retry` re-runs them after a mapping fix.",
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
	pf.StringVar(&f.portalDriver, "portal-driver", "", "the portal database's driver: sqlite, postgres or mysql (default: database.driver)")
	pf.StringVar(&f.portalDSN, "portal-dsn", "", "the portal database, when it is not the outbox's database")
	cmd.AddCommand(enrichTailCmd(e, f), enrichErrorsCmd(e, f), enrichRetryCmd(e, f))
	return cmd
}

// enrichSetup is what the enrich subcommands work with.
type enrichSetup struct {
	db, portal *gorm.DB // portal is nil when it is the outbox's database
	enricher   *enricher.Enricher
	opts       []enricher.SourceOption
	close      func()
}

func (e env) openEnrich(ctx context.Context, f *enrichFlags) (*enrichSetup, error) {
	cfg, err := e.loadConfig(f.config)
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
	s := &enrichSetup{db: db, opts: []enricher.SourceOption{enricher.WithSourceLogger(log)}}
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
	s.enricher = enricher.New(append(eopts, enricher.WithLogger(log))...)
	if f.portalDSN != "" {
		driver := f.portalDriver
		if driver == "" {
			driver = cfg.Database.Driver
		}
		e.secrets.AddDSN(driver, f.portalDSN)
		if s.portal, err = outbox.Open(driver, f.portalDSN); err != nil {
			s.close()
			return nil, usageError{fmt.Errorf("--portal-dsn: %w", err)}
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
	var interval, overlap time.Duration
	var batch int
	var name, metricsListen string
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow the portal's audit table and write its events to the outbox until interrupted",
		Long: "Follow the portal's audit table (events) and write each new record's events to the outbox, in one\n" +
			"transaction per record with its processed mark and the cursor. Each poll re-reads the last --overlap\n" +
			"of created_on, so a portal transaction that commits late is not skipped; on PostgreSQL the window\n" +
			"also reaches back to the oldest open transaction. SIGINT/SIGTERM stops after the record in hand.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if overlap < 0 || interval <= 0 || batch <= 0 {
				return usageError{errors.New("--poll-interval and --batch-size must be positive, --overlap not negative")}
			}
			s, err := e.openEnrich(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer s.close()
			opts := append(s.opts, enricher.WithPollInterval(interval), enricher.WithOverlap(overlap),
				enricher.WithBatchSize(batch), enricher.WithCursorName(name))
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
	cmd.Flags().DurationVar(&overlap, "overlap", enricher.DefaultOverlap, "how far back each poll re-reads: the longest portal transaction it still catches without a PostgreSQL horizon")
	cmd.Flags().IntVar(&batch, "batch-size", enricher.DefaultBatchSize, "audit rows read per query")
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
