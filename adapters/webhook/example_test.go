package webhook_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/webhook"
	"github.com/heraldhq/herald/pkg/webhooks"
)

func ExampleNew() {
	secret, _ := webhooks.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")

	// A subscriber's receiver, verifying each request.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhooks.Verify([][]byte{secret}, r.Header, body, time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		fmt.Println("received", r.Header.Get("webhook-id"))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	p, err := webhook.New([]webhook.Endpoint{{
		Name:    "portal",
		URL:     srv.URL + "/hooks/herald",
		Secrets: [][]byte{secret},
		Types:   []string{"io.herald.portal.*"},
		Enabled: true,
	}},
		// The test server listens on 127.0.0.1, which the SSRF guard
		// refuses unless allowlisted; allowlisting also permits http.
		webhook.WithAllowCIDRs("127.0.0.0/8"),
	)
	if err != nil {
		panic(err)
	}
	defer func() { _ = p.Close() }()

	res := p.Publish(context.Background(), []adapters.Message{
		{ID: "evt-1", Type: "io.herald.portal.input_port.created", Payload: []byte(`{"specversion":"1.0","id":"evt-1"}`)},
		{ID: "evt-2", Type: "io.herald.billing.paid", Payload: []byte(`{"specversion":"1.0","id":"evt-2"}`)},
	})
	// evt-2's type is not subscribed: it is not sent, and fails for good
	// rather than count as delivered.
	fmt.Println(res[0].Err, res[1].Err)
	// Output:
	// received evt-1
	// <nil> permanent: webhook: no endpoint subscribes to the event type: io.herald.billing.paid
}
