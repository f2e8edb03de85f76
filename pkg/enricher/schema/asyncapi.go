package schema

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/heraldhq/herald/pkg/enricher"
)

// AsyncAPIVersion is the AsyncAPI specification version of the generated
// document.
const AsyncAPIVersion = "3.0.0"

// draft07Format is the AsyncAPI schemaFormat of a JSON Schema draft-07,
// which every AsyncAPI 3.0 tool must support.
const draft07Format = "application/schema+json;version=draft-07"

// sqsBindingVersion is the newest SQS channel binding AsyncAPI 3.0 defines
// (0.3.0 exists only for AsyncAPI 2.x documents).
const sqsBindingVersion = "0.2.0"

// structuredContentType is the content type of a CloudEvent in structured
// mode, which every adapter sends by default.
const structuredContentType = "application/cloudevents+json"

// natsSubject is the NATS adapter's default subject for an event type
// (adapters/nats: subject template "herald.{type}").
func natsSubject(typ string) string { return "herald." + typ }

// messageKey names an event type's message in components.messages.
func messageKey(et enricher.EventType) string { return et.Entity + "." + et.Verb }

func ref(path string) object { return object{{"$ref", path}} }

// schemaKey names a published schema in components.schemas after its path
// under the schema base: cloudevent/v1.json is cloudevent.v1.
func schemaKey(path string) string {
	return strings.ReplaceAll(strings.TrimSuffix(path, ".json"), "/", ".")
}

// componentSchemas holds a copy of every published schema, referencing the
// others by JSON pointer, so the document needs no file beside it and parses
// the same from any working directory or from a string. The copies carry no
// $id: it would make a parser that honours it resolve those pointers in the
// published file instead of in this document.
func componentSchemas(schemas []schemaFile) object {
	pointer := func(target string) string { return "#/components/schemas/" + schemaKey(target) + "/schema" }
	out := object{}
	for _, sf := range schemas {
		out.set(schemaKey(sf.path), object{{"schemaFormat", draft07Format}, {"schema", sf.body(pointer)}})
	}
	return out
}

