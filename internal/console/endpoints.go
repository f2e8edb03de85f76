package console

// The webhook endpoints stored at runtime, changed through the same
// subscriptions.Store calls the admin API under /v1/webhooks makes: no
// second copy of a rule about endpoints lives here. An endpoint is only
// ever shown redacted (Endpoint.Redacted: no URL query, no header value);
// a signing secret is shown once, on the page that answers its creation
// or rotation, and is kept nowhere.

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/heraldhq/herald/internal/redact"
	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/subscriptions"
)

type endpointView struct {
	subscriptions.Endpoint
	Destination string
	HeaderNames []string
	Fingerprint []string
}

func viewOf(e subscriptions.Endpoint) endpointView {
	r := e.Redacted()
	v := endpointView{Endpoint: r, Destination: e.Destination()}
	for k := range e.Headers {
		v.HeaderNames = append(v.HeaderNames, k)
	}
	for _, s := range e.Secrets {
		v.Fingerprint = append(v.Fingerprint, s.Fingerprint())
	}
	v.Secrets = nil // the template has no business near them
	return v
}

// redactorOf hides, besides the config's secrets, the endpoint's own: a
// receiver may echo a header or the URL's token in its answer.
func (c *Console) redactorOf(e subscriptions.Endpoint) func(string) string {
	known := &redact.Secrets{}
	known.Merge(c.cfg.Secrets)
	known.AddURL(e.URL)
	known.Add(e.SecretValues()...)
	return known.Text
}

func (c *Console) needEndpoints(w http.ResponseWriter, r *http.Request) bool {
	if c.cfg.Endpoints == nil {
		c.fail(w, r, http.StatusNotFound, "webhook endpoints", errors.New("this server has no endpoint store"))
		return false
	}
	return true
}

func (c *Console) endpoints(w http.ResponseWriter, r *http.Request) {
	if !c.needEndpoints(w, r) {
		return
	}
	eps, err := c.cfg.Endpoints.List(r.Context())
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "list webhook endpoints", err)
		return
	}
	views := make([]endpointView, len(eps))
	for i, e := range eps {
		views[i] = viewOf(e)
		views[i].Status.LastError = c.redactorOf(e)(e.Status.LastError)
	}
	c.render(w, r, http.StatusOK, "endpoints", "Webhook endpoints", views)
}

type endpointData struct {
	Endpoint endpointView
	Attempts []attemptView
	CanTest  bool
}

func (c *Console) endpoint(w http.ResponseWriter, r *http.Request) {
	if !c.needEndpoints(w, r) {
		return
	}
	e, err := c.cfg.Endpoints.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		c.endpointError(w, r, "open the endpoint", err)
		return
	}
	redact := c.redactorOf(e)
	attempts, err := c.attempts(r, outbox.AttemptFilter{Destination: e.Destination(), Limit: 50}, redact)
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "read the delivery log", err)
		return
	}
	v := viewOf(e)
	v.Status.LastError = redact(e.Status.LastError)
	c.render(w, r, http.StatusOK, "endpoint", "Endpoint "+e.Name, endpointData{Endpoint: v, Attempts: attempts, CanTest: c.cfg.Tester != nil})
}

// endpointError shows the store's error: a field error or an unknown name
// is the operator's to fix, anything else a 500.
func (c *Console) endpointError(w http.ResponseWriter, r *http.Request, what string, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, subscriptions.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, subscriptions.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, subscriptions.ErrExists):
		status = http.StatusConflict
	case errors.Is(err, subscriptions.ErrPlaintextRefused):
		status = http.StatusServiceUnavailable
	}
	c.fail(w, r, status, what, err)
}

