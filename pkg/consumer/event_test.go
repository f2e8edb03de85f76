package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/portalsample"
	"github.com/heraldhq/herald/pkg/consumer"
	"github.com/heraldhq/herald/pkg/enricher"
	"github.com/heraldhq/herald/pkg/event"
)

// examples are real enricher output, one event of every catalogue type.
var examples = sync.OnceValues(func() (map[string]event.Event, error) {
	return portalsample.Examples(context.Background(), enricher.New(portalsample.Replay()))
})

func example(t *testing.T, typ string) event.Event {
	t.Helper()
	ex, err := examples()
	if err != nil {
		t.Fatalf("portal sample examples: %v", err)
	}
	ev, ok := ex[enricher.TypePrefix+typ]
	if !ok {
		t.Fatalf("no example of %s", typ)
	}
	return ev
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit decodes a JSON object, lets change alter it, and encodes it again.
func edit(t *testing.T, body []byte, change func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	return marshal(t, m)
}

func TestParseRejectsNamingTheAttribute(t *testing.T) {
	valid := marshal(t, example(t, "data_product.created"))
	without := func(attr string) []byte {
		return edit(t, valid, func(m map[string]any) { delete(m, attr) })
	}
	with := func(attr string, v any) []byte {
		return edit(t, valid, func(m map[string]any) { m[attr] = v })
	}
	tests := []struct {
		name  string
		body  []byte
		attrs []string // every attribute the error must name
	}{
		{"no specversion", without("specversion"), []string{"specversion"}},
		{"specversion 0.3", with("specversion", "0.3"), []string{"specversion"}},
		{"specversion a number", with("specversion", 1.0), []string{"specversion"}},
		{"no id", without("id"), []string{"id"}},
		{"empty id", with("id", ""), []string{"id"}},
		{"null id", with("id", nil), []string{"id"}},
		{"id a number", with("id", 42), []string{"id"}},
		{"no source", without("source"), []string{"source"}},
		{"no type", without("type"), []string{"type"}},
		{"type an object", with("type", map[string]any{}), []string{"type"}},
		{"time not RFC 3339", with("time", "yesterday"), []string{"time"}},
		{"subject a number", with("subject", 7), []string{"subject"}},
		{"partitionkey a bool", with("partitionkey", true), []string{"partitionkey"}},
		{"several at once", edit(t, valid, func(m map[string]any) { delete(m, "id"); delete(m, "type") }), []string{"id", "type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := consumer.Parse(tt.body)
			if err == nil {
				t.Fatal("Parse: nil error")
			}
			if !errors.Is(err, consumer.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			var ae *consumer.AttributeError
			if !errors.As(err, &ae) {
				t.Errorf("error %v is not an *AttributeError", err)
			}
			for _, attr := range tt.attrs {
				if !strings.Contains(err.Error(), "cloudevent "+attr+":") {
					t.Errorf("error %q does not name %s", err, attr)
				}
			}
		})
	}
}

func TestParseRejectsNonObjects(t *testing.T) {
	for _, body := range []string{``, `not json`, `[]`, `null`, `"a string"`, `{"id": "x"`} {
		_, err := consumer.Parse([]byte(body))
		if !errors.Is(err, consumer.ErrInvalid) {
			t.Errorf("Parse(%q) = %v; want ErrInvalid", body, err)
		}
	}
}

// Every attribute Herald sets comes through, from the bytes Herald's own
// event type writes.
func TestParseReadsEveryAttribute(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600))
	want, err := event.New("io.example.thing.happened", "/example", map[string]int{"n": 1},
		event.WithSubject("things/1"), event.WithTime(at), event.WithPartitionKey("p-1"),
		event.WithTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
		event.WithDataSchema("https://schemas.example.com/io.example.thing.happened/v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := consumer.Parse(marshal(t, want))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got.ID != want.ID || got.Source != want.Source || got.Type != want.Type || got.Subject != want.Subject ||
		got.PartitionKey != want.PartitionKey || got.TraceParent != want.TraceParent || got.DataSchema != want.DataSchema {
		t.Errorf("Parse = %+v; want the attributes of %+v", got, want)
	}
	if !got.Time.Equal(at) || got.Time.Location() != time.UTC {
		t.Errorf("Time = %v; want %v in UTC", got.Time, at)
	}
	if string(got.Data) != `{"n":1}` {
		t.Errorf("Data = %s", got.Data)
	}
}

func TestParseOptionalAttributesMayBeAbsentOrNull(t *testing.T) {
	body := `{"specversion":"1.0","id":"a","source":"/s","type":"t","subject":null,"time":null,"data":null}`
	got, err := consumer.Parse([]byte(body))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got.Subject != "" || !got.Time.IsZero() || got.Data != nil {
		t.Errorf("Parse = %+v; want no subject, time or data", got)
	}
}

// A newer Herald may add attributes and data fields: an older consumer
// reads the event as before.
func TestParseAndDecodeIgnoreWhatTheyDoNotKnow(t *testing.T) {
	ev := example(t, "data_product.updated")
	body := edit(t, marshal(t, ev), func(m map[string]any) {
		m["heraldnewattribute"] = "from the future"
		m["data"].(map[string]any)["a_field_added_later"] = map[string]any{"nested": []int{1, 2}}
	})
	got, err := consumer.Parse(body)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	data, known, err := got.Decode()
	if err != nil || !known {
		t.Fatalf("Decode = %v, %v; want known, nil error", known, err)
	}
	var want enricher.DataProduct
	if err := json.Unmarshal(ev.Data, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(data, want) {
		t.Errorf("Decode = %#v\nwant %#v", data, want)
	}
	typed, err := consumer.DecodeData[enricher.DataProduct](got)
	if err != nil || !reflect.DeepEqual(typed, want) {
		t.Errorf("DecodeData = %#v, %v; want %#v", typed, err, want)
	}
}

func TestDecodeUnknownTypeIsNotAnError(t *testing.T) {
	ev, err := event.New("io.herald.portal.data_product.teleported", "/portal", map[string]string{"to": "mars"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := consumer.Parse(marshal(t, ev))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	data, known, err := got.Decode()
	if data != nil || known || err != nil {
		t.Errorf("Decode = %v, %v, %v; want nil, false, nil", data, known, err)
	}
	// The caller can still read it as it likes.
	m, err := consumer.DecodeData[map[string]string](got)
	if err != nil || m["to"] != "mars" {
		t.Errorf("DecodeData = %v, %v", m, err)
	}
}

// During a deprecation window Herald emits two versions of one type, told
// apart by dataschema; a consumer built for v1 decodes v1 only.
func TestDecodeOtherDataVersionIsNotKnown(t *testing.T) {
	ev := example(t, "output_port.created")
	for _, tt := range []struct {
		schema string
		known  bool
	}{
		{ev.DataSchema, true},
		{strings.Replace(ev.DataSchema, "/v1.json", "/v2.json", 1), false},
		{"", true},
		{"https://other.example.com/schemas/output-port.json", true},
	} {
		ev.DataSchema = tt.schema
		got, err := consumer.Parse(marshal(t, ev))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		_, known, err := got.Decode()
		if known != tt.known || err != nil {
			t.Errorf("dataschema %q: Decode known = %v, %v; want %v, nil", tt.schema, known, err, tt.known)
		}
	}
}

func TestDecodeCatalogueTypes(t *testing.T) {
	tests := []struct {
		typ  string
		want any // a zero value of the type Decode must return
	}{
		{"data_product.created", enricher.DataProduct{}},
		{"data_product.deleted", enricher.DeletedDataProduct{}},
		{"output_port.updated", enricher.OutputPort{}},
		{"technical_asset.created", enricher.TechnicalAsset{}},
		{"port_asset.linked", enricher.PortAsset{}},
		{"input_port.approved", enricher.InputPort{}},
		{"team_member.added", enricher.TeamMemberChange{}},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			ev := example(t, tt.typ)
			got, err := consumer.Parse(marshal(t, ev))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			data, known, err := got.Decode()
			if err != nil || !known {
				t.Fatalf("Decode = %v, %v; want known", known, err)
			}
			if reflect.TypeOf(data) != reflect.TypeOf(tt.want) {
				t.Fatalf("Decode returned a %T; want %T", data, tt.want)
			}
			assertSameJSON(t, marshal(t, data), ev.Data)
		})
	}

	// Every other type decodes too, to what it was encoded from.
	ex, err := examples()
	if err != nil {
		t.Fatal(err)
	}
	for _, et := range enricher.DefaultRules().EventTypes() {
		got, err := consumer.Parse(marshal(t, ex[et.Type]))
		if err != nil {
			t.Errorf("%s: Parse: %v", et.Type, err)
			continue
		}
		data, known, err := got.Decode()
		if err != nil || !known {
			t.Errorf("%s: Decode = %v, %v; want known", et.Type, known, err)
			continue
		}
		assertSameJSON(t, marshal(t, data), ex[et.Type].Data)
	}
}

// An updated event processed after its entity was deleted carries the
// deleted shape; Decode tells it apart from the live one.
func TestDecodeDeletedShapeOfLiveType(t *testing.T) {
	gone := enricher.DeletedEntity{
		ID: "0195f3a4-8b2c-7d3e-9f40-a1b2c3d4e5f6", Name: "sales", Deleted: true,
		Provenance: enricher.Provenance{ActorID: "0195f3a4-8b2c-7d3e-9f40-a1b2c3d4e5f7", AuditRecordID: "0195f3a4-8b2c-7d3e-9f40-a1b2c3d4e5f8"},
	}
	typ := enricher.TypePrefix + "data_product.updated"
	ev, err := event.New(typ, "/portal", gone, event.WithSubject("data_products/"+gone.ID))
	if err != nil {
		t.Fatal(err)
	}
	got, err := consumer.Parse(marshal(t, ev))
	if err != nil {
		t.Fatal(err)
	}
	data, known, err := got.Decode()
	if err != nil || !known {
		t.Fatalf("Decode = %v, %v", known, err)
	}
	if !reflect.DeepEqual(data, gone) {
		t.Errorf("Decode = %#v; want %#v", data, gone)
	}
}

func TestDecodeErrors(t *testing.T) {
	ev := example(t, "data_product.created")
	for name, data := range map[string]string{
		"absent":        ``,
		"wrong type":    `{"id": 5}`,
		"not an object": `"text"`,
	} {
		t.Run(name, func(t *testing.T) {
			body := edit(t, marshal(t, ev), func(m map[string]any) {
				delete(m, "data")
				if data != "" {
					m["data"] = json.RawMessage(data)
				}
			})
			got, err := consumer.Parse(body)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if _, known, err := got.Decode(); err == nil || !known {
				t.Errorf("Decode = %v, %v; want known and an error", known, err)
			}
			if _, err := consumer.DecodeData[enricher.DataProduct](got); err == nil {
				t.Error("DecodeData: nil error")
			}
		})
	}
}

func assertSameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("decoded data re-encodes as\n%s\nwant\n%s", got, want)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[consumer.Outcome]string{
		consumer.Applied: "applied", consumer.Duplicate: "duplicate", consumer.Stale: "stale", 0: "Outcome(0)",
	} {
		if o.String() != want {
			t.Errorf("%d.String() = %q; want %q", int(o), o.String(), want)
		}
	}
}
