package collector

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/decoder"
	"github.com/probe-exporter/probe_exporter/events"
	"github.com/probe-exporter/probe_exporter/loader"
)

// configBuilder sets up the metrics of loaded objects: a mapMetric per
// metric of the config (multivalue.go for entries with values), each with
// its expiry (expire.go).
type configBuilder struct {
	prefix   string // of metric names
	env      *decoder.Env
	exits    ProcessExits
	procRoot string
	// The counters a config's metrics count into, served by the
	// stateCollector.
	decoderErrors *prometheus.CounterVec
	expired       *prometheus.CounterVec
	// eventsDropped counts records events metrics dropped;
	// eventsMaxSeries bounds their label sets.
	eventsDropped   *prometheus.CounterVec
	eventsMaxSeries int
}

// fqName is the full name of a metric read from the config's maps.
func (b *configBuilder) fqName(name string) string { return prometheus.BuildFQName(b.prefix, "", name) }

// build sets up the metrics of a loaded object: every metric's map must
// exist and its labels must match the map's key size. What does not is in
// the Config's Err, and the rest is served.
func (b *configBuilder) build(obj *loader.Object) *Config {
	// Every config's decoder_errors_total is served from the start, 0
	// until a key fails, as ebpf_exporter serves it: rate() alerts and
	// absent() see the series whether or not the config attached.
	cfg := &Config{Object: obj, decodeErrs: b.decoderErrors.WithLabelValues(obj.Config.Name)}
	if obj.Err != nil || obj.Collection == nil {
		return cfg
	}
	var errs []error
	add := func(kind metricKind, name, mapName, help string, line int, labels []config.Label, h *config.Histogram, maxAge config.Duration) {
		m := obj.Map(mapName)
		where := fmt.Sprintf("%s:%d", path(obj.Config), line)
		if m == nil {
			errs = append(errs, fmt.Errorf("%s: metric %q: the object has no map %q (it has: %s)", where, name, mapName, strings.Join(mapNames(obj), ", ")))
			return
		}
		if events.IsEventMap(m) {
			errs = append(errs, fmt.Errorf("%s: metric %q: map %q is a %s, whose records are not kept in it: name it with events: to count them", where, name, mapName, m.Type()))
			return
		}
		mm, err := newMapMetric(kind, prometheus.BuildFQName(b.prefix, "", name), help, labels, m, h, b.env)
		var ks errKeySize
		switch {
		case errors.As(err, &ks):
			errs = append(errs, fmt.Errorf("%s: metric %q: labels take %d bytes (sizes + padding) but map %q has %d-byte keys", where, name, ks.labels, mapName, ks.key))
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: metric %q: %w", where, name, err))
		default:
			if mm.expiry, err = b.newExpiry(obj.Config, mm, mapName, labels, maxAge); err != nil {
				errs = append(errs, fmt.Errorf("%s: metric %q: %w", where, name, err))
				return
			}
			cfg.metrics = append(cfg.metrics, mm)
		}
	}
	ms := obj.Config.Metrics
	values := func(kind metricKind, m config.Counter) {
		if bm := obj.Map(m.MapName()); bm != nil && events.IsEventMap(bm) {
			errs = append(errs, fmt.Errorf("%s:%d: metric %q: map %q is a %s, whose records are not kept in it: name it with events: to count them", path(obj.Config), m.Line, m.Name, m.MapName(), bm.Type()))
			return
		}
		mm, err := b.newValuesMetric(obj, kind, m)
		if err != nil {
			errs = append(errs, err)
			return
		}
		cfg.metrics = append(cfg.metrics, mm)
	}
	errs = append(errs, b.addEventMetrics(cfg)...)
	for _, m := range ms.Counters {
		if m.Events != "" {
			continue
		}
		if m.Values != nil {
			values(kindCounter, m)
			continue
		}
		add(kindCounter, m.Name, m.MapName(), m.Help, m.Line, m.Labels, nil, m.MaxAge)
	}
	for _, m := range ms.Gauges {
		if m.Values != nil {
			values(kindGauge, m)
			continue
		}
		add(kindGauge, m.Name, m.MapName(), m.Help, m.Line, m.Labels, nil, m.MaxAge)
	}
	for i := range ms.Histograms {
		h := &ms.Histograms[i]
		if h.Events != "" {
			continue
		}
		add(kindHistogram, h.Name, h.MapName(), h.Help, h.Line, h.Labels, h, h.MaxAge)
	}
	cfg.Err = errors.Join(errs...)
	for _, mm := range cfg.metrics {
		mm.owner = cfg
		for _, f := range mm.fields {
			f.mm.owner = cfg
		}
	}
	return cfg
}

func path(cfg config.Config) string {
	if cfg.Path == "" {
		return "embedded:" + cfg.Name
	}
	return cfg.Path
}

func mapNames(obj *loader.Object) []string {
	var names []string
	for name := range obj.Collection.Maps {
		if !strings.HasPrefix(name, ".") {
			names = append(names, name)
		}
	}
	return names
}
