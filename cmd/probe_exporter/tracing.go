package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/loader"
	"github.com/probe-exporter/probe_exporter/tracing"
)

// startTracing sets up OTLP span export when the environment names an
// endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
// and OTEL_TRACES_EXPORTER is not "none".
func (d *daemon) startTracing(ctx context.Context) error {
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil
	}
	p, err := tracing.NewProvider(ctx)
	if errors.Is(err, tracing.ErrDisabled) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	d.tracing = p
	return nil
}

// stopTracing sends the spans not sent yet.
func (d *daemon) stopTracing() {
	if d.tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.tracing.Shutdown(ctx); err != nil {
		d.logger.Warn("flushing spans", "err", err)
	}
}

// traceStart starts one of the exporter's own spans (attach, attach_config,
// pass_kaddrs, ...), as ebpf_exporter traces its start; without tracing it
// is a no-op span.
func (d *daemon) traceStart(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if d.tracing == nil {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span
	}
	return d.tracing.Tracer("").Start(ctx, name, trace.WithAttributes(attrs...))
}

// passKaddrs resolves a config's kaddrs inside a pass_kaddrs span (and
// populate_kaddrs for the first read of /proc/kallsyms), so the trace of
// the start shows their cost; the loader then finds them resolved.
func (d *daemon) passKaddrs(ctx context.Context, c config.Config) {
	if len(c.Kaddrs) == 0 || d.tracing == nil {
		return
	}
	ctx, span := d.traceStart(ctx, "pass_kaddrs")
	defer span.End()
	if !d.kallsymsRead {
		_, populate := d.traceStart(ctx, "populate_kaddrs")
		_, err := d.env.KernelAddr(c.Kaddrs[0])
		if err != nil {
			populate.SetStatus(codes.Error, err.Error())
		}
		populate.End()
		d.kallsymsRead = true
	}
	for _, name := range c.Kaddrs {
		span.AddEvent("kaddr", trace.WithAttributes(attribute.String("symbol", name)))
		if _, err := d.env.KernelAddr(name); err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
	}
}

// startSpans follows the ring buffers of a config's tracing spans until
// the object closes.
func (d *daemon) startSpans(obj *loader.Object) {
	spans := obj.Config.Tracing.Spans
	if len(spans) == 0 || obj.Err != nil {
		return
	}
	if d.tracing == nil {
		d.logger.Warn("tracing spans are not exported: set OTEL_EXPORTER_OTLP_ENDPOINT", "config", obj.Config.Name, "spans", len(spans))
		return
	}
	var readers []*tracing.Reader
	for _, sc := range spans {
		m := obj.Map(sc.RingBuf)
		var err error
		if m == nil {
			err = fmt.Errorf("the object has no map %q", sc.RingBuf)
		}
		var s *tracing.Span
		if err == nil {
			s, err = tracing.NewSpan(d.tracing, obj.Config.Name, sc, d.env)
		}
		var r *tracing.Reader
		if err == nil {
			r, err = tracing.NewReader(s, m)
		}
		if err != nil {
			obj.Err = fmt.Errorf("config %q: tracing span %q: %w", obj.Config.Name, sc.Name, err)
			return
		}
		readers = append(readers, r)
	}
	ctx, cancel := context.WithCancel(d.ctx)
	done := make(chan struct{}, len(readers))
	errs := d.coll.DecoderErrors(obj.Config.Name)
	for _, r := range readers {
		go func() {
			r.Run(ctx, errs, d.logger.With("config", obj.Config.Name))
			done <- struct{}{}
		}()
	}
	obj.OnClose(func() {
		cancel()
		for range readers {
			<-done
		}
	})
}
