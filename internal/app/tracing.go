package app

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/pkg/enricher"
)

// tracerProvider returns the OTLP tracer provider tracing.* describes, and
// the function that flushes and stops it, or nil when tracing is off. The
// exporter connects lazily: an unreachable collector costs spans, never
// events.
func tracerProvider(ctx context.Context, cfg config.Tracing) (*sdktrace.TracerProvider, func() error, error) {
	if cfg.Exporter != "otlp" {
		return nil, nil, nil
	}
	var opts []otlptracehttp.Option
	if cfg.Endpoint != "" {
		// Like OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL, to
		// which the traces path is added unless the URL has a path.
		endpoint := cfg.Endpoint
		if u, err := url.Parse(endpoint); err == nil && strings.Trim(u.Path, "/") == "" {
			u.Path = "/v1/traces"
			endpoint = u.String()
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(endpoint))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.TraceIDRatioBased(cfg.SampleRatio)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "herald"))),
	)
	shutdown := func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return tp.Shutdown(ctx)
	}
	return tp, shutdown, nil
}

// EnricherTracing returns the Enricher options that trace enrichment as
// tracing.* describes, and the function that flushes and stops the tracer
// provider; none when tracing is off.
func EnricherTracing(ctx context.Context, cfg config.Tracing) ([]enricher.Option, func() error, error) {
	tp, stop, err := tracerProvider(ctx, cfg)
	if err != nil || tp == nil {
		return nil, func() error { return nil }, err
	}
	return []enricher.Option{enricher.WithTracerProvider(tp)}, stop, nil
}