// asyncAPI is the AsyncAPI 3.0 document of every adapter's channels: one
// NATS subject per event type, and one SQS queue, one Service Bus entity and
// one webhook endpoint that carry every type.
func asyncAPI(opts Options, types []enricher.EventType, schemas []schemaFile) ([]byte, error) {
	messages := object{}
	allMessages := object{}
	for _, et := range types {
		msg, err := message(opts, et)
		if err != nil {
			return nil, err
		}
		messages.set(messageKey(et), msg)
		allMessages.set(messageKey(et), ref("#/components/messages/"+messageKey(et)))
	}
	channelRefs := func(channel string) []any {
		out := make([]any, 0, len(types))
		for _, et := range types {
			out = append(out, ref("#/channels/"+channel+"/messages/"+messageKey(et)))
		}
		return out
	}

	channels, operations := object{}, object{}
	for _, et := range types {
		id := "nats." + messageKey(et)
		channels.set(id, object{
			{"address", natsSubject(et.Type)},
			{"title", et.Type + " on NATS JetStream"},
			{"description", "Subject of " + et.Type + " with the default subject template herald.{type}; " +
				"subscribe to herald.io.herald.portal.> for every portal event. The stream de-duplicates by the " +
				"Nats-Msg-Id header, which is the event id."},
			{"servers", []any{ref("#/servers/nats")}},
			{"messages", object{{messageKey(et), ref("#/components/messages/" + messageKey(et))}}},
		})
		operations.set("send."+id, object{
			{"action", "send"},
			{"title", "Publish " + et.Type},
			{"channel", ref("#/channels/" + id)},
			{"messages", []any{ref("#/channels/" + id + "/messages/" + messageKey(et))}},
		})
	}
	channels.set("sqs", object{
		{"address", "{queue}"},
		{"title", "AWS SQS queue"},
		{"description", "One queue carries every event type; the body is the CloudEvent. On a FIFO queue " +
			"MessageGroupId is the partition key (per-data-product order) and MessageDeduplicationId the event id; " +
			"the CloudEvents attributes are also sent as message attributes. A standard queue neither orders nor " +
			"de-duplicates: consumers de-duplicate by the event id."},
		{"parameters", object{{"queue", object{{"description", "The queue's name, e.g. herald-events.fifo."}}}}},
		{"servers", []any{ref("#/servers/sqs")}},
		{"messages", allMessages},
		{"bindings", object{{"sqs", object{
			{"queue", object{{"name", "herald-events.fifo"}, {"fifoQueue", true}, {"deduplicationScope", "queue"}}},
			{"bindingVersion", sqsBindingVersion},
		}}}},
	})
	channels.set("servicebus", object{
		{"address", "{entity}"},
		{"title", "Azure Service Bus queue or topic"},
		{"description", "One queue or topic carries every event type. MessageID is the event id (duplicate " +
			"detection); SessionID is the partition key when ordering is on. AsyncAPI has no Service Bus binding: " +
			"x-azure-service-bus says how the event maps onto the message."},
		{"parameters", object{{"entity", object{{"description", "The queue or topic name."}}}}},
		{"servers", []any{ref("#/servers/servicebus")}},
		{"messages", allMessages},
		{"x-azure-service-bus", object{
			{"messageId", "event id"},
			{"sessionId", "partitionkey, when ordering is on"},
			{"contentType", structuredContentType + " (structured), or the CloudEvents AMQP binding's cloudEvents:-prefixed application properties"},
		}},
	})
	channels.set("webhook", object{
		{"address", "{endpoint}"},
		{"title", "Webhook endpoint"},
		{"description", "Each event is POSTed to the subscriber's endpoint as the request body, signed per " +
			"Standard Webhooks (webhook-id, webhook-timestamp and webhook-signature headers)."},
		{"parameters", object{{"endpoint", object{{"description", "The path of the subscriber's endpoint."}}}}},
		{"servers", []any{ref("#/servers/webhook")}},
		{"messages", allMessages},
	})
	for _, ch := range []struct{ id, title string }{
		{"sqs", "Send every event to the SQS queue"},
		{"servicebus", "Send every event to the Service Bus entity"},
		{"webhook", "POST every event to the webhook endpoint"},
	} {
		op := object{
			{"action", "send"},
			{"title", ch.title},
			{"channel", ref("#/channels/" + ch.id)},
			{"messages", channelRefs(ch.id)},
		}
		if ch.id == "webhook" {
			op.set("bindings", object{{"http", object{{"method", "POST"}, {"bindingVersion", "0.3.0"}}}})
		}
		operations.set("send."+ch.id, op)
	}

	doc := object{
		{"asyncapi", AsyncAPIVersion},
		{"info", object{
			{"title", "Herald: data-product portal events"},
			{"version", strings.TrimPrefix(enricher.SchemaVersion, "v") + ".0.0"},
			{"description", "Business events Herald derives from the data-product portal's audit records and " +
				"relays from its transactional outbox to the configured broker. Every message is a CloudEvents 1.0 " +
				"event in structured JSON mode; see docs/events.md for the catalogue and the versioning policy. " +
				"Generated by `herald schema export`; do not edit."},
		}},
		{"defaultContentType", structuredContentType},
		{"servers", object{
			{"nats", object{
				{"host", "{host}"}, {"protocol", "nats"},
				{"description", "NATS JetStream; the stream (default HERALD) captures herald.>."},
				{"variables", object{{"host", object{{"default", "localhost:4222"}}}}},
			}},
			{"sqs", object{
				{"host", "sqs.{region}.amazonaws.com"}, {"protocol", "sqs"},
				{"description", "AWS SQS."},
				{"variables", object{{"region", object{{"default", "eu-west-1"}}}}},
			}},
			{"servicebus", object{
				{"host", "{namespace}.servicebus.windows.net"}, {"protocol", "amqp"}, {"protocolVersion", "1.0"},
				{"description", "Azure Service Bus (AMQP 1.0)."},
				{"variables", object{{"namespace", object{{"description", "The Service Bus namespace."}}}}},
			}},
			{"webhook", object{
				{"host", "{host}"}, {"protocol", "https"},
				{"description", "A subscriber's HTTPS endpoint."},
				{"variables", object{{"host", object{{"description", "The subscriber's host."}}}}},
			}},
		}},
		{"channels", channels},
		{"operations", operations},
		{"components", object{{"schemas", componentSchemas(schemas)}, {"messages", messages}}},
	}
	var b bytes.Buffer
	b.WriteString("# Generated by `herald schema export` (go run ./cmd/herald schema export); do not edit.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func message(opts Options, et enricher.EventType) (object, error) {
	ex := opts.Examples[et.Type]
	raw, err := ex.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("example of %s: %w", et.Type, err)
	}
	payload, err := orderedJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("example of %s: %w", et.Type, err)
	}
	return object{
		{"name", et.Type},
		{"title", et.Type},
		{"summary", et.Summary},
		{"contentType", structuredContentType},
		{"payload", ref("#/components/schemas/" + schemaKey(cloudEventPath(et.Type)))},
		{"examples", []any{object{{"name", strings.ReplaceAll(messageKey(et), ".", "_")}, {"payload", payload}}}},
	}, nil
}
