package services

import (
	"context"
	"fmt"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/probe-exporter/probe_exporter/collector"
	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/events"
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

// startEvents runs one reader per ring buffer and perf event array of a
// config, until the object closes: its records feed the config's events
// metrics and its tracing spans alike (a map may feed both; two readers
// of one ring buffer would split its records between them).
func (c *Configs) startEvents(cc *collector.Config) {
	obj := cc.Object
	if obj.Err != nil || obj.Collection == nil {
		return
	}
	logger := c.opts.Logger.With("config", obj.Config.Name)
	errs := c.coll.DecoderErrors(obj.Config.Name)
	spans := obj.Config.Tracing.Spans
	// A span's ring buffer must be in the object whether or not spans
	// are exported here, so that --config.check and a host without an
	// OTLP endpoint refuse a config that would fail where there is one.
	for _, sc := range spans {
		if m := obj.Map(sc.RingBuf); m == nil || m.Type() != ebpf.RingBuf {
			what := "has no map"
			if m != nil {
				what = "has a " + m.Type().String() + ", not a ring buffer, as map"
			}
			obj.Err = fmt.Errorf("%s: tracing span %q: the object %s %q", obj.Config.At(sc.Line), sc.Name, what, sc.RingBuf)
			return
		}
	}
	if len(spans) > 0 && c.opts.Tracing == nil {
		logger.Warn("tracing spans are not exported: set OTEL_EXPORTER_OTLP_ENDPOINT", "spans", len(spans))
		spans = nil
	}
	for _, sc := range spans {
		s, err := tracing.NewSpan(c.opts.Tracing, obj.Config.Name, sc, c.opts.Env)
		var src *collector.EventSource
		if err == nil {
			src, err = cc.EventSource(sc.RingBuf)
		}
		if err != nil {
			obj.Err = fmt.Errorf("config %q: tracing span %q: %w", obj.Config.Name, sc.Name, err)
			return
		}
		src.AddSink(s.Sink(errs, logger))
	}
	sources := cc.EventSources()
	readers := make([]*events.Reader, 0, len(sources))
	for _, src := range sources {
		r, err := events.NewReader(src.Map, src.EBPFMap())
		if err != nil {
			for _, r := range readers {
				r.Close()
			}
			obj.Err = fmt.Errorf("config %q: %w", obj.Config.Name, err)
			return
		}
		readers = append(readers, r)
	}
	if len(readers) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{}, len(readers))
	for i, r := range readers {
		src := sources[i]
		src.SetRunning(true)
		go func() {
			defer func() { done <- struct{}{} }()
			if err := r.Run(ctx, src); err != nil {
				logger.Error("reading events stopped", "map", src.Map, "err", err)
			}
		}()
	}
	obj.OnClose(func() {
		cancel()
		for range readers {
			<-done
		}
	})
}
