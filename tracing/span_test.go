package tracing

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/probe-exporter/probe_exporter/config"
)

func hexLabel(name string, size uint) config.Label {
	return config.Label{Name: name, Size: size, Decoders: []config.Decoder{{Name: "hex"}}}
}

func uintLabel(name string, size uint) config.Label {
	return config.Label{Name: name, Size: size, Decoders: []config.Decoder{{Name: "uint"}}}
}

// record builds a span_base_t record followed by a u64 "cpu".
func record(traceHi, traceLo, parent, span, start, dur, cpu uint64) []byte {
	var b []byte
	for _, v := range []uint64{traceHi, traceLo, parent, span, start, dur, cpu} {
		b = binary.NativeEndian.AppendUint64(b, v)
	}
	return b
}

func TestRecord(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	p := newProvider(sdktrace.NewSimpleSpanProcessor(exp))
	conf := config.Span{RingBuf: "rb", Name: "work", Service: "svc", Labels: []config.Label{
		hexLabel("trace_id", 16), hexLabel("parent_span_id", 8), hexLabel("span_id", 8),
		uintLabel("span_monotonic_timestamp_ns", 8), uintLabel("span_duration_ns", 8), uintLabel("cpu", 8),
	}}
	s, err := NewSpan(p, "cfg", conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s.clock = func() (uint64, time.Time) { return 10_000_000_000, wall }

	for _, tc := range []struct {
		name    string
		raw     []byte
		wantErr string
		check   func(t *testing.T, got tracetest.SpanStub)
	}{
		{name: "root with its ids", raw: record(1, 2, 0, 0xabc, 9_000_000_000, 5_000_000, 3), check: func(t *testing.T, got tracetest.SpanStub) {
			if got.Parent.SpanID().IsValid() {
				t.Errorf("root has parent %s", got.Parent.SpanID())
			}
			if sid := got.SpanContext.SpanID(); binary.NativeEndian.Uint64(sid[:]) != 0xabc {
				t.Errorf("span id %s", sid)
			}
			if tid := got.SpanContext.TraceID(); binary.NativeEndian.Uint64(tid[:8]) != 1 || binary.NativeEndian.Uint64(tid[8:]) != 2 {
				t.Errorf("trace id %s", tid)
			}
			if want := wall.Add(-time.Second); !got.StartTime.Equal(want) || got.EndTime.Sub(got.StartTime) != 5*time.Millisecond {
				t.Errorf("start %v end %v, want start %v and 5ms", got.StartTime, got.EndTime, want)
			}
			if got.Name != "work" || got.Resource.String() != "service.name=svc" {
				t.Errorf("name %q resource %s", got.Name, got.Resource)
			}
			attrs := map[string]string{}
			for _, kv := range got.Attributes {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			if attrs["cpu"] != "3" || attrs["ebpf_exporter.config"] != "cfg" || len(attrs) != 2 {
				t.Errorf("attributes %v", attrs)
			}
		}},
		{name: "child, random span id", raw: record(1, 2, 0xabc, 0, 9_000_000_000, 0, 0), check: func(t *testing.T, got tracetest.SpanStub) {
			if sid := got.Parent.SpanID(); binary.NativeEndian.Uint64(sid[:]) != 0xabc {
				t.Errorf("parent %s", sid)
			}
			if !got.SpanContext.SpanID().IsValid() {
				t.Error("no span id generated")
			}
		}},
		{name: "longer record is cut", raw: append(record(1, 2, 0, 1, 1, 1, 1), make([]byte, 100)...)},
		{name: "short record", raw: record(1, 2, 0, 1, 1, 1, 1)[:40], wantErr: "record of 40 bytes, labels take 56"},
		{name: "zero trace id", raw: record(0, 0, 0, 1, 1, 1, 1), wantErr: "trace_id"},
		{name: "empty", raw: nil, wantErr: "record of 0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp.Reset()
			err := s.Record(tc.raw)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if n := len(exp.GetSpans()); n != 0 {
					t.Errorf("%d spans exported for a bad record", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			spans := exp.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans", len(spans))
			}
			if tc.check != nil {
				tc.check(t, spans[0])
			}
		})
	}
}
