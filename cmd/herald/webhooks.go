package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/subscriptions"
)

// webhooksFlags are the flags every webhooks subcommand shares.
type webhooksFlags struct {
	config string
	output string
	json   bool // --json, the short form of --output json
}

func (f *webhooksFlags) wantJSON() bool { return f.output == "json" }

func webhooksCmd(e env) *cobra.Command {
	f := &webhooksFlags{}
	cmd := &cobra.Command{
		Use:   "webhooks",
		Short: "Add, change, test and remove the webhook endpoints registered at runtime",
		Long: "Manage the webhook endpoints stored in the outbox database. Each is served as the outbox\n" +
			"destination webhook:<name>; a running `herald serve` picks a change up within\n" +
			"subscriptions.refresh_interval, without a restart. A signing secret is shown once, when it is\n" +
			"added or rotated: listings show fingerprints, and never header values.\n" +
			"--output json (or --json) prints one JSON document on stdout, for scripts.",
		// Runnable, so that NoArgs turns `herald webhooks typo` into an
		// unknown-command usage error instead of help and exit 0.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if f.output != "text" && f.output != "json" {
				return usageError{fmt.Errorf("--output: %q is neither text nor json", f.output)}
			}
			if f.json {
				if cmd.Flags().Changed("output") && f.output != "json" {
					return usageError{fmt.Errorf("--json contradicts --output %s", f.output)}
				}
				f.output = "json"
			}
			return nil
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&f.config, "config", "c", "", "YAML config file (HERALD_* environment variables override it)")
	pf.StringVarP(&f.output, "output", "o", "text", "text (for people) or json (one document, for scripts)")
	pf.BoolVar(&f.json, "json", false, "same as --output json")
	cmd.AddCommand(webhooksAddCmd(e, f), webhooksListCmd(e, f), webhooksUpdateCmd(e, f), webhooksRemoveCmd(e, f),
		webhooksRotateSecretCmd(e, f), webhooksTestCmd(e, f), webhooksReplayCmd(e, f), webhooksReencryptCmd(e, f))
	return cmd
}

// webhooksSetup is what the webhooks subcommands work with.
type webhooksSetup struct {
	cfg    config.Config
	store  *subscriptions.Store
	outbox *outbox.Store // for the endpoints' pending and dead counts
	close  func()
}

// openWebhooks connects to the configured outbox database, where endpoints
// are stored, and checks its schema is the one this binary reads: an older
// one has no endpoints table at all.
func (e env) openWebhooks(ctx context.Context, f *webhooksFlags) (*webhooksSetup, error) {
	cfg, err := e.loadConfig(f.config)
	if err != nil {
		return nil, err
	}
	db, err := openMigratedDB(ctx, cfg.Database)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*webhooksSetup, error) {
		closeGorm(db)
		return nil, err
	}
	store, err := app.SubscriptionStore(cfg, db)
	if err != nil {
		return fail(err)
	}
	ob, err := outbox.NewStore(db)
	if err != nil {
		return fail(err)
	}
	return &webhooksSetup{cfg: cfg, store: store, outbox: ob, close: func() { closeGorm(db) }}, nil
}

// withWebhooks is the RunE of a subcommand that works on the store: fn
// runs with it open, and it is closed after.
func (e env) withWebhooks(f *webhooksFlags, fn func(ctx context.Context, s *webhooksSetup, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s, err := e.openWebhooks(cmd.Context(), f)
		if err != nil {
			return err
		}
		defer s.close()
		return fn(cmd.Context(), s, cmd, args)
	}
}

// webhookErr makes the store's errors that the operator fixes by changing
// the command (a bad field, an unknown or taken name) usage errors, exit 2.
// The store's messages name the field and never quote a secret.
func webhookErr(err error) error {
	switch {
	case errors.Is(err, subscriptions.ErrInvalid):
		return usageError{fmt.Errorf("%w: %w", subscriptions.ErrInvalid, err)}
	case errors.Is(err, subscriptions.ErrNotFound), errors.Is(err, subscriptions.ErrExists):
		return usageError{err}
	case errors.Is(err, subscriptions.ErrPlaintextRefused), errors.Is(err, subscriptions.ErrNoKeyring):
		// The config is what has to change.
		return usageError{err}
	}
	return err
}