// types reads the comma- or space-separated globs of a form; none means
// every event.
func types(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

func (c *Console) changed(r *http.Request, op, name string) {
	c.log.Info("console: webhook endpoint changed", "op", op, "endpoint", name, "remote", r.RemoteAddr)
	if c.cfg.OnChange != nil {
		c.cfg.OnChange()
	}
}

type secretData struct {
	Endpoint endpointView
	Secret   string
	Created  bool
}

func (c *Console) addEndpoint(w http.ResponseWriter, r *http.Request) {
	if !c.needEndpoints(w, r) {
		return
	}
	e := subscriptions.Endpoint{Name: strings.TrimSpace(r.PostFormValue("name")), URL: strings.TrimSpace(r.PostFormValue("url")),
		Types: types(r.PostFormValue("types")), Enabled: true}
	e, err := c.cfg.Endpoints.Add(r.Context(), e)
	if err != nil {
		c.endpointError(w, r, "add the endpoint", err)
		return
	}
	c.changed(r, "add", e.Name)
	// Answered here, not redirected: the secret must not sit in a URL or
	// a session to be shown later.
	c.render(w, r, http.StatusCreated, "secret", "Endpoint "+e.Name+" added", secretData{Endpoint: viewOf(e), Secret: e.Secrets[0].Value, Created: true})
}

func (c *Console) editEndpoint(w http.ResponseWriter, r *http.Request) {
	if !c.needEndpoints(w, r) {
		return
	}
	name := r.PathValue("name")
	var p subscriptions.Patch
	// An empty URL keeps the stored one: the form never holds it, since its
	// query may carry a token.
	if u := strings.TrimSpace(r.PostFormValue("url")); u != "" {
		p.URL = &u
	}
	t := types(r.PostFormValue("types"))
	p.Types = &t
	if _, _, err := c.cfg.Endpoints.Update(r.Context(), name, p); err != nil {
		c.endpointError(w, r, "update the endpoint", err)
		return
	}
	c.changed(r, "update", name)
	c.done(w, r, Prefix+"/endpoints/"+name, "Endpoint "+name+" updated.")
}

func (c *Console) setEnabled(w http.ResponseWriter, r *http.Request, on bool) {
	if !c.needEndpoints(w, r) {
		return
	}
	name := r.PathValue("name")
	_, replayed, err := c.cfg.Endpoints.Update(r.Context(), name, subscriptions.Patch{Enabled: &on})
	if err != nil {
		c.endpointError(w, r, "change the endpoint", err)
		return
	}
	c.changed(r, map[bool]string{true: "enable", false: "disable"}[on], name)
	msg := "Endpoint " + name + " disabled: its events wait in the outbox."
	if on {
		msg = fmt.Sprintf("Endpoint %s enabled; %d dead letter(s) replayed.", name, replayed)
	}
	c.done(w, r, Prefix+"/endpoints/"+name, msg)
}

func (c *Console) enableEndpoint(w http.ResponseWriter, r *http.Request)  { c.setEnabled(w, r, true) }
func (c *Console) disableEndpoint(w http.ResponseWriter, r *http.Request) { c.setEnabled(w, r, false) }

// removeEndpoint removes an endpoint and its outbox rows, as the admin
// API's DELETE does, once the operator has typed its name: a click alone
// should not discard undelivered events.
func (c *Console) removeEndpoint(w http.ResponseWriter, r *http.Request) {
	if !c.needEndpoints(w, r) {
		return
	}
	name := r.PathValue("name")
	if strings.TrimSpace(r.PostFormValue("confirm")) != name {
		c.done(w, r, Prefix+"/endpoints/"+name, "Not removed: type the endpoint's name to confirm.")
		return
	}
	discarded, err := c.cfg.Endpoints.Remove(r.Context(), name)
	if err != nil {
		c.endpointError(w, r, "remove the endpoint", err)
		return
	}
	c.changed(r, "remove", name)
	c.done(w, r, Prefix+"/endpoints", fmt.Sprintf("Endpoint %s removed; %d of its outbox rows discarded.", name, discarded))
}

func (c *Console) rotateEndpoint(w http.ResponseWriter, r *http.Request) {
	if !c.needEndpoints(w, r) {
		return
	}
	name := r.PathValue("name")
	e, secret, err := c.cfg.Endpoints.RotateSecret(r.Context(), name, "", c.cfg.SecretGrace)
	if err != nil {
		c.endpointError(w, r, "rotate the secret", err)
		return
	}
	c.changed(r, "rotate-secret", name)
	c.render(w, r, http.StatusOK, "secret", "New secret for "+name, secretData{Endpoint: viewOf(e), Secret: secret.Value})
}

func (c *Console) testEndpoint(w http.ResponseWriter, r *http.Request) {
	if !c.needEndpoints(w, r) {
		return
	}
	if c.cfg.Tester == nil {
		c.fail(w, r, http.StatusNotImplemented, "test the endpoint", errors.New("this server cannot send test deliveries"))
		return
	}
	name := r.PathValue("name")
	e, err := c.cfg.Endpoints.Get(r.Context(), name)
	if err != nil {
		c.endpointError(w, r, "test the endpoint", err)
		return
	}
	res, err := c.cfg.Tester(r.Context(), e)
	if err != nil {
		c.fail(w, r, http.StatusBadGateway, "test the endpoint", err)
		return
	}
	c.log.Info("console: webhook endpoint tested", "endpoint", name, "delivered", res.Delivered, "status", res.StatusCode, "remote", r.RemoteAddr)
	msg := fmt.Sprintf("Test event %s delivered: HTTP %d in %s.", res.EventID, res.StatusCode, res.Duration.Round(100_000))
	if !res.Delivered {
		msg = fmt.Sprintf("Test event %s NOT delivered (HTTP %d): %s", res.EventID, res.StatusCode, c.redactorOf(e)(res.Error))
	}
	c.done(w, r, Prefix+"/endpoints/"+name, msg)
}
