// Package tracing turns ring-buffer records of BPF programs into
// OpenTelemetry spans, as ebpf_exporter's tracing does: the same config
// (tracing: spans: [{ringbuf, name, service, labels}]), the same record
// layout and span fields, sent with OTLP as the standard OTEL_* environment
// variables configure it.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// DefaultService names spans whose config names no service, unless
// OTEL_SERVICE_NAME does (ebpf_exporter's default is "ebpf_exporter").
const DefaultService = "probe_exporter"

// ErrDisabled is returned by NewProvider when OTEL_TRACES_EXPORTER=none.
var ErrDisabled = errors.New("tracing disabled by OTEL_TRACES_EXPORTER=none")

// Provider hands out tracers per service name; every tracer feeds one
// batching OTLP exporter.
type Provider struct {
	processor sdktrace.SpanProcessor
	ids       *idGenerator

	mu        sync.Mutex
	providers map[string]*sdktrace.TracerProvider
}

// NewProvider builds the OTLP exporter from the environment:
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL
// ("http/protobuf", the default, or "grpc"); the endpoint, headers, TLS and
// timeout variables are read by the OpenTelemetry exporters themselves.
func NewProvider(ctx context.Context) (*Provider, error) {
	switch exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp {
	case "", "otlp":
	case "none":
		return nil, ErrDisabled
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", exp)
	}
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var (
		exporter sdktrace.SpanExporter
		err      error
	)
	switch proto {
	case "", "http/protobuf":
		exporter, err = otlptracehttp.New(ctx)
	case "grpc":
		exporter, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTLP protocol %q: want http/protobuf or grpc", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return newProvider(sdktrace.NewBatchSpanProcessor(exporter)), nil
}

func newProvider(processor sdktrace.SpanProcessor) *Provider {
	return &Provider{processor: processor, ids: newIDGenerator(), providers: map[string]*sdktrace.TracerProvider{}}
}

// Tracer returns the tracer of a service ("" for OTEL_SERVICE_NAME or
// DefaultService).
func (p *Provider) Tracer(service string) trace.Tracer {
	if service == "" {
		service = os.Getenv("OTEL_SERVICE_NAME")
	}
	if service == "" {
		service = DefaultService
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	tp, ok := p.providers[service]
	if !ok {
		tp = sdktrace.NewTracerProvider(
			sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))),
			sdktrace.WithSpanProcessor(p.processor),
			sdktrace.WithIDGenerator(p.ids),
		)
		p.providers[service] = tp
	}
	return tp.Tracer("github.com/probe-exporter/probe_exporter/tracing")
}

// ForceFlush sends the spans ended so far.
func (p *Provider) ForceFlush(ctx context.Context) error { return p.processor.ForceFlush(ctx) }

// Shutdown flushes and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error {
	return p.processor.Shutdown(ctx)
}