// endpointName is the Args check of the subcommands that take one NAME:
// cobra's ExactArgs error would exit 1, as if the command had run and
// failed.
func endpointName(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError{fmt.Errorf("%s takes one endpoint NAME (got %d arguments)", cmd.CommandPath(), len(args))}
	}
	return nil
}

// parseHeaders reads --header values, "Name: value" or Name=value. Neither
// ':' nor '=' may appear in a header name, so the first of them splits.
// Errors name the header at most, never its value: that is often a key.
func parseHeaders(list []string) (map[string]string, error) {
	out := make(map[string]string, len(list))
	for n, h := range list {
		i := strings.IndexAny(h, ":=")
		if i < 0 {
			return nil, usageError{fmt.Errorf("--header %d: want 'Name: value' or Name=value", n+1)}
		}
		name, value := http.CanonicalHeaderKey(strings.TrimSpace(h[:i])), strings.TrimSpace(h[i+1:])
		switch {
		case name == "":
			return nil, usageError{fmt.Errorf("--header %d: the name is empty; want 'Name: value' or Name=value", n+1)}
		case value == "":
			return nil, usageError{fmt.Errorf("--header %q: the value is empty", name)}
		}
		if _, dup := out[name]; dup {
			return nil, usageError{fmt.Errorf("--header %q: given twice", name)}
		}
		out[name] = value
	}
	return out, nil
}

// endpointAndSecret is what add and rotate-secret print with --output json:
// the one document that holds the secret's value.
type endpointAndSecret struct {
	Endpoint subscriptions.Endpoint `json:"endpoint"`
	Secret   string                 `json:"secret"`
}

func webhooksAddCmd(e env, f *webhooksFlags) *cobra.Command {
	var url, secret string
	var types, headers []string
	var disabled bool
	cmd := &cobra.Command{
		Use:   "add NAME --url URL [--type GLOB]... [--header 'Name: value']... [--secret whsec_...] [--disabled]",
		Short: "Register an endpoint and print its signing secret, this once",
		Long: "Register an endpoint. NAME is 1 to 64 of a-z 0-9 _ . - and cannot change. The URL must be https,\n" +
			"or http to a host in subscriptions.allow_http_hosts or subscriptions.allow_cidrs. A URL the SSRF\n" +
			"guard would refuse to deliver to is refused now: an address (or any address its host name resolves\n" +
			"to) that is loopback, link-local, private, a cloud metadata service, NAT64…, unless inside\n" +
			"subscriptions.allow_cidrs. Without --type the endpoint gets every event. Without --secret one is\n" +
			"generated. The secret is printed once: give it to the receiver, which verifies each request's\n" +
			"signature with it.",
		Args: endpointName,
		RunE: func(cmd *cobra.Command, args []string) error {
			hdr, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			ep := subscriptions.Endpoint{Name: args[0], URL: url, Types: types, Headers: hdr, Enabled: !disabled}
			if len(hdr) == 0 {
				ep.Headers = nil
			}
			if secret != "" {
				ep.Secrets = []subscriptions.Secret{{Value: secret}}
			}
			s, err := e.openWebhooks(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer s.close()
			added, err := s.store.Add(cmd.Context(), ep)
			if err != nil {
				return webhookErr(err)
			}
			value := added.Secrets[0].Value
			if f.wantJSON() {
				return e.writeJSON(endpointAndSecret{Endpoint: added.Redacted(), Secret: value})
			}
			fmt.Fprintf(e.stdout, "added webhook endpoint %q\n\n", added.Name)
			writeEndpoint(e.stdout, added, time.Now())
			fmt.Fprintf(e.stdout, "\nsigning secret: %s\n", value)
			fmt.Fprintln(e.stdout, "It will not be shown again: give it to the receiver now.")
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "where each event is POSTed, signed (required)")
	cmd.Flags().StringSliceVar(&types, "type", nil, "only events whose type matches this glob, * matching dots too (repeat, or separate with commas); default every event")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "an extra request header, 'Name: value' or Name=value (repeat); values are never shown again")
	cmd.Flags().StringVar(&secret, "secret", "", "the signing secret, whsec_<base64> (default: a fresh one); note a flag's value may be seen in the process list")
	cmd.Flags().BoolVar(&disabled, "disabled", false, "add it disabled: its events collect in the outbox until it is enabled")
	return cmd
}

// endpointJSON is one endpoint of `webhooks list --output json`: the
// redacted endpoint and its backlog in the outbox.
type endpointJSON struct {
	subscriptions.Endpoint
	Pending int `json:"pending"`
	Dead    int `json:"dead"`
}

func webhooksListCmd(e env, f *webhooksFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the endpoints: enabled, URL, types, pending and dead events, last attempt and error",
		Args:  cobra.NoArgs,
		RunE: e.withWebhooks(f, func(ctx context.Context, s *webhooksSetup, _ *cobra.Command, _ []string) error {
			eps, err := s.store.List(ctx)
			if err != nil {
				return err
			}
			out := make([]endpointJSON, 0, len(eps))
			for _, ep := range eps {
				j := endpointJSON{Endpoint: ep.Redacted()}
				if j.Pending, err = s.count(ctx, ep.Name, outbox.StatePending); err != nil {
					return err
				}
				if j.Dead, err = s.count(ctx, ep.Name, outbox.StateDead); err != nil {
					return err
				}
				out = append(out, j)
			}
			if f.wantJSON() {
				return e.writeJSON(struct {
					Endpoints []endpointJSON `json:"endpoints"`
				}{out})
			}
			if len(out) == 0 {
				fmt.Fprintln(e.stdout, "no webhook endpoints: add one with `herald webhooks add NAME --url URL`")
				return nil
			}
			writeEndpointTable(e.stdout, out, time.Now())
			return nil
		}),
	}
}

