package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/probe-exporter/probe_exporter/tracing"
)

// Tracing exports the exporter's spans (its start, configs' tracing
// sections) over OTLP.
type Tracing struct {
	*tracing.Provider
	logger *slog.Logger
}

// NewTracing sets up OTLP span export when the environment names an
// endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), or always with byDefault (the
// OpenTelemetry SDK's default endpoint, localhost:4318 over HTTP, as
// ebpf_exporter sends to), unless OTEL_TRACES_EXPORTER is "none";
// otherwise it returns nil.
func NewTracing(ctx context.Context, logger *slog.Logger, byDefault bool) (*Tracing, error) {
	if !byDefault && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, nil
	}
	p, err := tracing.NewProvider(ctx)
	if errors.Is(err, tracing.ErrDisabled) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	return &Tracing{Provider: p, logger: logger}, nil
}

// Run exports until ctx ends; Close sends what is left.
func (t *Tracing) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Close sends the spans not sent yet, waiting at most 10 s.
func (t *Tracing) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := t.Provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("flushing spans: %w", err)
	}
	return nil
}
