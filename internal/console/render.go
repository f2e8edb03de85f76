package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"sign-in", "overview", "dead-letters", "dead-letter", "endpoints", "endpoint", "secret",
	"enricher", "events", "error"}

// page is what layout.html gets; Data is the page's own.
type page struct {
	Title        string
	Nav          string
	Prefix       string
	CSRF         string
	CSRFHeader   string
	SignedIn     bool
	ReadOnly     bool
	HasEndpoints bool
	HasEnricher  bool
	Flash        string
	Error        string
	Data         any
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"age":  Age,
		"when": func(t time.Time) string { return formatTime(t) },
		"ms":   func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) },
		"join": strings.Join,
	}
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes a whole page. It renders into a buffer first, so that a
// template error is a 500 rather than half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	c.renderError(w, r, status, name, title, data, "")
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, status int, name, title string, data any, errMsg string) {
	p := page{Title: title, Nav: name, Prefix: Prefix, CSRFHeader: CSRFHeader, ReadOnly: c.cfg.ReadOnly,
		HasEndpoints: c.cfg.Endpoints != nil, HasEnricher: c.cfg.Quarantine != nil, Error: errMsg, Data: data}
	if v, ok := sessionOf(r.Context()); ok {
		p.SignedIn, p.CSRF, p.Flash = true, v.sess.csrf, c.sessions.takeFlash(v.id)
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		c.log.Error("console: render "+name, "error", err)
		http.Error(w, "rendering the page failed; the log has the detail", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w) // a client that went away: nothing left to tell it
}

// fail shows an error page; the detail, redacted, goes to the log and the
// page, since the one reading it is the operator.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, what string, err error) {
	msg := c.cfg.Secrets.Text(err.Error())
	if status >= 500 {
		c.log.Error("console: "+what, "error", c.cfg.Secrets.Error(err))
	}
	c.renderError(w, r, status, "error", "Error", nil, what+": "+msg)
}

// done redirects after a change, with msg shown once on the next page: a
// reload does not repeat the change.
func (c *Console) done(w http.ResponseWriter, r *http.Request, to, msg string) {
	if v, ok := sessionOf(r.Context()); ok {
		c.sessions.setFlash(v.id, msg)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// Age writes how long ago something was, as herald status and herald
// outbox list do: 45s, 3m07s, 2h10m, 4d03h.
func Age(d time.Duration) string {
	d = max(0, d) // the database's and this host's clocks may disagree a little
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
	}
}