// count returns how many of an endpoint's outbox rows are in state.
func (s *webhooksSetup) count(ctx context.Context, name string, state outbox.State) (int, error) {
	return s.outbox.Count(ctx, outbox.Filter{State: state, Destination: subscriptions.Destination(name)})
}

func writeEndpointTable(w io.Writer, eps []endpointJSON, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENABLED\tURL\tTYPES\tPENDING\tDEAD\tLAST ATTEMPT\tLAST ERROR\tFAILING SINCE")
	for _, ep := range eps {
		enabled := "yes"
		if !ep.Enabled {
			enabled = "disabled: " + oneLine(ep.DisabledReason, 40)
		}
		last, lastErr, failing := "-", "-", "-"
		if st := ep.Status; !st.LastAttemptAt.IsZero() {
			code := "no response"
			if st.LastStatusCode != 0 {
				code = fmt.Sprint(st.LastStatusCode)
			}
			last = fmt.Sprintf("%s ago (%s)", humanAge(now.Sub(st.LastAttemptAt)), code)
			if st.LastError != "" {
				lastErr = oneLine(st.LastError, 50)
			}
			if !st.FailingSince.IsZero() {
				failing = humanAge(now.Sub(st.FailingSince)) + " ago"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", ep.Name, enabled, ep.URL, typesText(ep.Types),
			ep.Pending, ep.Dead, last, lastErr, failing)
	}
	_ = tw.Flush()
}

func typesText(types []string) string {
	if len(types) == 0 {
		return "every event"
	}
	return strings.Join(types, ",")
}

// writeEndpoint prints one endpoint for people, redacted: header names
// without values, secrets by fingerprint.
func writeEndpoint(w io.Writer, ep subscriptions.Endpoint, now time.Time) {
	r := ep.Redacted()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "name\t%s (outbox destination %s)\n", r.Name, r.Destination())
	fmt.Fprintf(tw, "url\t%s\n", r.URL)
	fmt.Fprintf(tw, "types\t%s\n", typesText(r.Types))
	headers := "none"
	if len(r.Headers) > 0 {
		names := make([]string, 0, len(r.Headers))
		for k := range r.Headers {
			names = append(names, k)
		}
		slices.Sort(names) // maps iterate in random order; output must not
		headers = strings.Join(names, ", ") + " (values hidden)"
	}
	fmt.Fprintf(tw, "headers\t%s\n", headers)
	enabled := "yes"
	if !r.Enabled {
		enabled = "no: " + r.DisabledReason
		if !r.DisabledAt.IsZero() {
			enabled += fmt.Sprintf(" (%s ago)", humanAge(now.Sub(r.DisabledAt)))
		}
	}
	fmt.Fprintf(tw, "enabled\t%s\n", enabled)
	for i, sec := range r.Secrets {
		label := ""
		if i == 0 {
			label = "secrets"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, secretText(sec, now))
	}
	_ = tw.Flush()
}

