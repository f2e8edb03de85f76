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
	// Destination is the main adapter; Destinations the route table's.
	Destination  destinationJSON   `json:"destination"`
	Destinations []destinationJSON `json:"destinations"`
	Total        statsJSON         `json:"total"`
	Types        []statsJSON       `json:"types"`
	RecentErrors []rowJSON         `json:"recent_errors"`
}

type destinationJSON struct {
	Name    string `json:"name"`
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
			dest := e.checkDestination(ctx, cfg.Main())
			others := []destinationJSON{}
			for _, d := range cfg.Destinations {
				others = append(others, e.checkDestination(ctx, d))
			}
			stats, err := store.TypeStats(ctx)
			if err != nil {
				return err
			}
			recent, err := store.RecentErrors(ctx, errorsShown)
			if err != nil {
				return err
			}
			e.redactRows(recent)
			now := time.Now()
			out := statusJSON{Destination: dest, Destinations: others, Types: []statsJSON{}, RecentErrors: []rowJSON{}}
			var total outbox.TypeStats
			for _, s := range stats {
				out.Types = append(out.Types, newStatsJSON(s, now))
				total.Add(s)
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
			for _, d := range append([]destinationJSON{dest}, others...) {
				health := "reachable"
				if !d.Healthy {
					health = "NOT REACHABLE"
				}
				fmt.Fprintf(e.stdout, "Destination  %s: %s %s: %s (%s)\n", d.Name, d.Adapter, d.Target, health, d.Detail)
			}
			oldest := "-"
			if !total.OldestPending.IsZero() {
				oldest = humanAge(now.Sub(total.OldestPending))
			}
			fmt.Fprintf(e.stdout, "Backlog      %d pending (%d in flight), oldest pending %s\n", total.Pending, total.InFlight, oldest)
			fmt.Fprintf(e.stdout, "Dead letters %d (herald outbox list --dead; herald outbox retry)\n", total.Dead)
			if len(stats) > 0 {
				fmt.Fprintln(e.stdout)
				tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DESTINATION\tTYPE\tPENDING\tIN FLIGHT\tDEAD\tOLDEST PENDING")
				for _, s := range stats {
					age := "-"
					if !s.OldestPending.IsZero() {
						age = humanAge(now.Sub(s.OldestPending))
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", s.Destination, s.Type, s.Pending, s.InFlight, s.Dead, age)
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

// unhealthy makes status exit non-zero when the main destination is down,
// so a container healthcheck or a script can use it. Another destination
// being down shows, but does not fail the check: the main flow is fine.
func unhealthy(d destinationJSON) error {
	if d.Healthy {
		return nil
	}
	return fmt.Errorf("destination %s %s is not reachable: %s", d.Adapter, d.Target, d.Detail)
}

// checkDestination connects to a destination's broker the way serve would,
// without provisioning anything, and asks whether it answers. A failure's
// detail is the adapter's error, shown without the config's secrets.
func (e env) checkDestination(ctx context.Context, cfg config.Destination) destinationJSON {
	adapter := cfg.Adapter
	d := destinationJSON{Name: cfg.Name, Adapter: adapter, Target: app.Target(cfg)}
	if adapter == "nats" && cfg.NATS.URL == "embedded" {
		d.Healthy, d.Detail = true, "in-process server: it runs inside `herald serve`"
		return d
	}
	if adapter == "webhook" {
		// Probing a partner's endpoint would send it a request it did not
		// ask for; its health shows in its rows and metrics.
		d.Healthy, d.Detail = true, "not probed: see its pending rows and herald_publish_failures_total"
		return d
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg.NATS.ProvisionStream = false
	pub, err := app.ConnectAdapter(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		d.Detail = e.secrets.Text(err.Error())
		return d
	}
	defer func() { _ = pub.Close() }()
	start := time.Now()
	if c, ok := pub.(adapters.Checker); ok {
		if err := c.Check(ctx); err != nil {
			d.Detail = e.secrets.Text(err.Error())
			return d
		}
	}
	d.Healthy, d.Detail = true, fmt.Sprintf("connected, round trip %s", time.Since(start).Round(time.Microsecond))
	if adapter == "nats" {
		d.Detail = fmt.Sprintf("stream %s present, round trip %s", cfg.NATS.Stream, time.Since(start).Round(time.Microsecond))
	}
	return d
}
