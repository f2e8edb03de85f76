package event_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/pkg/event"
)

func valid(t *testing.T) event.Event {
	t.Helper()
	ev, err := event.New("io.herald.portal.data_product.created", "/portal", map[string]string{"name": "Orders"},
		event.WithSubject("data_products/1"),
		event.WithTime(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)),
		event.WithPartitionKey("1"),
		event.WithTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
		event.WithDataSchema("https://example.com/schemas/data_product.created/v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestNewAssignsUUIDv7(t *testing.T) {
	ev := valid(t)
	id, err := uuid.Parse(ev.ID)
	if err != nil || id.Version() != 7 {
		t.Fatalf("id %q: version %d, err %v", ev.ID, id.Version(), err)
	}
	if other := valid(t); other.ID == ev.ID {
		t.Fatal("two events got the same id")
	}
}

func TestValidateNamesTheAttribute(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*event.Event)
		field  string
	}{
		{"missing id", func(e *event.Event) { e.ID = "" }, "id"},
		{"id not a uuid", func(e *event.Event) { e.ID = "42" }, "id"},
		{"upper-case uuid", func(e *event.Event) { e.ID = strings.ToUpper(e.ID) }, "id"},
		{"missing source", func(e *event.Event) { e.Source = "" }, "source"},
		{"bad source", func(e *event.Event) { e.Source = "http://[::1" }, "source"},
		{"missing type", func(e *event.Event) { e.Type = "" }, "type"},
		{"type with space", func(e *event.Event) { e.Type = "data product.created" }, "type"},
		{"type with wildcard", func(e *event.Event) { e.Type = "io.herald.*" }, "type"},
		{"missing time", func(e *event.Event) { e.Time = time.Time{} }, "time"},
		{"relative dataschema", func(e *event.Event) { e.DataSchema = "schemas/x.json" }, "dataschema"},
		{"non-json content type", func(e *event.Event) { e.DataContentType = "text/plain" }, "datacontenttype"},
		{"invalid json data", func(e *event.Event) { e.Data = json.RawMessage(`{"a":`) }, "data"},
		{"long partition key", func(e *event.Event) { e.PartitionKey = strings.Repeat("k", 129) }, "partitionkey"},
		{"bad traceparent", func(e *event.Event) { e.TraceParent = "00-xyz-01" }, "traceparent"},
		{"zero trace id", func(e *event.Event) {
			e.TraceParent = "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
		}, "traceparent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := valid(t)
			tc.mutate(&ev)
			err := ev.Validate()
			if !errors.Is(err, event.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			var fe *event.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v, want a FieldError for %q", err, tc.field)
			}
			if !strings.Contains(err.Error(), "event "+tc.field+":") {
				t.Fatalf("message %q does not name %q", err, tc.field)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := event.Event{}.Validate()
	for _, f := range []string{"id", "source", "type", "time"} {
		if !strings.Contains(err.Error(), "event "+f+": required") {
			t.Errorf("%q missing from %q", f, err)
		}
	}
}

func TestMarshalRoundTripAndStableBytes(t *testing.T) {
	ev := valid(t)
	b1, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := event.Parse(b1)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(got)
	if string(b1) != string(b2) {
		t.Fatalf("re-encoding changed bytes:\n%s\n%s", b1, b2)
	}
	var m map[string]any
	_ = json.Unmarshal(b1, &m)
	for k, want := range map[string]any{
		"specversion": "1.0", "id": ev.ID, "type": ev.Type, "source": "/portal",
		"subject": "data_products/1", "time": "2026-11-01T10:00:00Z", "partitionkey": "1",
		"datacontenttype": "application/json",
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
}

func TestParseIgnoresUnknownExtensionsAndRejectsOtherSpecVersions(t *testing.T) {
	ev := valid(t)
	b, _ := json.Marshal(ev)
	withExtra := strings.Replace(string(b), `"specversion":"1.0"`, `"specversion":"1.0","newext":"x"`, 1)
	if _, err := event.Parse([]byte(withExtra)); err != nil {
		t.Fatalf("unknown extension: %v", err)
	}
	old := strings.Replace(string(b), `"specversion":"1.0"`, `"specversion":"0.3"`, 1)
	if _, err := event.Parse([]byte(old)); err == nil || !strings.Contains(err.Error(), "specversion") {
		t.Fatalf("specversion 0.3: err = %v", err)
	}
}