// secretText names a secret by fingerprint and says until when it signs.
func secretText(s subscriptions.Secret, now time.Time) string {
	switch {
	case s.ExpiresAt.IsZero():
		return s.Fingerprint() + " (signing)"
	case now.Before(s.ExpiresAt):
		return fmt.Sprintf("%s (signing until %s, in %s)", s.Fingerprint(), s.ExpiresAt.UTC().Format(time.RFC3339),
			humanAge(s.ExpiresAt.Sub(now)))
	default:
		return s.Fingerprint() + " (expired)"
	}
}

func webhooksUpdateCmd(e env, f *webhooksFlags) *cobra.Command {
	var url string
	var types, headers []string
	var clearTypes, clearHeaders, enabled, replay bool
	cmd := &cobra.Command{
		Use:   "update NAME [--url URL] [--type GLOB]... [--header 'Name: value']... [--clear-types] [--clear-headers] [--enabled=true|false] [--replay=false]",
		Short: "Change an endpoint's URL, types or headers, or disable or re-enable it",
		Long: "Change an endpoint. --type replaces all its types and --header all its headers; --clear-types makes\n" +
			"it get every event again, --clear-headers drops its headers. --url is checked as `add` checks it.\n" +
			"--enabled=false stops deliveries (its events keep collecting in the outbox); --enabled=true first\n" +
			"replays its dead letters, so what it missed goes out in order, unless --replay=false.",
		Args: endpointName,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, set := args[0], cmd.Flags().Changed
			var p subscriptions.Patch
			if set("url") {
				p.URL = &url
			}
			switch {
			case set("type") && clearTypes:
				return usageError{errors.New("--type and --clear-types contradict each other")}
			case set("type"):
				p.Types = &types
			case clearTypes:
				p.Types = &[]string{}
			}
			switch {
			case set("header") && clearHeaders:
				return usageError{errors.New("--header and --clear-headers contradict each other")}
			case set("header"):
				hdr, err := parseHeaders(headers)
				if err != nil {
					return err
				}
				p.Headers = &hdr
			case clearHeaders:
				p.Headers = &map[string]string{}
			}
			if set("enabled") {
				p.Enabled = &enabled
			}
			if set("replay") {
				if p.Enabled == nil || !*p.Enabled {
					return usageError{errors.New("--replay: only with --enabled=true (to replay an enabled endpoint's dead letters, use `herald webhooks replay`)")}
				}
				p.NoReplay = !replay
			}
			if p == (subscriptions.Patch{}) {
				return usageError{errors.New("nothing to change: give --url, --type, --header, --clear-types, --clear-headers or --enabled")}
			}
			ctx := cmd.Context()
			s, err := e.openWebhooks(ctx, f)
			if err != nil {
				return err
			}
			defer s.close()
			// Only a re-enabling replays: whether this is one decides
			// whether the replayed count means anything to the operator.
			before, err := s.store.Get(ctx, name)
			if err != nil {
				return webhookErr(err)
			}
			reenabled := !before.Enabled && p.Enabled != nil && *p.Enabled
			updated, replayed, err := s.store.Update(ctx, name, p)
			if err != nil {
				if replayed > 0 {
					// The replay happened; the operator must not replay
					// twice thinking nothing did.
					fmt.Fprintf(e.stderr, "replayed %d dead events of %q before the update failed\n", replayed, name)
				}
				return webhookErr(err)
			}
			if f.wantJSON() {
				return e.writeJSON(struct {
					Endpoint subscriptions.Endpoint `json:"endpoint"`
					Replayed int                    `json:"replayed"`
				}{updated.Redacted(), replayed})
			}
			switch {
			case !reenabled || p.NoReplay:
			case replayed == 0:
				fmt.Fprintln(e.stdout, "replayed 0 dead events: it had none")
			default:
				fmt.Fprintf(e.stdout, "replayed %d dead events before enabling it: they go out first, in order\n", replayed)
			}
			fmt.Fprintf(e.stdout, "updated webhook endpoint %q (a running herald applies it within %s)\n\n",
				updated.Name, s.cfg.Subscriptions.RefreshInterval)
			writeEndpoint(e.stdout, updated, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "the new URL, checked as add checks it")
	cmd.Flags().StringSliceVar(&types, "type", nil, "replace the types with these globs (repeat, or separate with commas)")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "replace the headers with these, 'Name: value' or Name=value (repeat)")
	cmd.Flags().BoolVar(&clearTypes, "clear-types", false, "drop every type: the endpoint gets every event")
	cmd.Flags().BoolVar(&clearHeaders, "clear-headers", false, "drop every extra header")
	cmd.Flags().BoolVar(&enabled, "enabled", false, "true re-enables the endpoint, false disables it")
	cmd.Flags().BoolVar(&replay, "replay", true, "with --enabled=true, replay its dead letters first")
	return cmd
}

