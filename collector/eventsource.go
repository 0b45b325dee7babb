package collector

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/events"
	"github.com/probe-exporter/probe_exporter/loader"
)

// EventSource is one ring buffer or perf event array of a config and what
// its records feed: the config's events metrics, and sinks added by others
// (tracing spans). It is the events.Handler of the map's one reader, which
// whoever runs the config starts (Running tells the state collector that
// its counts are real).
type EventSource struct {
	// Map is the map's name in the object.
	Map string
	m   *ebpf.Map
	// lost is the ring buffer's NAME_lost counter map, or nil.
	lost    *ebpf.Map
	metrics []*eventMetric
	sinks   []func([]byte)

	records, lostRecords atomic.Uint64
	running              atomic.Bool
}

// EBPFMap is the map whose records the source takes.
func (s *EventSource) EBPFMap() *ebpf.Map { return s.m }

// AddSink makes fn see every record too; call it before the reader runs.
func (s *EventSource) AddSink(fn func(raw []byte)) { s.sinks = append(s.sinks, fn) }

// SetRunning says whether a reader feeds the source.
func (s *EventSource) SetRunning(on bool) { s.running.Store(on) }

// Record hands a record to every metric and sink of the map.
func (s *EventSource) Record(raw []byte) {
	s.records.Add(1)
	for _, m := range s.metrics {
		m.Record(raw)
	}
	for _, fn := range s.sinks {
		fn(raw)
	}
}

// Lost counts records the kernel dropped (perf event arrays).
func (s *EventSource) Lost(n uint64) { s.lostRecords.Add(n) }

// counts returns the records read and lost so far; lostKnown is false for
// a ring buffer without a lost counter map.
func (s *EventSource) counts() (records, lost uint64, lostKnown bool) {
	records, lost = s.records.Load(), s.lostRecords.Load()
	switch {
	case s.m.Type() == ebpf.PerfEventArray:
		return records, lost, true
	case s.lost != nil:
		n, err := events.LostCount(s.lost)
		return records, lost + n, err == nil
	}
	return records, 0, false
}

var _ events.Handler = (*EventSource)(nil)

// EventSources are the ring buffers and perf event arrays whose records
// the config's metrics count.
func (cfg *Config) EventSources() []*EventSource { return cfg.sources }

// EventSource returns the source of the named map, adding it if no metric
// reads it (a map feeding spans only), or an error if the object has no
// such event map.
func (cfg *Config) EventSource(name string) (*EventSource, error) {
	for _, s := range cfg.sources {
		if s.Map == name {
			return s, nil
		}
	}
	s, err := newEventSource(cfg.Object, name)
	if err != nil {
		return nil, err
	}
	cfg.sources = append(cfg.sources, s)
	return s, nil
}

func newEventSource(obj *loader.Object, name string) (*EventSource, error) {
	m := obj.Map(name)
	if m == nil {
		return nil, fmt.Errorf("the object has no map %q (it has: %s)", name, strings.Join(mapNames(obj), ", "))
	}
	if !events.IsEventMap(m) {
		return nil, fmt.Errorf("events: map %q is a %s, not a ring buffer or perf event array", name, m.Type())
	}
	s := &EventSource{Map: name, m: m}
	if m.Type() == ebpf.RingBuf {
		if lm := obj.Map(name + events.LostMapSuffix); lm != nil {
			if err := events.CheckLostMap(lm); err != nil {
				return nil, fmt.Errorf("map %q: %w", name+events.LostMapSuffix, err)
			}
			s.lost = lm
		}
	}
	return s, nil
}

// addEventMetrics sets up the events entries of a config, one source per
// map however many entries name it.
func (b *configBuilder) addEventMetrics(cfg *Config) []error {
	obj := cfg.Object
	var errs []error
	add := func(kind metricKind, name, help string, line int, mapName string, labels []config.Label, value *config.EventValue, values []config.Value, h *config.Histogram, maxAge config.Duration) {
		where := fmt.Sprintf("%s:%d", path(obj.Config), line)
		src, err := cfg.EventSource(mapName)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: metric %q: %w", where, name, err))
			return
		}
		em, err := b.newEventMetric(obj.Config.Name, mapName, kind, b.fqName(name), help, labels, value, values, h, maxAge, events.MaxRecord(src.m))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: metric %q: %w", where, name, err))
			return
		}
		src.metrics = append(src.metrics, em)
		cfg.events = append(cfg.events, em)
	}
	ms := obj.Config.Metrics
	for _, m := range ms.Counters {
		if m.Events != "" {
			add(kindCounter, m.Name, m.Help, m.Line, m.Events, m.Labels, m.Value, m.Values, nil, m.MaxAge)
		}
	}
	for i := range ms.Histograms {
		if h := &ms.Histograms[i]; h.Events != "" {
			add(kindHistogram, h.Name, h.Help, h.Line, h.Events, h.Labels, h.Value, nil, h, h.MaxAge)
		}
	}
	return errs
}

// scrapeEvents appends the frames of the config's events metrics.
func (cfg *Config) scrapeEvents(frames []*frame) []*frame {
	now := time.Now()
	for _, em := range cfg.events {
		frames = em.collect(frames, now)
	}
	return frames
}
