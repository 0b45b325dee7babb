package tracing

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/decoder"
)

// The labels with a meaning for the span, as in ebpf_exporter's
// struct span_base_t; every other label becomes a string attribute.
const (
	labelTraceID   = "trace_id"                    // 16 bytes, hex decoder
	labelParentID  = "parent_span_id"              // 8 bytes, hex; zero: a root span
	labelSpanID    = "span_id"                     // 8 bytes, hex; zero: a random id
	labelStart     = "span_monotonic_timestamp_ns" // bpf_ktime_get_ns() at the start
	labelDuration  = "span_duration_ns"
	labelName      = "span_name" // overrides the configured name
	attrConfigName = "ebpf_exporter.config"
)

const zeroSpanID = "0000000000000000"

// Span is one configured span: records of its ring buffer become spans.
type Span struct {
	conf   config.Span
	config string
	labels *decoder.Labels
	tracer trace.Tracer
	clock  func() (mono uint64, wall time.Time)
}

// NewSpan compiles a span's labels for the config named cfgName.
func NewSpan(p *Provider, cfgName string, conf config.Span, env *decoder.Env) (*Span, error) {
	labels, err := decoder.NewLabels(conf.Labels, env)
	if err != nil {
		return nil, fmt.Errorf("span %q: %w", spanName(conf), err)
	}
	return &Span{conf: conf, config: cfgName, labels: labels, tracer: p.Tracer(conf.Service), clock: clocks}, nil
}

func spanName(conf config.Span) string {
	if conf.Name != "" {
		return conf.Name
	}
	return conf.RingBuf
}

// clocks reads CLOCK_MONOTONIC (bpf_ktime_get_ns's clock) and the wall
// clock together, to place monotonic timestamps in time.
func clocks() (uint64, time.Time) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano()), time.Now()
}

// Record turns one ring-buffer record into a span. A record longer than
// the labels is cut to them, as ebpf_exporter does; decoders may drop it
// (decoder.ErrSkipLabelSet).
func (s *Span) Record(raw []byte) error {
	size := int(s.labels.KeySize())
	if len(raw) < size {
		return fmt.Errorf("span %q: record of %d bytes, labels take %d", spanName(s.conf), len(raw), size)
	}
	values, err := s.labels.Decode(raw[:size])
	if err != nil {
		return err
	}
	return s.emit(values)
}

func (s *Span) emit(values []string) error {
	name := spanName(s.conf)
	var (
		traceID          trace.TraceID
		parentID, spanID trace.SpanID
		start            = time.Now()
		duration         time.Duration
		attrs            []attribute.KeyValue
		err              error
	)
	names := s.labels.Names()
	for i, v := range values {
		switch names[i] {
		case labelTraceID:
			traceID, err = trace.TraceIDFromHex(v)
		case labelParentID:
			if v != zeroSpanID {
				parentID, err = trace.SpanIDFromHex(v)
			}
		case labelSpanID:
			if v != zeroSpanID {
				spanID, err = trace.SpanIDFromHex(v)
			}
		case labelStart:
			var ns uint64
			if ns, err = strconv.ParseUint(v, 10, 64); err == nil {
				mono, wall := s.clock()
				start = wall.Add(time.Duration(int64(ns - mono)))
			}
		case labelDuration:
			var ns uint64
			if ns, err = strconv.ParseUint(v, 10, 64); err == nil {
				duration = time.Duration(ns)
			}
		case labelName:
			name = v
		default:
			attrs = append(attrs, attribute.String(names[i], v))
		}
		if err != nil {
			return fmt.Errorf("span %q: label %s=%q: %w", spanName(s.conf), names[i], v, err)
		}
	}
	attrs = append(attrs, attribute.String(attrConfigName, s.config))
	// The parent as the record names it; a zero parent span id makes a
	// root span that keeps the record's trace id.
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: parentID, TraceFlags: trace.FlagsSampled,
	}))
	if spanID.IsValid() {
		ctx = withSpanID(ctx, spanID)
	}
	_, span := s.tracer.Start(ctx, name, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	span.End(trace.WithTimestamp(start.Add(duration)))
	return nil
}