func webhooksRemoveCmd(e env, f *webhooksFlags) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "remove NAME --yes",
		Short: "Delete an endpoint and every outbox event still bound for it",
		Long: "Delete an endpoint and, with it, every outbox row bound for it: pending events are never\n" +
			"delivered, dead letters can no longer be replayed. Without --yes it only says how many would go.\n" +
			"To stop deliveries and keep the events, use `herald webhooks update NAME --enabled=false`.",
		Args: endpointName,
		RunE: e.withWebhooks(f, func(ctx context.Context, s *webhooksSetup, cmd *cobra.Command, args []string) error {
			name := args[0]
			if !yes {
				return s.refuseRemove(ctx, name)
			}
			discarded, err := s.store.Remove(ctx, name)
			if err != nil {
				return webhookErr(err)
			}
			if f.wantJSON() {
				return e.writeJSON(struct {
					Removed   string `json:"removed"`
					Discarded int    `json:"discarded"`
				}{name, discarded})
			}
			fmt.Fprintf(e.stdout, "removed webhook endpoint %q and discarded its %d outbox events\n", name, discarded)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "remove it, discarding its pending and dead events")
	return cmd
}

// refuseRemove is remove without --yes: a usage error saying what removing
// would discard, so the operator decides knowing it.
func (s *webhooksSetup) refuseRemove(ctx context.Context, name string) error {
	if _, err := s.store.Get(ctx, name); err != nil {
		return webhookErr(err)
	}
	pending, err := s.count(ctx, name, outbox.StatePending)
	if err != nil {
		return err
	}
	dead, err := s.count(ctx, name, outbox.StateDead)
	if err != nil {
		return err
	}
	all, err := s.count(ctx, name, "")
	if err != nil {
		return err
	}
	kept := ""
	if delivered := all - pending - dead; delivered > 0 {
		kept = fmt.Sprintf(" (and %d delivered rows kept for it)", delivered)
	}
	return usageError{fmt.Errorf("removing webhook endpoint %q would discard %d pending and %d dead events%s: pass --yes to remove it",
		name, pending, dead, kept)}
}

