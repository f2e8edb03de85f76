package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/pkg/event"
)

// Validator returns a check for [WithValidator] that a webhook publisher
// built with opts (the allowlist deliveries use) would deliver to an
// endpoint: its headers are allowed, and its URL passes
// [webhook.ValidateURL], the SSRF guard's static rules (scheme, allowlisted
// http, no credentials) and its address rules, with a host name resolved
// now and refused if any of its addresses is refused. A refusal is a
// *FieldError naming "url" (or "headers"…), quoting the URL without its
// query. Addresses are checked again at every dial.
func Validator(opts ...webhook.Option) func(context.Context, Endpoint) error {
	return func(ctx context.Context, e Endpoint) error {
		ep, err := e.Webhook(time.Now())
		if err != nil {
			return err
		}
		err = webhook.Validate([]webhook.Endpoint{ep}, opts...)
		var ie *webhook.InvalidEndpointError
		if errors.As(err, &ie) {
			return &FieldError{Field: ie.Field, Reason: configKeys.Replace(ie.Err.Error())}
		}
		if err != nil {
			return err
		}
		if err := webhook.ValidateURL(ctx, e.URL, opts...); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("check webhook endpoint %q: %w", e.Name, err) // not checked, not refused
			}
			return &FieldError{Field: "url", Reason: configKeys.Replace(err.Error())}
		}
		return nil
	}
}

// configKeys names, in the guard's messages, the config keys an operator
// sets instead of the Go options behind them.
var configKeys = strings.NewReplacer("WithAllowHTTPHosts", "subscriptions.allow_http_hosts",
	"WithAllowCIDRs", "subscriptions.allow_cidrs")

// TestEventType is the type of the event [Test] sends.
const TestEventType = "io.herald.webhook.test"

// TestResult is what one test delivery saw.
type TestResult struct {
	Delivered  bool          `json:"delivered"`
	StatusCode int           `json:"status_code,omitempty"`
	Error      string        `json:"error,omitempty"`
	Duration   time.Duration `json:"duration_ns"`
	EventID    string        `json:"event_id"`
}

// Test sends one signed io.herald.webhook.test event to e now, outside the
// outbox, through a webhook publisher built with opts (the same guard and
// timeout as real deliveries), and reports what the receiver answered. A
// disabled endpoint is tested too: that is how an operator checks it is
// back before enabling it. An error means the test could not be sent.
func Test(ctx context.Context, e Endpoint, opts ...webhook.Option) (TestResult, error) {
	ep, err := e.Webhook(time.Now())
	if err != nil {
		return TestResult{}, err
	}
	ep.Types = nil // the test event goes whatever the endpoint subscribes to
	var last webhook.Attempt
	var mu sync.Mutex
	// The one-off publisher's own log lines ("endpoint disabled" after a
	// 410) would be about it, not the endpoint: the result says it all.
	opts = append([]webhook.Option{webhook.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	opts = append(opts, webhook.WithAttemptObserver(func(a webhook.Attempt) {
		mu.Lock()
		last = a
		mu.Unlock()
	}))
	pub, err := webhook.New([]webhook.Endpoint{ep}, opts...)
	if err != nil {
		return TestResult{}, fmt.Errorf("test webhook endpoint %q: %w", e.Name, err)
	}
	defer func() { _ = pub.Close() }()
	ev, err := event.New(TestEventType, "/herald", map[string]string{
		"endpoint": e.Name,
		"message":  "a test delivery from herald webhooks test; no action is needed",
	}, event.WithSubject("webhooks/"+e.Name))
	if err != nil {
		return TestResult{}, err
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return TestResult{}, err
	}
	start := time.Now()
	res := pub.Publish(ctx, []adapters.Message{{ID: ev.ID, Type: ev.Type, Payload: payload}})[0]
	mu.Lock()
	defer mu.Unlock()
	out := TestResult{Delivered: res.Err == nil, StatusCode: last.StatusCode, Duration: time.Since(start), EventID: ev.ID}
	if last.Duration > 0 {
		out.Duration = last.Duration
	}
	if res.Err != nil {
		out.Error = res.Err.Error()
	}
	return out, nil
}
