package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/rules"
)

// singleRule collects only the metrics of one rule.
type singleRule struct {
	s    *rules.Set
	name string
}

func (r *singleRule) Describe(ch chan<- *prometheus.Desc) {}

func (r *singleRule) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 100)
	go func() { r.s.Collect(all); close(all) }()
	for m := range all {
		if desc := m.Desc().String(); containsName(desc, r.name) {
			ch <- m
		}
	}
}

func containsName(desc, name string) bool {
	want := `fqName: "` + name + `"`
	for i := 0; i+len(want) <= len(desc); i++ {
		if desc[i:i+len(want)] == want {
			return true
		}
	}
	return false
}
