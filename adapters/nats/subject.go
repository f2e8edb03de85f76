package nats

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidSubject is wrapped by every error about a subject template or a
// subject that a template produced.
var ErrInvalidSubject = errors.New("nats: invalid subject")

// Placeholders a subject template may contain.
const (
	placeholderType         = "{type}"
	placeholderPartitionKey = "{partitionkey}"
)

// emptyKeyToken stands in for {partitionkey} when an event has no key: an
// empty token would make the subject invalid and dead-letter every keyless
// event, which is never what a template author means.
const emptyKeyToken = "_"

// maxSubjectLen keeps a subject well under the server's 4 KiB control-line
// limit: a longer protocol line makes the server drop the whole connection,
// failing every other in-flight event along with the long one.
const maxSubjectLen = 1024

// subjectTemplate is a parsed subject template such as "herald.{type}".
type subjectTemplate struct {
	raw   string
	parts []templatePart
}

// templatePart is either literal text or one placeholder.
type templatePart struct {
	literal     string
	placeholder string // placeholderType, placeholderPartitionKey or ""
}

// parseSubjectTemplate checks the template once, at construction, so that a
// typo fails at boot instead of dead-lettering every event later.
func parseSubjectTemplate(raw string) (subjectTemplate, error) {
	tmpl := subjectTemplate{raw: raw}
	rest := raw
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if closeAt := strings.IndexByte(rest, '}'); closeAt >= 0 && (open < 0 || closeAt < open) {
			return subjectTemplate{}, fmt.Errorf("%w: template %q: '}' without '{'", ErrInvalidSubject, raw)
		}
		if open < 0 {
			tmpl.parts = append(tmpl.parts, templatePart{literal: rest})
			break
		}
		if open > 0 {
			tmpl.parts = append(tmpl.parts, templatePart{literal: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return subjectTemplate{}, fmt.Errorf("%w: template %q: unclosed '{'", ErrInvalidSubject, raw)
		}
		name := rest[open : open+end+1]
		switch name {
		case placeholderType, placeholderPartitionKey:
			tmpl.parts = append(tmpl.parts, templatePart{placeholder: name})
		default:
			return subjectTemplate{}, fmt.Errorf("%w: template %q: unknown placeholder %s (want %s or %s)",
				ErrInvalidSubject, raw, name, placeholderType, placeholderPartitionKey)
		}
		rest = rest[open+end+1:]
	}
	// Expanding with one-token sample values checks every literal part: its
	// characters, and that no token is left empty ("a..{type}", "{type}.").
	if _, err := tmpl.expand("x", "x"); err != nil {
		return subjectTemplate{}, fmt.Errorf("template %q: %w", raw, err)
	}
	return tmpl, nil
}

// expand builds the subject for one event and checks it.
func (t subjectTemplate) expand(eventType, partitionKey string) (string, error) {
	if partitionKey == "" {
		partitionKey = emptyKeyToken
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch p.placeholder {
		case placeholderType:
			b.WriteString(eventType)
		case placeholderPartitionKey:
			b.WriteString(partitionKey)
		default:
			b.WriteString(p.literal)
		}
	}
	subject := b.String()
	if err := validatePublishSubject(subject); err != nil {
		return "", err
	}
	return subject, nil
}

// validatePublishSubject accepts only subjects a publisher may use: dot
// separated, non-empty tokens, no whitespace or control characters, and no
// '*' or '>' anywhere. The server would accept "a*b" as a literal token, but
// subscribers' tooling treats those bytes as wildcards, so they are refused.
func validatePublishSubject(subject string) error {
	if subject == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSubject)
	}
	if len(subject) > maxSubjectLen {
		return fmt.Errorf("%w: %d bytes long, limit is %d", ErrInvalidSubject, len(subject), maxSubjectLen)
	}
	for _, token := range strings.Split(subject, ".") {
		if token == "" {
			return fmt.Errorf("%w: %q has an empty token", ErrInvalidSubject, subject)
		}
	}
	for i := 0; i < len(subject); i++ {
		switch c := subject[i]; {
		case c == '*' || c == '>':
			return fmt.Errorf("%w: %q contains wildcard %q", ErrInvalidSubject, subject, c)
		case c <= ' ' || c == 0x7f:
			return fmt.Errorf("%w: %q contains whitespace or a control character", ErrInvalidSubject, subject)
		}
	}
	return nil
}

// subjectMatches reports whether a literal subject falls under a stream
// subject filter, where '*' matches one token and a final '>' one or more.
func subjectMatches(filter, subject string) bool {
	ft := strings.Split(filter, ".")
	st := strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return i == len(ft)-1 && len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}
