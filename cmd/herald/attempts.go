package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/pkg/outbox"
)

func outboxAttemptsCmd(e env, f *outboxFlags) *cobra.Command {
	var (
		filter outbox.AttemptFilter
		since  string
	)
	cmd := &cobra.Command{
		Use:   "attempts --event ID | --destination NAME [--failed] [--since DURATION] [--limit N] [--before ID]",
		Short: "Show the delivery log: every attempt to deliver an event, newest first",
		Long: "Every attempt a relay made to deliver an event to a destination (delivery_log.enabled), newest first:\n" +
			"when, the outcome (delivered, failed and retried later, dead, or unavailable: the destination was\n" +
			"down, which costs the event no attempt), the HTTP status of a webhook, the redacted answer of the\n" +
			"broker or receiver, and how long the publish took. Kept for delivery_log.retention.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if filter.EventID == "" && filter.Destination == "" {
				return usageError{errors.New("give --event ID, --destination NAME or both")}
			}
			if filter.Limit < 1 || filter.Limit > outbox.MaxAttemptsLimit {
				return usageError{fmt.Errorf("--limit: must be from 1 to %d (got %d)", outbox.MaxAttemptsLimit, filter.Limit)}
			}
			if since != "" {
				t, err := app.ParseSince(since, time.Now())
				if err != nil {
					return usageError{fmt.Errorf("--since: %w", err)}
				}
				filter.Since = t
			}
			store, closeDB, err := e.openStore(cmd.Context(), f)
			if err != nil {
				return err
			}
			defer closeDB()
			attempts, err := store.Attempts(cmd.Context(), filter)
			if err != nil {
				return err
			}
			var next *int64
			if len(attempts) == filter.Limit {
				next = &attempts[len(attempts)-1].ID
			}
			if f.json() {
				// The document GET /v1/attempts answers with.
				doc := struct {
					Attempts   []app.AttemptJSON `json:"attempts"`
					NextBefore *int64            `json:"next_before"`
				}{Attempts: []app.AttemptJSON{}, NextBefore: next}
				for _, a := range attempts {
					doc.Attempts = append(doc.Attempts, app.NewAttemptJSON(a, e.secrets))
				}
				return e.writeJSON(doc)
			}
			if len(attempts) == 0 {
				fmt.Fprintln(e.stdout, "no matching attempts")
				return nil
			}
			for i := range attempts {
				attempts[i].Answer = e.secrets.Text(attempts[i].Answer)
			}
			writeAttemptTable(e.stdout, attempts)
			if next != nil {
				fmt.Fprintf(e.stderr, "showing %d; for the next page add --before %d\n", len(attempts), *next)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&filter.EventID, "event", "", "the attempts to deliver this event id, to every destination")
	cmd.Flags().StringVar(&filter.Destination, "destination", "", "the attempts of this destination (main, a destinations[].name, webhook:<endpoint>)")
	cmd.Flags().BoolVar(&filter.FailedOnly, "failed", false, "only attempts that did not deliver (failed, dead, unavailable)")
	cmd.Flags().StringVar(&since, "since", "", "only attempts made since: a duration back from now (24h) or an RFC 3339 time")
	cmd.Flags().IntVar(&filter.Limit, "limit", 50, "at most this many attempts")
	cmd.Flags().Int64Var(&filter.Before, "before", 0, "only attempts older than this id (the last ID of the previous page)")
	return cmd
}

func writeAttemptTable(w io.Writer, attempts []outbox.Attempt) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tDESTINATION\tEVENT ID\tTYPE\tATTEMPT\tOUTCOME\tSTATUS\tLATENCY\tANSWER")
	for _, a := range attempts {
		status := "-"
		if a.Status != 0 {
			status = fmt.Sprint(a.Status)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", a.ID, a.At.UTC().Format("2006-01-02 15:04:05.000"), a.Destination,
			a.EventID, a.EventType, a.Number, a.Outcome, status, a.Latency.Round(time.Microsecond*100), oneLine(a.Answer, 80))
	}
	_ = tw.Flush()
}