func webhooksRotateSecretCmd(e env, f *webhooksFlags) *cobra.Command {
	var secret string
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "rotate-secret NAME [--secret whsec_...] [--grace DURATION]",
		Short: "Give an endpoint a new signing secret; the old ones keep signing beside it for a grace period",
		Long: "Make a new secret (or --secret) the endpoint's first. Requests carry a signature per active secret,\n" +
			"so during the grace period a receiver holding either the old or the new secret accepts them:\n" +
			"give it the new one before the grace ends. --grace 0 drops the old secrets at once.",
		Args: endpointName,
		RunE: e.withWebhooks(f, func(ctx context.Context, s *webhooksSetup, cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("grace") {
				grace = s.cfg.Subscriptions.SecretGrace
			}
			ep, fresh, err := s.store.RotateSecret(ctx, args[0], secret, grace)
			if err != nil {
				return webhookErr(err)
			}
			if f.wantJSON() {
				return e.writeJSON(endpointAndSecret{Endpoint: ep.Redacted(), Secret: fresh.Value})
			}
			now := time.Now()
			fmt.Fprintf(e.stdout, "rotated the signing secret of webhook endpoint %q\n\n", ep.Name)
			fmt.Fprintf(e.stdout, "new signing secret: %s (fingerprint %s)\n", fresh.Value, fresh.Fingerprint())
			fmt.Fprintln(e.stdout, "It will not be shown again: give it to the receiver now.")
			fmt.Fprintln(e.stdout)
			old := ep.Secrets[1:]
			if len(old) == 0 {
				fmt.Fprintln(e.stdout, "the previous secrets no longer sign")
			}
			for _, sec := range old {
				fmt.Fprintf(e.stdout, "previous secret %s keeps signing until %s (in %s)\n", sec.Fingerprint(),
					sec.ExpiresAt.UTC().Format(time.RFC3339), humanAge(sec.ExpiresAt.Sub(now)))
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&secret, "secret", "", "the new secret, whsec_<base64> (default: a fresh one); note a flag's value may be seen in the process list")
	cmd.Flags().DurationVar(&grace, "grace", 0, "how long the old secrets keep signing (default subscriptions.secret_grace, 24h unless configured)")
	return cmd
}

func webhooksTestCmd(e env, f *webhooksFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "test NAME",
		Short: "Send the endpoint one signed test event now and show what it answered (exit 1 when not delivered)",
		Long: "Send one signed " + subscriptions.TestEventType + " event, outside the outbox, with the same SSRF guard\n" +
			"and timeout as real deliveries. Disabled endpoints are tested too: that is how to check one is\n" +
			"back before enabling it. Exits 1 when the receiver did not accept it.",
		Args: endpointName,
		RunE: e.withWebhooks(f, func(ctx context.Context, s *webhooksSetup, cmd *cobra.Command, args []string) error {
			ep, err := s.store.Get(ctx, args[0])
			if err != nil {
				return webhookErr(err)
			}
			res, err := subscriptions.Test(ctx, ep, app.WebhookOptions(s.cfg.Subscriptions)...)
			if err != nil {
				return webhookErr(err)
			}
			if f.wantJSON() {
				if err := e.writeJSON(res); err != nil {
					return err
				}
			} else {
				writeTestResult(e.stdout, ep, res)
			}
			if !res.Delivered {
				return fmt.Errorf("webhook endpoint %q did not accept the test event", ep.Name)
			}
			return nil
		}),
	}
}

func writeTestResult(w io.Writer, ep subscriptions.Endpoint, res subscriptions.TestResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "endpoint\t%s (%s)\n", ep.Name, ep.Redacted().URL)
	delivered := "yes"
	if !res.Delivered {
		delivered = "no"
	}
	fmt.Fprintf(tw, "delivered\t%s\n", delivered)
	status := "no response"
	if res.StatusCode != 0 {
		status = fmt.Sprint(res.StatusCode)
	}
	fmt.Fprintf(tw, "status\t%s\n", status)
	fmt.Fprintf(tw, "duration\t%s\n", res.Duration.Round(time.Microsecond))
	fmt.Fprintf(tw, "event id\t%s\n", res.EventID)
	if res.Error != "" {
		fmt.Fprintf(tw, "error\t%s\n", oneLine(res.Error, 200))
	}
	_ = tw.Flush()
}

