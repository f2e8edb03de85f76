package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/heraldhq/herald/pkg/outbox"
)

// deadPageRows bounds the dead letters one page lists.
const deadPageRows = 200

type deadFilter struct {
	Destination, Type, Error string
}

func filterOf(v url.Values) deadFilter {
	return deadFilter{Destination: strings.TrimSpace(v.Get("destination")), Type: strings.TrimSpace(v.Get("type")),
		Error: strings.TrimSpace(v.Get("error"))}
}

func (f deadFilter) query() string {
	v := url.Values{}
	for k, s := range map[string]string{"destination": f.Destination, "type": f.Type, "error": f.Error} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

type rowView struct {
	outbox.Row
	Error string // LastError, redacted
	Key   string // destination|event id, a checkbox's value
}

// outbox is the filter as the outbox selects it: every condition in SQL,
// so that "retry all matching" reaches every dead letter, however many.
func (f deadFilter) outbox() outbox.Filter {
	return outbox.Filter{State: outbox.StateDead, Destination: f.Destination, Type: f.Type, ErrorContains: f.Error}
}

// matching returns up to limit dead rows f selects, oldest first, and
// whether there are more.
func (c *Console) matching(r *http.Request, f deadFilter, limit int) ([]outbox.Row, bool, error) {
	of := f.outbox()
	of.Limit = limit + 1
	rows, err := c.cfg.Store.ListRows(r.Context(), of)
	if err != nil {
		return nil, false, err
	}
	if len(rows) > limit {
		return rows[:limit], true, nil
	}
	return rows, false, nil
}

type deadLettersData struct {
	Filter deadFilter
	Rows   []rowView
	More   bool
	Query  string
}

func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request) {
	f := filterOf(r.URL.Query())
	rows, more, err := c.matching(r, f, deadPageRows)
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, "list dead letters", err)
		return
	}
	d := deadLettersData{Filter: f, More: more, Query: f.query()}
	for _, row := range rows {
		d.Rows = append(d.Rows, rowView{Row: row, Error: c.cfg.Secrets.Text(row.LastError), Key: row.Destination + "|" + row.EventID})
	}
	c.render(w, r, http.StatusOK, "dead-letters", "Dead letters", d)
}

type deadLetterData struct {
	Row      rowView
	Payload  string
	Attempts []attemptView
}

func (c *Console) deadLetter(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	row, err := c.cfg.Store.ForDestination(q.Get("destination")).Get(r.Context(), q.Get("id"))
	if errors.Is(err, outbox.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, "open the event", err)
		return
	}
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "open the event", err)
		return
	}
	attempts, err := c.attempts(r, outbox.AttemptFilter{EventID: row.EventID, Destination: row.Destination, Limit: 100}, c.cfg.Secrets.Text)
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "read the delivery log", err)
		return
	}
	c.render(w, r, http.StatusOK, "dead-letter", "Event "+row.EventID, deadLetterData{
		Row:      rowView{Row: row, Error: c.cfg.Secrets.Text(row.LastError), Key: row.Destination + "|" + row.EventID},
		Payload:  c.cfg.Secrets.Text(prettyJSON(row.Payload)),
		Attempts: attempts,
	})
}

// prettyJSON indents a payload; one that is not JSON is shown as it is.
// Either way the template escapes it.
func prettyJSON(b []byte) string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return string(b)
	}
	return buf.String()
}

// retryDeadLetters retries the ticked rows (selected=destination|id), or
// with all=1 every row matching the filter, through outbox.Store.Retry:
// the code behind herald outbox retry.
func (c *Console) retryDeadLetters(w http.ResponseWriter, r *http.Request) {
	f := filterOf(r.PostForm)
	back := Prefix + "/dead-letters" + f.query()
	if to := r.PostFormValue("back"); to != "" {
		back = safeNext(to)
	}
	var n int
	var err error
	switch {
	case r.PostFormValue("all") == "1":
		n, err = c.cfg.Store.Retry(r.Context(), f.outbox(), nil)
	default:
		var rows []outbox.Row
		for _, key := range r.PostForm["selected"] {
			dest, id, ok := strings.Cut(key, "|")
			if ok {
				rows = append(rows, outbox.Row{Destination: dest, EventID: id})
			}
		}
		if len(rows) == 0 {
			c.done(w, r, back, "Nothing selected: tick the dead letters to retry.")
			return
		}
		n, err = c.retryRows(r, rows)
	}
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, fmt.Sprintf("retry dead letters (%d retried before the error)", n), err)
		return
	}
	if c.cfg.Notify != nil && n > 0 {
		c.cfg.Notify()
	}
	c.log.Info("console: dead letters retried", "retried", n, "destination", f.Destination, "type", f.Type, "remote", r.RemoteAddr)
	c.done(w, r, back, fmt.Sprintf("%d dead letter(s) retried: pending again.", n))
}

// retryRows retries rows by destination and event id, at most
// outbox.MaxFilterIDs ids per call: an event id alone would also retry its
// dead rows of other destinations.
func (c *Console) retryRows(r *http.Request, rows []outbox.Row) (int, error) {
	byDest := map[string][]string{}
	var order []string
	for _, row := range rows {
		if _, ok := byDest[row.Destination]; !ok {
			order = append(order, row.Destination)
		}
		byDest[row.Destination] = append(byDest[row.Destination], row.EventID)
	}
	total := 0
	for _, dest := range order {
		ids := byDest[dest]
		for start := 0; start < len(ids); start += outbox.MaxFilterIDs {
			n, err := c.cfg.Store.Retry(r.Context(), outbox.Filter{Destination: dest,
				IDs: ids[start:min(start+outbox.MaxFilterIDs, len(ids))]}, nil)
			total += n
			if err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// attemptView is one delivery-log attempt, its answer redacted.
type attemptView struct {
	outbox.Attempt
	Answer string
}

func (c *Console) attempts(r *http.Request, f outbox.AttemptFilter, redact func(string) string) ([]attemptView, error) {
	as, err := c.cfg.Store.Attempts(r.Context(), f)
	if err != nil {
		return nil, err
	}
	out := make([]attemptView, len(as))
	for i, a := range as {
		out[i] = attemptView{Attempt: a, Answer: redact(a.Answer)}
	}
	return out, nil
}

type storyData struct {
	ID       string
	Rows     []rowView
	Attempts []attemptView
	Searched bool
}

// eventStory is one event from its id: its outbox row per destination and
// every attempt the delivery log holds, newest first.
func (c *Console) eventStory(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	d := storyData{ID: id, Searched: id != ""}
	if id != "" {
		rows, err := c.cfg.Store.ListRows(r.Context(), outbox.Filter{IDs: []string{id}})
		if err != nil {
			c.fail(w, r, http.StatusInternalServerError, "read the outbox", err)
			return
		}
		for _, row := range rows {
			d.Rows = append(d.Rows, rowView{Row: row, Error: c.cfg.Secrets.Text(row.LastError), Key: row.Destination + "|" + row.EventID})
		}
		if d.Attempts, err = c.attempts(r, outbox.AttemptFilter{EventID: id, Limit: 1000}, c.cfg.Secrets.Text); err != nil {
			c.fail(w, r, http.StatusInternalServerError, "read the delivery log", err)
			return
		}
	}
	c.render(w, r, http.StatusOK, "events", "Event story", d)
}
