package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/webhooks"
)

// Endpoint is one subscriber's URL and what it receives.
type Endpoint struct {
	// Name identifies the endpoint in errors, logs and callbacks. Required,
	// unique within a Publisher.
	Name string
	// URL receives a POST per event: https, or http when allowlisted.
	URL string
	// Secrets sign every request, each giving one signature in
	// webhook-signature. Normally one; during a rotation the new secret
	// first and the old ones after it, until they expire (the caller drops
	// expired secrets). At least one, each 24 to 64 bytes.
	Secrets [][]byte
	// Types are globs over the CloudEvents type ("io.herald.portal.*",
	// path.Match syntax, where * also matches dots); an event is sent when
	// any matches. Empty means every event.
	Types []string
	// Headers are extra request headers (an API gateway key, say). They
	// cannot replace the headers the Publisher sets itself.
	Headers map[string]string
	// Enabled must be true for the endpoint to receive anything.
	Enabled bool
}

// reservedHeaders are set by the Publisher on every request.
func reservedHeaders() [8]string {
	return [...]string{
		"Content-Type", "Content-Length", "Host", "User-Agent", "Traceparent",
		http.CanonicalHeaderKey(webhooks.HeaderID),
		http.CanonicalHeaderKey(webhooks.HeaderTimestamp),
		http.CanonicalHeaderKey(webhooks.HeaderSignature),
	}
}

// endpoint is a validated Endpoint.
type endpoint struct {
	Endpoint
	url    *url.URL
	header http.Header
}

func (g *guard) validate(eps []Endpoint) ([]*endpoint, error) {
	seen := map[string]bool{}
	out := make([]*endpoint, 0, len(eps))
	for i, ep := range eps {
		name := ep.Name
		if name == "" {
			return nil, fmt.Errorf("endpoint %d: name is required", i)
		}
		if seen[name] {
			return nil, fmt.Errorf("endpoint %q: duplicate name", name)
		}
		seen[name] = true
		e, err := g.validateOne(ep)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// InvalidEndpointError is why New or SetEndpoints refused an Endpoint, with
// the field at fault, so that a caller managing endpoints (an admin API)
// can name the field in its own terms.
type InvalidEndpointError struct {
	Endpoint string // its Name
	Field    string // "url", "secrets", "types" or "headers"
	Err      error
}

func (e *InvalidEndpointError) Error() string {
	return fmt.Sprintf("endpoint %q: %v", e.Endpoint, e.Err)
}
func (e *InvalidEndpointError) Unwrap() error { return e.Err }

// Validate checks endpoints as New would with opts (names, the SSRF
// guard's static URL rules, secrets, type globs, headers) without building
// a Publisher. A refused endpoint is an *InvalidEndpointError.
func Validate(endpoints []Endpoint, opts ...Option) error {
	cfg, err := buildConfig(opts)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	if _, err := cfg.guard.validate(endpoints); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return nil
}

func (g *guard) validateOne(ep Endpoint) (*endpoint, *InvalidEndpointError) {
	bad := func(field string, err error) (*endpoint, *InvalidEndpointError) {
		return nil, &InvalidEndpointError{Endpoint: ep.Name, Field: field, Err: err}
	}
	u, err := g.checkURL(ep.URL)
	if err != nil {
		return bad("url", err)
	}
	if len(ep.Secrets) == 0 {
		return bad("secrets", errors.New("at least one secret is required"))
	}
	for i, s := range ep.Secrets {
		if len(s) < webhooks.MinSecretSize || len(s) > webhooks.MaxSecretSize {
			return bad("secrets", fmt.Errorf("secret %d: %d bytes, want %d to %d", i, len(s), webhooks.MinSecretSize, webhooks.MaxSecretSize))
		}
	}
	if err := event.ValidateTypeGlobs(ep.Types); err != nil {
		return bad("types", err)
	}
	h := http.Header{}
	for k, v := range ep.Headers {
		ck := http.CanonicalHeaderKey(k)
		switch {
		case k == "" || strings.ContainsAny(k, " \t\r\n:"):
			return bad("headers", fmt.Errorf("invalid header name %q", k))
		case strings.ContainsAny(v, "\r\n"):
			return bad("headers", fmt.Errorf("header %q: value contains a line break", k))
		}
		for _, r := range reservedHeaders() {
			if ck == r {
				return bad("headers", fmt.Errorf("header %q is set by the publisher", k))
			}
		}
		h.Set(ck, v)
	}
	cp := ep
	cp.Secrets = make([][]byte, len(ep.Secrets))
	for i, s := range ep.Secrets {
		cp.Secrets[i] = append([]byte(nil), s...)
	}
	cp.Types = append([]string(nil), ep.Types...)
	cp.Headers = nil
	return &endpoint{Endpoint: cp, url: u, header: h}, nil
}

// matches reports whether the endpoint subscribes to an event type.
func (e *endpoint) matches(eventType string) bool { return event.MatchType(e.Types, eventType) }
