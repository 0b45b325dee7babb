package services

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/loader"
	"github.com/probe-exporter/probe_exporter/tracing"
)

// traceStart starts one of the exporter's own spans (attach, attach_config,
// pass_kaddrs, ...), as ebpf_exporter traces its start; without tracing it
// is a no-op span.
func (c *Configs) traceStart(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if c.opts.Tracing == nil {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span
	}
	return c.opts.Tracing.Tracer("").Start(ctx, name, trace.WithAttributes(attrs...))
}

// passKaddrs resolves a config's kaddrs inside a pass_kaddrs span (and
// populate_kaddrs for the first read of /proc/kallsyms), so the trace of
// the start shows their cost; the loader then finds them resolved.
func (c *Configs) passKaddrs(ctx context.Context, cfg config.Config) {
	if len(cfg.Kaddrs) == 0 || c.opts.Tracing == nil {
		return
	}
	ctx, span := c.traceStart(ctx, "pass_kaddrs")
	defer span.End()
	if !c.kallsymsRead {
		_, populate := c.traceStart(ctx, "populate_kaddrs")
		_, err := c.opts.Env.KernelAddr(cfg.Kaddrs[0])
		if err != nil {
			populate.SetStatus(codes.Error, err.Error())
		}
		populate.End()
		c.kallsymsRead = true
	}
	for _, name := range cfg.Kaddrs {
		span.AddEvent("kaddr", trace.WithAttributes(attribute.String("symbol", name)))
		if _, err := c.opts.Env.KernelAddr(name); err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
	}
}

// startSpans follows the ring buffers of a config's tracing spans until
// the object closes.
func (c *Configs) startSpans(obj *loader.Object) {
	spans := obj.Config.Tracing.Spans
	if len(spans) == 0 || obj.Err != nil {
		return
	}
	if c.opts.Tracing == nil {
		c.opts.Logger.Warn("tracing spans are not exported: set OTEL_EXPORTER_OTLP_ENDPOINT", "config", obj.Config.Name, "spans", len(spans))
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
			s, err = tracing.NewSpan(c.opts.Tracing, obj.Config.Name, sc, c.opts.Env)
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
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{}, len(readers))
	errs := c.coll.DecoderErrors(obj.Config.Name)
	for _, r := range readers {
		go func() {
			r.Run(ctx, errs, c.opts.Logger.With("config", obj.Config.Name))
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
