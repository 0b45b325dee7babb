// Package ingest accepts profiles pushed with Pyroscope's /ingest API
// (folded or line stacks, pprof) and hands them to a sink such as the
// export rules.
//
// Every resource a push can take is bounded: bytes on the wire
// (MaxBodyBytes), bytes after decompression, counted while decompressing
// (MaxDecompressedBytes), time to send the body (BodyTimeout), and the
// memory all pushes in flight hold together (MaxInflightBytes: over it a
// push is answered 503 with Retry-After).
package ingest

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/rules"
)

// Defaults of Options.
const (
	DefaultMaxBodyBytes         = 16 << 20
	DefaultMaxDecompressedBytes = 64 << 20
	DefaultMaxInflightBytes     = 128 << 20
	DefaultBodyTimeout          = 30 * time.Second
)

// Options configure the handler; zero values take the defaults.
type Options struct {
	// MaxBodyBytes caps a request body as sent (413 over it).
	MaxBodyBytes int64
	// MaxDecompressedBytes caps a body after gzip decompression (413).
	MaxDecompressedBytes int64
	// MaxInflightBytes caps the memory that all pushes being read and
	// decoded hold together; a push that would go over it is answered 503
	// with Retry-After.
	MaxInflightBytes int64
	// BodyTimeout is how long a client has to send its body (408 after).
	BodyTimeout time.Duration
	Logger      *slog.Logger
}

// Handler serves POST /ingest.
type Handler struct {
	sink     rules.Sink
	opts     Options
	inflight atomic.Int64
	answers  *prometheus.CounterVec
}

// NewHandler returns the /ingest handler.
func NewHandler(sink rules.Sink, opts Options) *Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxDecompressedBytes <= 0 {
		opts.MaxDecompressedBytes = DefaultMaxDecompressedBytes
	}
	if opts.MaxInflightBytes <= 0 {
		opts.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = DefaultBodyTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{sink: sink, opts: opts, answers: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "probe_exporter_ingest_requests_total",
		Help: "Pushes to /ingest by HTTP status answered.",
	}, []string{"code"})}
}

// Describe implements prometheus.Collector: the handler's own metrics.
func (h *Handler) Describe(ch chan<- *prometheus.Desc) {
	h.answers.Describe(ch)
	ch <- inflightDesc
}

var inflightDesc = prometheus.NewDesc("probe_exporter_ingest_inflight_bytes",
	"Memory held by pushes being read and decoded, as counted against --ingest.max-inflight-bytes.", nil, nil)

// Collect implements prometheus.Collector.
func (h *Handler) Collect(ch chan<- prometheus.Metric) {
	h.answers.Collect(ch)
	if m, err := prometheus.NewConstMetric(inflightDesc, prometheus.GaugeValue, float64(h.inflight.Load())); err == nil {
		ch <- m
	}
}