func webhooksReplayCmd(e env, f *webhooksFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "replay NAME",
		Short: "Make an endpoint's dead letters pending again, to be delivered in order",
		Long: "Make the endpoint's dead events pending again, attempts reset: they keep their place in the queue\n" +
			"and go out before newer events of the same partition key. For a disabled endpoint they wait\n" +
			"until it is enabled; `update NAME --enabled=true` replays by itself.",
		Args: endpointName,
		RunE: e.withWebhooks(f, func(ctx context.Context, s *webhooksSetup, cmd *cobra.Command, args []string) error {
			n, err := s.store.Replay(ctx, args[0])
			if err != nil {
				if n > 0 {
					return fmt.Errorf("replayed %d dead events before stopping: %w", n, webhookErr(err))
				}
				return webhookErr(err)
			}
			if f.wantJSON() {
				return e.writeJSON(struct {
					Replayed int `json:"replayed"`
				}{n})
			}
			fmt.Fprintf(e.stdout, "replayed %d dead events of webhook endpoint %q: they are pending again\n", n, args[0])
			// A second read, only for the hint: the replay itself is done.
			if ep, err := s.store.Get(ctx, args[0]); err == nil && !ep.Enabled && n > 0 {
				fmt.Fprintf(e.stdout, "it is disabled: they wait until `herald webhooks update %s --enabled=true`\n", ep.Name)
			}
			return nil
		}),
	}
}

func webhooksReencryptCmd(e env, f *webhooksFlags) *cobra.Command {
	var batch int
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "reencrypt [--batch-size N] [--dry-run]",
		Short: "Seal every endpoint's signing secrets under subscriptions.secrets_key: plaintext rows and rows of previous keys",
		Long: "Seal the signing secrets of every stored endpoint under the current key, subscriptions.secrets_key:\n" +
			"plaintext rows (from before the key was set) and rows sealed under a key in\n" +
			"subscriptions.previous_secrets_keys. Rows already under the current key are left alone, so running it\n" +
			"twice changes nothing. It first opens every row and, if one does not open (a key the config lacks, a\n" +
			"changed value), changes nothing and names the endpoint and the key id. Then it writes in batches, one\n" +
			"transaction each. The secrets themselves do not change: receivers and running herald serve notice\n" +
			"nothing. --dry-run opens and counts only.",
		Args: cobra.NoArgs,
		RunE: e.withWebhooks(f, func(ctx context.Context, s *webhooksSetup, cmd *cobra.Command, _ []string) error {
			if batch < 1 {
				return usageError{fmt.Errorf("--batch-size: must be at least 1 (got %d)", batch)}
			}
			res, err := s.store.Reencrypt(ctx, subscriptions.ReencryptOptions{BatchSize: batch, DryRun: dryRun})
			if err != nil {
				return webhookErr(err)
			}
			if f.wantJSON() {
				return e.writeJSON(res)
			}
			writeReencrypted(e.stdout, res)
			return nil
		}),
	}
	cmd.Flags().IntVar(&batch, "batch-size", subscriptions.DefaultReencryptBatch, "rows re-sealed per transaction")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "open every row and count what would be re-sealed, writing nothing")
	return cmd
}

func writeReencrypted(w io.Writer, res subscriptions.Reencrypted) {
	verb := "re-encrypted"
	if res.DryRun {
		verb = "would re-encrypt (dry run)"
	}
	fmt.Fprintf(w, "%s the signing secrets of %d webhook endpoints under key %s\n\n", verb, res.Before.Rows(), res.KeyID)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "sealed, were plaintext\t%d\n", res.Sealed)
	fmt.Fprintf(tw, "re-sealed, were under a previous key\t%d\n", res.Resealed)
	fmt.Fprintf(tw, "already under %s, left alone\t%d\n", res.KeyID, res.Current)
	_ = tw.Flush()
	if res.DryRun {
		return
	}
	var old []string
	for _, id := range res.Before.KeyIDs() {
		if id != res.KeyID {
			old = append(old, id)
		}
	}
	fmt.Fprintln(w)
	if len(old) > 0 {
		fmt.Fprintf(w, "no row needs key %s any more: drop it from subscriptions.previous_secrets_keys\n", strings.Join(old, ", "))
	} else {
		fmt.Fprintln(w, "every row is under the current key")
	}
}
