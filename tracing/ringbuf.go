package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/decoder"
)

// Reader follows a span's ring buffer.
type Reader struct {
	span *Span
	rd   *ringbuf.Reader
}

// NewReader opens the ring buffer m for s.
func NewReader(s *Span, m *ebpf.Map) (*Reader, error) {
	if m.Type() != ebpf.RingBuf {
		return nil, fmt.Errorf("span %q: map %q is a %s, not a ring buffer", spanName(s.conf), s.conf.RingBuf, m.Type())
	}
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("span %q: ring buffer %q: %w", spanName(s.conf), s.conf.RingBuf, err)
	}
	return &Reader{span: s, rd: rd}, nil
}

// Run turns records into spans until ctx ends; records that do not decode
// count in errs (the config's decoder_errors_total) and are logged.
func (r *Reader) Run(ctx context.Context, errs prometheus.Counter, logger *slog.Logger) {
	stop := context.AfterFunc(ctx, func() { r.rd.Close() })
	defer stop()
	defer r.rd.Close()
	var rec ringbuf.Record
	for {
		if err := r.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrClosed) || ctx.Err() != nil {
				return
			}
			logger.Warn("reading span ring buffer", "ringbuf", r.span.conf.RingBuf, "err", err)
			continue
		}
		if err := r.span.Record(rec.RawSample); err != nil && !errors.Is(err, decoder.ErrSkipLabelSet) {
			if errs != nil {
				errs.Inc()
			}
			logger.Warn("span record not exported", "ringbuf", r.span.conf.RingBuf, "err", err)
		}
	}
}
