package safeopen

import (
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// maxLogged bounds the paths remembered as logged: past it, refusals are
// still counted, and logged no more.
const maxLogged = 4096

// Stats counts files refused or not read, by reason, and logs each file
// once. A nil *Stats counts nothing.
type Stats struct {
	errors *prometheus.CounterVec
	logger *slog.Logger

	mu     sync.Mutex
	logged map[string]bool
}

// NewStats returns the counter probe_exporter_untrusted_file_errors_total.
func NewStats(logger *slog.Logger) *Stats {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Stats{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "probe_exporter_untrusted_file_errors_total",
			Help: "Files other processes or users control (perf maps, mapped ELF files, probed binaries) refused or not read in time, by reason."},
			[]string{"reason"}),
		logger: logger,
		logged: map[string]bool{},
	}
	for _, r := range []Reason{Symlink, NotRegular, TooLarge, Owner, Writable, Changed, Timeout, Busy} {
		s.errors.WithLabelValues(string(r))
	}
	return s
}

// Record counts err if it is a refusal (see ReasonOf) and logs it the first
// time for path; what says what the file was for. It reports whether err
// was a refusal.
func (s *Stats) Record(what, path string, err error) bool {
	r := ReasonOf(err)
	if r == "" || s == nil {
		return r != ""
	}
	s.errors.WithLabelValues(string(r)).Inc()
	s.mu.Lock()
	first := !s.logged[path] && len(s.logged) < maxLogged
	if first {
		s.logged[path] = true
	}
	s.mu.Unlock()
	if first {
		s.logger.Warn("untrusted file refused; skipped", "what", what, "file", path, "reason", string(r), "err", err)
	}
	return true
}

// Describe implements prometheus.Collector.
func (s *Stats) Describe(ch chan<- *prometheus.Desc) { s.errors.Describe(ch) }

// Collect implements prometheus.Collector.
func (s *Stats) Collect(ch chan<- prometheus.Metric) { s.errors.Collect(ch) }
