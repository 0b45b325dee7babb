package tracing

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/decoder"
)

// Sink returns the function that turns each record of the span's ring
// buffer into a span, for the map's one reader (package events), which
// may feed metrics from the same records. Records that do not decode
// count in errs (the config's decoder_errors_total) and are logged.
func (s *Span) Sink(errs prometheus.Counter, logger *slog.Logger) func(raw []byte) {
	return func(raw []byte) {
		if err := s.Record(raw); err != nil && !errors.Is(err, decoder.ErrSkipLabelSet) {
			if errs != nil {
				errs.Inc()
			}
			logger.Warn("span record not exported", "ringbuf", s.conf.RingBuf, "err", err)
		}
	}
}
