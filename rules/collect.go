package rules

import (
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		ch <- r.desc
		ch <- r.avgDesc
	}
}

// Collect reports one counter per rule and label set, and a gauge
// <name>_average for the label sets of average profiles. A series that
// cannot be made is skipped (it would only be so by a bug), never a panic.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		for _, se := range sortedSeries(r.st.counters) {
			var v float64
			for div, raw := range se.sums {
				v += float64(raw) / float64(div)
			}
			if r.Recording && r.cpuSeries(se) {
				v *= 1e9
			}
			if m, err := prometheus.NewConstMetric(r.desc, prometheus.CounterValue, v, se.values...); err == nil {
				ch <- m
			}
		}
		for _, se := range sortedSeries(r.st.averages) {
			if m, err := prometheus.NewConstMetric(r.avgDesc, prometheus.GaugeValue, se.last, se.values...); err == nil {
				ch <- m
			}
		}
	}
}

// cpuSeries: a recording rule selects one profile type, so its series are
// time (CPU, or off-CPU: the profiler's app.off_cpu) when the type is.
func (r *rule) cpuSeries(*series) bool {
	for _, m := range r.selector {
		if m.Key == LabelProfileType {
			return strings.HasPrefix(m.Value, "process_cpu:") || strings.HasPrefix(m.Value, "cpu:") ||
				strings.HasPrefix(m.Value, "off_cpu:")
		}
	}
	return false
}

func sortedSeries(m map[string]*series) []*series {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*series, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

var (
	seriesDesc = prometheus.NewDesc("probe_exporter_rule_series",
		"Label sets a profile rule holds.", []string{"rule"}, nil)
	droppedDesc = prometheus.NewDesc("probe_exporter_rule_series_dropped_total",
		"Profiles a rule did not count because they would have made a label set over --rules.max-series.", []string{"rule"}, nil)
	saturatedDesc = prometheus.NewDesc("probe_exporter_rule_saturated_total",
		"Additions that reached the largest value a rule's counter holds (2^64-1 raw units) and stopped there.", []string{"rule"}, nil)
)

// Stats is a collector of the rules' own health: series held, profiles
// dropped by the series bound, saturated additions.
func (s *Set) Stats() prometheus.Collector { return stats{s} }

type stats struct{ s *Set }

func (st stats) Describe(ch chan<- *prometheus.Desc) {
	ch <- seriesDesc
	ch <- droppedDesc
	ch <- saturatedDesc
}

func (st stats) Collect(ch chan<- prometheus.Metric) {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	for _, r := range st.s.rules {
		for _, m := range []struct {
			d *prometheus.Desc
			t prometheus.ValueType
			v float64
		}{
			{seriesDesc, prometheus.GaugeValue, float64(len(r.st.counters) + len(r.st.averages))},
			{droppedDesc, prometheus.CounterValue, float64(r.st.dropped)},
			{saturatedDesc, prometheus.CounterValue, float64(r.st.saturated)},
		} {
			if cm, err := prometheus.NewConstMetric(m.d, m.t, m.v, r.Name); err == nil {
				ch <- cm
			}
		}
	}
}
