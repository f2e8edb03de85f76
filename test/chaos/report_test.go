//go:build chaos

package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// report collects a scenario's figures, each with its target when it has
// one; a missed target fails the test at once, and the whole table is
// logged (and appended to HERALD_CHAOS_REPORT) when the scenario ends,
// pass or fail.
type report struct {
	t     *testing.T
	start time.Time
	rows  []reportRow
}

type reportRow struct {
	Figure string `json:"figure"`
	Value  string `json:"value"`
	Target string `json:"target,omitempty"`
	Missed bool   `json:"missed,omitempty"`
}

func newReport(t *testing.T) *report {
	r := &report{t: t, start: time.Now()}
	t.Cleanup(r.flush)
	return r
}

// add records a figure without a target.
func (r *report) add(figure, format string, args ...any) {
	r.rows = append(r.rows, reportRow{Figure: figure, Value: fmt.Sprintf(format, args...)})
}

// check records a figure with its target, failing the test when missed.
func (r *report) check(figure, value string, ok bool, target string) {
	r.t.Helper()
	r.rows = append(r.rows, reportRow{Figure: figure, Value: value, Target: target, Missed: !ok})
	if !ok {
		r.t.Errorf("%s: %s, target %s", figure, value, target)
	}
}

// zero checks a count whose target is 0.
func (r *report) zero(figure string, n int, detail string) {
	r.t.Helper()
	v := fmt.Sprint(n)
	if n != 0 && detail != "" {
		v += " (" + detail + ")"
	}
	r.check(figure, v, n == 0, "0")
}

// within checks a duration against its bound.
func (r *report) within(figure string, d, bound time.Duration, measured bool) {
	r.t.Helper()
	if !measured {
		r.check(figure, "never", false, "≤ "+bound.String())
		return
	}
	r.check(figure, ms(d), d <= bound, "≤ "+bound.String())
}

func (r *report) flush() {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "figure\tvalue\ttarget\t\n")
	for _, row := range r.rows {
		mark := ""
		if row.Target != "" {
			mark = "ok"
			if row.Missed {
				mark = "MISSED"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t\n", row.Figure, row.Value, row.Target, mark)
	}
	_ = tw.Flush()
	r.t.Logf("figures of %s (%s):\n%s", r.t.Name(), time.Since(r.start).Round(time.Second), b.String())
	if suite.report == "" {
		return
	}
	line, _ := json.Marshal(struct {
		Scenario string      `json:"scenario"`
		Date     string      `json:"date"`
		Took     string      `json:"took"`
		Failed   bool        `json:"failed"`
		Figures  []reportRow `json:"figures"`
	}{r.t.Name(), r.start.UTC().Format(time.RFC3339), time.Since(r.start).Round(time.Second).String(), r.t.Failed(), r.rows})
	f, err := os.OpenFile(suite.report, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.t.Logf("HERALD_CHAOS_REPORT: %v", err)
		return
	}
	_, _ = f.Write(append(line, '\n'))
	_ = f.Close()
}

// ms shows a duration to the millisecond.
func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }
