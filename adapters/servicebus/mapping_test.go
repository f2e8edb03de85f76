package servicebus

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/heraldhq/herald/adapters"
)

// A CloudEvent as the outbox stores it, with both extensions Herald sets, an
// integer and a boolean extension, sub-millisecond time and JSON data whose
// spacing and key order must survive.
const storedEvent = `{"specversion":"1.0","id":"0190b6a8-7c1e-7d3a-9f00-4b5c6d7e8f90",` +
	`"source":"/portal","type":"io.herald.portal.order.created","subject":"orders/42",` +
	`"time":"2024-07-01T12:34:56.123456789Z","datacontenttype":"application/json",` +
	`"dataschema":"https://example.com/order.json","partitionkey":"acct-7",` +
	`"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",` +
	`"retries":3,"replayed":false,"data":{"z" : 1,"a":"h\u00e9llo ✓","n":1.50}}`

func storedMessage() adapters.Message {
	return adapters.Message{
		ID:           "0190b6a8-7c1e-7d3a-9f00-4b5c6d7e8f90",
		Type:         "io.herald.portal.order.created",
		PartitionKey: "acct-7",
		Payload:      []byte(storedEvent),
	}
}

func mapWith(t *testing.T, m adapters.Message, opts ...Option) *azservicebus.Message {
	t.Helper()
	cfg, err := buildConfig(opts)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cfg.toMessage(m)
	if err != nil {
		t.Fatalf("toMessage: %v", err)
	}
	return msg
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestStructuredMapping(t *testing.T) {
	m := storedMessage()
	msg := mapWith(t, m)
	checks := []struct{ field, got, want string }{
		{"MessageID", deref(msg.MessageID), m.ID},
		{"ContentType", deref(msg.ContentType), "application/cloudevents+json"},
		{"Subject", deref(msg.Subject), m.Type},
		{"SessionID", deref(msg.SessionID), "<nil>"},
		{"PartitionKey", deref(msg.PartitionKey), "<nil>"},
		{"Body", string(msg.Body), storedEvent},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if len(msg.ApplicationProperties) != 0 {
		t.Errorf("structured message has application properties %v", msg.ApplicationProperties)
	}
}

func TestBinaryMapping(t *testing.T) {
	m := storedMessage()
	msg := mapWith(t, m, WithBinding(Binary), WithSessions(true), WithPartitionedEntity(true))
	want := map[string]any{
		"cloudEvents:specversion":  "1.0",
		"cloudEvents:id":           m.ID,
		"cloudEvents:source":       "/portal",
		"cloudEvents:type":         m.Type,
		"cloudEvents:subject":      "orders/42",
		"cloudEvents:time":         "2024-07-01T12:34:56.123456789Z", // full precision, as a string
		"cloudEvents:dataschema":   "https://example.com/order.json",
		"cloudEvents:partitionkey": "acct-7",
		"cloudEvents:traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"cloudEvents:retries":      int64(3),
		"cloudEvents:replayed":     false,
	}
	if !maps.Equal(msg.ApplicationProperties, want) {
		t.Errorf("application properties\n got  %v\n want %v", msg.ApplicationProperties, want)
	}
	checks := []struct{ field, got, want string }{
		{"MessageID", deref(msg.MessageID), m.ID},
		{"ContentType", deref(msg.ContentType), "application/json"},
		{"Subject", deref(msg.Subject), m.Type},
		{"SessionID", deref(msg.SessionID), "acct-7"},
		{"PartitionKey", deref(msg.PartitionKey), "acct-7"},
		{"Body", string(msg.Body), `{"z" : 1,"a":"h\u00e9llo ✓","n":1.50}`}, // the stored JSON text, unchanged
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
}

func TestBinaryData(t *testing.T) {
	const head = `{"specversion":"1.0","id":"e1","source":"/s","type":"t"`
	for _, tc := range []struct {
		name, payload, contentType, body string
	}{
		{"json without datacontenttype", head + `,"data":[1, 2]}`, "application/json", `[1, 2]`},
		{"structured +json type", head + `,"datacontenttype":"application/vnd.x+json","data":{"a":1}}`,
			"application/vnd.x+json", `{"a":1}`},
		{"json string data", head + `,"datacontenttype":"application/json","data":"quoted"}`,
			"application/json", `"quoted"`},
		{"text data", head + `,"datacontenttype":"text/plain; charset=utf-8","data":"line\none"}`,
			"text/plain; charset=utf-8", "line\none"},
		{"base64 data", head + `,"datacontenttype":"application/octet-stream","data_base64":"AAEC/w=="}`,
			"application/octet-stream", "\x00\x01\x02\xff"},
		{"no data", head + `}`, "<nil>", ""},
		{"null data", head + `,"datacontenttype":"text/plain","data":null}`, "text/plain", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := mapWith(t, adapters.Message{ID: "e1", Type: "t", Payload: []byte(tc.payload)}, WithBinding(Binary))
			if got := deref(msg.ContentType); got != tc.contentType {
				t.Errorf("content type %q, want %q", got, tc.contentType)
			}
			if string(msg.Body) != tc.body {
				t.Errorf("body %q, want %q", msg.Body, tc.body)
			}
			if _, ok := msg.ApplicationProperties["cloudEvents:datacontenttype"]; ok {
				t.Error("datacontenttype repeated as an application property")
			}
		})
	}
}

func TestBinaryRefusesWhatItCannotCarry(t *testing.T) {
	const head = `{"specversion":"1.0","id":"e1","source":"/s","type":"t"`
	for name, payload := range map[string]string{
		"not json":            `not json`,
		"json array":          `[1]`,
		"missing source":      `{"specversion":"1.0","id":"e1","type":"t"}`,
		"numeric id":          `{"specversion":"1.0","id":1,"source":"/s","type":"t"}`,
		"object extension":    head + `,"ext":{"a":1}}`,
		"fractional number":   head + `,"ext":1.5}`,
		"data and base64":     head + `,"data":1,"data_base64":"AA=="}`,
		"bad base64":          head + `,"data_base64":"%%"}`,
		"non-string ct":       head + `,"datacontenttype":5}`,
		"adaptertest padding": `{"pad":"xxxx"}`,
		"other id":            `{"specversion":"1.0","id":"e2","source":"/s","type":"t"}`,
		"bad attribute name":  head + `,"Ext":"x"}`,
	} {
		t.Run(name, func(t *testing.T) {
			cfg, _ := buildConfig([]Option{WithBinding(Binary)})
			_, err := cfg.toMessage(adapters.Message{ID: "e1", Type: "t", Payload: []byte(payload)})
			if !errors.Is(err, adapters.ErrPermanent) || !errors.Is(err, ErrInvalidEvent) {
				t.Errorf("err = %v, want permanent ErrInvalidEvent", err)
			}
		})
	}
}

func TestIdentifiersWithinServiceBusLimits(t *testing.T) {
	long := strings.Repeat("k", 129)
	edge := strings.Repeat("é", 128) // 128 characters, 256 bytes: allowed
	for _, tc := range []struct {
		name string
		msg  adapters.Message
		opts []Option
		want error
	}{
		{"empty id", adapters.Message{ID: ""}, nil, ErrInvalidID},
		{"long id", adapters.Message{ID: long}, nil, ErrInvalidID},
		{"long key with sessions", adapters.Message{ID: "e", PartitionKey: long}, []Option{WithSessions(true)}, ErrInvalidPartitionKey},
		{"long key, partitioned", adapters.Message{ID: "e", PartitionKey: long}, []Option{WithPartitionedEntity(true)}, ErrInvalidPartitionKey},
		{"long key unused", adapters.Message{ID: "e", PartitionKey: long}, nil, nil},
		{"128 characters", adapters.Message{ID: edge, PartitionKey: edge}, []Option{WithSessions(true)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := buildConfig(tc.opts)
			_, err := cfg.toMessage(tc.msg)
			switch {
			case tc.want == nil && err != nil:
				t.Errorf("err = %v", err)
			case tc.want != nil && (!errors.Is(err, tc.want) || !errors.Is(err, adapters.ErrPermanent)):
				t.Errorf("err = %v, want permanent %v", err, tc.want)
			}
		})
	}
}

func TestKeylessEventGetsItsOwnSession(t *testing.T) {
	msg := mapWith(t, adapters.Message{ID: "e-9", Type: "t", Payload: []byte(`{}`)}, WithSessions(true), WithPartitionedEntity(true))
	if deref(msg.SessionID) != "e-9" || deref(msg.PartitionKey) != "e-9" {
		t.Errorf("SessionID %q, PartitionKey %q, want the event id", deref(msg.SessionID), deref(msg.PartitionKey))
	}
	msg = mapWith(t, adapters.Message{ID: "e-9", Payload: []byte(`{}`)})
	if msg.Subject != nil {
		t.Errorf("Subject %q for an event without a type", *msg.Subject)
	}
}
