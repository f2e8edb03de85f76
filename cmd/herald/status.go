package main

import (
	"context"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/pkg/outbox"
)

// statusJSON is `herald status --output json`; its field names are a
// contract with scripts.
type statusJSON struct {
	Destination  destinationJSON `json:"destination"`
	Total        statsJSON       `json:"total"`
	Types        []statsJSON     `json:"types"`
	RecentErrors []rowJSON       `json:"recent_errors"`
}

type destinationJSON struct {
	Adapter string `json:"adapter"`
	Target  string `json:"target"`
	Healthy bool   `json:"healthy"`
	Detail  string `json:"detail"`
}

// statusCmd is the operator's one screen: is the broker there, how big is
// the backlog, how old is its oldest event, what has failed lately.
func statusCmd(e env) *cobra.Command {
	f := &outboxFlags{}
	var errorsShown int
	cmd := &cobra.Command{
		Use:   "status",
		Short: "One screen for operators: destination health, backlog, oldest pending, dead letters, recent errors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.output != "text" && f.output != "json" {
				return usageError{fmt.Errorf("--output: %q is neither text nor json", f.output)}
			}
			ctx := cmd.Context()
			store, closeDB, err := e.openStore(ctx, f)
			if err != nil {
				return err
			}
			defer closeDB()
			cfg, err := e.loadConfig(f.config)
			if err != nil {
				return err
			}
			dest := checkDestination(ctx, cfg.Adapter, cfg)
			stats, err := store.TypeStats(ctx)
			if err != nil {
				return err
			}
			recent, err := store.RecentErrors(ctx, errorsShown)
			if err != nil {
				return err
			}
			now := time.Now()
			out := statusJSON{Destination: dest, Types: []statsJSON{}, RecentErrors: []rowJSON{}}
			var total outbox.TypeStats
			for _, s := range stats {
				out.Types = append(out.Types, newStatsJSON(s, now))
				total.Pending += s.Pending
				total.InFlight += s.InFlight
				total.Dead += s.Dead
				total.Delivered += s.Delivered
				if !s.OldestPending.IsZero() && (total.OldestPending.IsZero() || s.OldestPending.Before(total.OldestPending)) {
					total.OldestPending = s.OldestPending
				}
			}
			out.Total = newStatsJSON(total, now)
			for _, r := range recent {
				out.RecentErrors = append(out.RecentErrors, newRowJSON(r))
			}
			if f.json() {
				if err := e.writeJSON(out); err != nil {
					return err
				}
				return unhealthy(dest)
			}
			health := "reachable"
			if !dest.Healthy {
				health = "NOT REACHABLE"
			}
			fmt.Fprintf(e.stdout, "Destination  %s %s: %s (%s)\n", dest.Adapter, dest.Target, health, dest.Detail)
			oldest := "-"
			if !total.OldestPending.IsZero() {
				oldest = humanAge(now.Sub(total.OldestPending))
			}
			fmt.Fprintf(e.stdout, "Backlog      %d pending (%d in flight), oldest pending %s\n", total.Pending, total.InFlight, oldest)
			fmt.Fprintf(e.stdout, "Dead letters %d (herald outbox list --dead; herald outbox retry)\n", total.Dead)
			if len(stats) > 0 {
				fmt.Fprintln(e.stdout)
				tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TYPE\tPENDING\tIN FLIGHT\tDEAD\tOLDEST PENDING")
				for _, s := range stats {
					age := "-"
					if !s.OldestPending.IsZero() {
						age = humanAge(now.Sub(s.OldestPending))
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", s.Type, s.Pending, s.InFlight, s.Dead, age)
				}
				_ = tw.Flush()
			}
			fmt.Fprintln(e.stdout)
			if len(recent) == 0 {
				fmt.Fprintln(e.stdout, "Recent errors: none")
			} else {
				fmt.Fprintln(e.stdout, "Recent errors")
				writeRowTable(e.stdout, recent, now)
			}
			return unhealthy(dest)
		},
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "YAML config file (HERALD_* environment variables override it)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "text (for people) or json (for scripts)")
	cmd.Flags().IntVar(&errorsShown, "errors", 10, "how many recent errors to show")
	return cmd
}

// unhealthy makes status exit non-zero when the destination is down, so a
// container healthcheck or a script can use it.
func unhealthy(d destinationJSON) error {
	if d.Healthy {
		return nil
	}
	return fmt.Errorf("destination %s %s is not reachable: %s", d.Adapter, d.Target, d.Detail)
}

// checkDestination connects to the configured broker the way serve would,
// without provisioning anything, and asks whether it answers.
func checkDestination(ctx context.Context, adapter string, cfg config.Config) destinationJSON {
	d := destinationJSON{Adapter: adapter, Target: app.Target(cfg)}
	if adapter == "nats" && cfg.NATS.URL == "embedded" {
		d.Healthy, d.Detail = true, "in-process server: it runs inside `herald serve`"
		return d
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg.NATS.ProvisionStream = false
	pub, err := app.ConnectAdapter(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		d.Detail = err.Error()
		return d
	}
	defer func() { _ = pub.Close() }()
	start := time.Now()
	if c, ok := pub.(adapters.Checker); ok {
		if err := c.Check(ctx); err != nil {
			d.Detail = err.Error()
			return d
		}
	}
	d.Healthy, d.Detail = true, fmt.Sprintf("connected, round trip %s", time.Since(start).Round(time.Microsecond))
	if adapter == "nats" {
		d.Detail = fmt.Sprintf("stream %s present, round trip %s", cfg.NATS.Stream, time.Since(start).Round(time.Microsecond))
	}
	return d
}
