package nats_test

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/adapters"
	"github.com/heraldhq/herald/adapters/nats"
)

// binaryEvent exercises what the binary binding must carry exactly: a
// subject needing percent-encoding, a time with an offset (not normalised
// to UTC), extensions of each JSON type, and data whose inner spacing a
// re-encoder would lose.
const (
	binaryID      = "0190a6e4-3c2b-7def-8a12-3456789abcde"
	binaryType    = "io.herald.portal.data_product.updated"
	binarySubject = "data_products/Zürich \"Nord\" 100%\nv2"
	binaryData    = `{ "name" : "Orders",  "tags":["a","b"] }`
	binaryPayload = `{"specversion":"1.0","id":"` + binaryID + `","source":"/portal","type":"` + binaryType + `",` +
		`"subject":"data_products/Z\u00fcrich \"Nord\" 100%\nv2","time":"2026-03-01T10:15:00.123+02:00",` +
		`"datacontenttype":"application/json","dataschema":"https://schemas.example.com/dp.json",` +
		`"partitionkey":"dp-42","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",` +
		`"tenant":"acme","priority":5,"sampled":true,"ignored":null,` +
		`"data":` + binaryData + `}`
)

// TestBinaryRoundTrip publishes in binary mode and reads the message back
// through a JetStream consumer, as a subscriber would, on the embedded
// server and on the machine's own (an older release).
func TestBinaryRoundTrip(t *testing.T) {
	t.Run("Embedded", func(t *testing.T) {
		binaryRoundTrip(t, startEmbedded(t, 0, t.TempDir()).ClientURL())
	})
	t.Run("External", func(t *testing.T) {
		binaryRoundTrip(t, externalURL(t))
	})
}

func binaryRoundTrip(t *testing.T, serverURL string) {
	iso := newIsolated(t, serverURL)
	p := iso.connect(t, serverURL, nats.WithBinding(nats.Binary),
		nats.WithSubjectTemplate(iso.prefix+".{partitionkey}.{type}"))
	msg := adapters.Message{ID: binaryID, Type: binaryType, PartitionKey: "dp-42", Payload: []byte(binaryPayload)}

	r := p.Publish(t.Context(), []adapters.Message{msg})
	if r[0].Err != nil || r[0].Duplicate {
		t.Fatalf("first publish: %+v", r[0])
	}
	// The id still drives the stream's duplicate detection.
	if r := p.Publish(t.Context(), []adapters.Message{msg}); r[0].Err != nil || !r[0].Duplicate {
		t.Fatalf("re-publish: %+v, want Duplicate", r[0])
	}

	got := consumeOne(t, iso)
	if got.Subject() != iso.prefix+".dp-42."+binaryType {
		t.Errorf("subject %q", got.Subject())
	}
	if string(got.Data()) != binaryData {
		t.Errorf("body %q, want the data bytes %q", got.Data(), binaryData)
	}
	h := got.Headers()
	want := map[string]string{
		jetstream.MsgIDHeader: binaryID,
		"Content-Type":        "application/json",
		"ce-specversion":      "1.0",
		"ce-id":               binaryID,
		"ce-source":           "/portal",
		"ce-type":             binaryType,
		"ce-subject":          "data_products/Z%C3%BCrich%20%22Nord%22%20100%25%0Av2",
		"ce-time":             "2026-03-01T10:15:00.123+02:00",
		"ce-datacontenttype":  "application/json",
		"ce-dataschema":       "https://schemas.example.com/dp.json",
		"ce-partitionkey":     "dp-42",
		"ce-traceparent":      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"ce-tenant":           "acme",
		"ce-priority":         "5",
		"ce-sampled":          "true",
	}
	for k, v := range want {
		if vals := h.Values(k); len(vals) != 1 || vals[0] != v {
			t.Errorf("header %s = %q, want [%q]", k, vals, v)
		}
	}
	for k := range h {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected header %s: %q", k, h.Values(k))
		}
	}
	// A consumer's percent-decoding gives back the attribute exactly.
	if s, err := url.PathUnescape(h.Get("ce-subject")); err != nil || s != binarySubject {
		t.Errorf("decoded ce-subject %q (%v), want %q", s, err, binarySubject)
	}
}

