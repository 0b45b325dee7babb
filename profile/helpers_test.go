package profile

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/probe-exporter/probe_exporter/rules"
)

// oneSeries collects the one series of a rule with given label values.
type oneSeries struct {
	s      *rules.Set
	name   string
	labels map[string]string
}

func (o *oneSeries) Describe(chan<- *prometheus.Desc) {}

func (o *oneSeries) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 100)
	go func() { o.s.Collect(all); close(all) }()
	for m := range all {
		if !strings.Contains(m.Desc().String(), `fqName: "`+o.name+`"`) {
			continue
		}
		var d dto.Metric
		m.Write(&d)
		ok := true
		for _, lp := range d.Label {
			if want, has := o.labels[lp.GetName()]; has && want != lp.GetValue() {
				ok = false
			}
		}
		if ok {
			ch <- m
		}
	}
}

// follows reports whether pid is among the profiled processes.
func (p *Profiler) follows(pid int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr, ok := p.procs[pid]
	return ok && !pr.exited
}
