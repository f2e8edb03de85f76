package redact

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Secrets is a set of secret values to hide wherever they appear in text:
// the passwords and tokens of a configuration, for the errors and log lines
// of code that does not know them for secrets (database drivers, broker
// clients). The zero value is an empty set; it is safe for concurrent use.
type Secrets struct {
	mu     sync.RWMutex
	values []string // longest first, so that one secret inside another goes whole
}

// Add adds secret values; empty ones are ignored. Each is also hidden in
// the escaped forms a URL, a JSON document or a quoted string gives it.
func (s *Secrets) Add(values ...string) {
	var all []string
	for _, v := range values {
		all = append(all, forms(v)...)
	}
	s.add(all)
}

// Merge adds every secret of other.
func (s *Secrets) Merge(other *Secrets) {
	other.mu.RLock()
	values := slices.Clone(other.values)
	other.mu.RUnlock()
	s.add(values)
}

func (s *Secrets) add(values []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range values {
		if v != "" && !slices.Contains(s.values, v) {
			s.values = append(s.values, v)
		}
	}
	slices.SortStableFunc(s.values, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
}

// AddURL adds what [URL] masks in raw that can be told from ordinary text:
// the password, a user without one, and query values that look like tokens.
func (s *Secrets) AddURL(raw string) {
	_, secrets := redactURL(raw, false)
	s.Add(secrets...)
}

// AddURLs is [Secrets.AddURL] for each entry of a comma-separated list.
func (s *Secrets) AddURLs(list string) {
	for _, raw := range strings.Split(list, ",") {
		s.AddURL(strings.TrimSpace(raw))
	}
}

// AddDSN adds the password, and parameter values that look like tokens, of
// a data source name of driver, read as [DSN] reads it.
func (s *Secrets) AddDSN(driver, dsn string) {
	_, secrets := redactDSN(driver, dsn)
	s.Add(secrets...)
}

// Text returns text with every known secret replaced by [Mask]. A nil set
// knows none.
func (s *Secrets) Text(text string) string {
	if s == nil {
		return text
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, v := range s.values {
		if strings.Contains(text, v) {
			text = strings.ReplaceAll(text, v, Mask)
		}
	}
	return text
}

// Error returns err with its message passed through [Secrets.Text]; it
// still matches what err matches with errors.Is and errors.As. A nil err
// stays nil, and one that shows no secret is returned as it is.
func (s *Secrets) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if shown := s.Text(msg); shown != msg {
		return &redactedError{msg: shown, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func (s *Secrets) empty() bool {
	if s == nil {
		return true
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.values) == 0
}

// forms returns v and the escaped forms it takes in URLs, JSON documents
// and Go-quoted strings ("%q" in an error), and unescaped if it came from
// a URL's query.
func forms(v string) []string {
	out := []string{v, url.QueryEscape(v), url.PathEscape(v), strings.Trim(strconv.Quote(v), `"`)}
	if b, err := json.Marshal(v); err == nil {
		out = append(out, strings.Trim(string(b), `"`))
	}
	if u, err := url.QueryUnescape(v); err == nil {
		out = append(out, u)
	}
	return out
}

// Handler returns a slog.Handler that passes every record on to next with
// the known secrets hidden in its message and in every attribute, however
// deep in a group.
func (s *Secrets) Handler(next slog.Handler) slog.Handler {
	return &handler{next: next, secrets: s}
}

type handler struct {
	next    slog.Handler
	secrets *Secrets
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if h.secrets.empty() {
		return h.next.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, h.secrets.Text(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	shown := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		shown[i] = h.attr(a)
	}
	return &handler{next: h.next.WithAttrs(shown), secrets: h.secrets}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), secrets: h.secrets}
}

func (h *handler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.secrets.Text(v.String()))
	case slog.KindGroup:
		group := v.Group()
		shown := make([]any, len(group))
		for i, g := range group {
			shown[i] = h.attr(g)
		}
		return slog.Group(a.Key, shown...)
	case slog.KindAny:
		// An error, a Stringer, a struct or a slice: shown as text only
		// when it holds a secret, so that JSON logs keep their structure.
		var text string
		switch x := v.Any().(type) {
		case error:
			text = x.Error()
		case fmt.Stringer:
			text = x.String()
		default:
			text = fmt.Sprintf("%+v", x)
		}
		if shown := h.secrets.Text(text); shown != text {
			return slog.String(a.Key, shown)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