// TestBinaryDataBase64: an event carrying binary data has it decoded into
// the body, as the binding requires.
func TestBinaryDataBase64(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	p := iso.connect(t, srv.ClientURL(), nats.WithBinding(nats.Binary))
	raw := []byte{0x00, 0xff, 'h', 'i', '\n'}
	payload := `{"specversion":"1.0","id":"` + binaryID + `","source":"/s","type":"blob.stored",` +
		`"time":"2026-03-01T10:15:00Z","datacontenttype":"application/octet-stream",` +
		`"data_base64":"` + base64.StdEncoding.EncodeToString(raw) + `"}`
	msg := adapters.Message{ID: binaryID, Type: "blob.stored", Payload: []byte(payload)}
	if r := p.Publish(t.Context(), []adapters.Message{msg}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	got := consumeOne(t, iso)
	if string(got.Data()) != string(raw) {
		t.Errorf("body %q, want %q", got.Data(), raw)
	}
	if ct := got.Headers().Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if v := got.Headers().Get("ce-data_base64"); v != "" {
		t.Errorf("data_base64 leaked into a header: %q", v)
	}
}

// TestBinaryRejectsInvalidPayloads: in binary mode the adapter must
// understand the payload; what it cannot split into attributes and data
// fails permanently (to be dead-lettered) without holding up its batch.
func TestBinaryRejectsInvalidPayloads(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	p := iso.connect(t, srv.ClientURL(), nats.WithBinding(nats.Binary))
	valid := strings.Replace(binaryPayload, `"dp-42"`, `"dp-43"`, 1) // same event, still valid
	bad := map[string]string{
		"not JSON":         `{"specversion":`,
		"array":            `[1,2]`,
		"no time":          strings.Replace(valid, `"time":"2026-03-01T10:15:00.123+02:00",`, "", 1),
		"other id":         strings.Replace(valid, binaryID, "0190a6e4-3c2b-7def-8a12-000000000000", 1),
		"object extension": strings.Replace(valid, `"tenant":"acme"`, `"tenant":{"n":1}`, 1),
		"bad attr name":    strings.Replace(valid, `"tenant":"acme"`, `"Tenant":"acme"`, 1),
		"data twice":       strings.Replace(valid, `"tenant":"acme"`, `"data_base64":"aGk="`, 1),
	}
	msgs := []adapters.Message{{ID: binaryID, Type: binaryType, Payload: []byte(valid)}}
	for name, payload := range bad {
		msgs = append(msgs, adapters.Message{ID: binaryID, Type: binaryType, PartitionKey: name, Payload: []byte(payload)})
	}
	res := p.Publish(t.Context(), msgs)
	if res[0].Err != nil {
		t.Fatalf("valid event: %v", res[0].Err)
	}
	for i, r := range res[1:] {
		name := msgs[i+1].PartitionKey
		if !errors.Is(r.Err, adapters.ErrPermanent) || !errors.Is(r.Err, nats.ErrNotCloudEvent) {
			t.Errorf("%s: err = %v, want permanent ErrNotCloudEvent", name, r.Err)
		}
	}
	if n := iso.messageCount(t); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}

// TestBinaryOversizeCountsHeaders: the size rule applies to what binary
// mode sends, headers included.
func TestBinaryOversizeCountsHeaders(t *testing.T) {
	srv := startEmbedded(t, 0, t.TempDir())
	iso := newIsolated(t, srv.ClientURL())
	p := iso.connect(t, srv.ClientURL(), nats.WithBinding(nats.Binary))
	limit := maxPayload(t, srv.ClientURL())
	// The data alone fits; the ce- headers push the message over.
	data := `"` + strings.Repeat("x", limit-100) + `"`
	payload := strings.Replace(binaryPayload, `"data":`+binaryData, `"data":`+data, 1)
	res := p.Publish(t.Context(), []adapters.Message{{ID: binaryID, Type: binaryType, Payload: []byte(payload)}})
	if !errors.Is(res[0].Err, adapters.ErrPermanent) || !errors.Is(res[0].Err, nats.ErrTooLarge) {
		t.Errorf("err = %v, want permanent ErrTooLarge", res[0].Err)
	}
}

func TestParseBinding(t *testing.T) {
	for _, b := range []nats.Binding{nats.Structured, nats.Binary} {
		got, err := nats.ParseBinding(b.String())
		if err != nil || got != b {
			t.Errorf("ParseBinding(%q) = %v, %v", b.String(), got, err)
		}
	}
	if _, err := nats.ParseBinding("Binary"); err == nil {
		t.Error("ParseBinding accepted \"Binary\"")
	}
}

// consumeOne reads the stream's first message with an ordered consumer.
func consumeOne(t *testing.T, iso *isolated) jetstream.Msg {
	t.Helper()
	cons, err := iso.js.OrderedConsumer(t.Context(), iso.streamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	return msg
}
