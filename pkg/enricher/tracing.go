package enricher

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/pkg/event"
)

const tracerName = "github.com/heraldhq/herald/pkg/enricher"

// WithTracerProvider makes the enricher record a span per audit record with
// tp (default: OpenTelemetry's global provider, which records nothing until
// a program installs one). Every event made for the record carries the
// span's W3C traceparent, so the relay's send span, which links to each
// event's traceparent (producer.WithTracerProvider), joins the trace in
// which the event was made. A nil tp keeps the default.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(e *Enricher) {
		if tp != nil {
			e.tracer = tp.Tracer(tracerName)
		}
	}
}

// startSpan opens the span of one record's enrichment. Its kind is producer
// and its operation "create", as OpenTelemetry's messaging conventions name
// the span that makes a message sent later by another (the relay's "send").
// The action is an attribute rather than part of the name, since an action
// Herald does not know may be any string.
func (e *Enricher) startSpan(ctx context.Context, rec AuditRecord) (context.Context, trace.Span) {
	return e.tracer.Start(ctx, "enrich audit record", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.operation.type", "create"),
			attribute.String("herald.audit_record.id", rec.ID),
			attribute.String("herald.audit_record.action", rec.Name),
		))
}

// endSpan records how the enrichment ended and closes the span.
func endSpan(span trace.Span, evs []event.Event, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else {
		span.SetAttributes(attribute.Int("messaging.batch.message_count", len(evs)))
	}
	span.End()
}

// traceParent is the W3C traceparent of ctx's span, "" when ctx has no valid
// span context (no tracer provider and no incoming trace): an event then
// carries none rather than a made-up one.
func traceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}
