package main

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/probe-exporter/probe_exporter/ingest"
	"github.com/probe-exporter/probe_exporter/rules"
	"github.com/probe-exporter/probe_exporter/web"
)

// ruleHolder serves the current rule set; a reload swaps it, and the new
// set inherits the counters of every rule whose definition did not change.
type ruleHolder struct {
	mu  sync.RWMutex
	set *rules.Set
}

func (h *ruleHolder) get() *rules.Set {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.set
}

func (h *ruleHolder) Describe(chan<- *prometheus.Desc) {}

func (h *ruleHolder) Collect(ch chan<- prometheus.Metric) { h.get().Collect(ch) }

// Observe and ObserveProfile hold the read lock while counting, so that a
// reload's swap never loses a profile counted into the set it replaces.
func (h *ruleHolder) Observe(app string, tags map[string]string, units string, rate uint32, s []rules.Sample) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.set.Observe(app, tags, units, rate, s)
}

func (h *ruleHolder) ObserveProfile(p rules.Profile) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.set.ObserveProfile(p)
}

// ruleStats serves the current set's health metrics on /metrics.
type ruleStats struct{ h *ruleHolder }

func (s ruleStats) Describe(chan<- *prometheus.Desc) {}

func (s ruleStats) Collect(ch chan<- prometheus.Metric) { s.h.get().Stats().Collect(ch) }

// startProfiles sets up export rules, /exported-metrics and /ingest.
func (d *daemon) startProfiles() error {
	h := &ruleHolder{set: &rules.Set{}}
	load := func() error {
		if d.f.rulesFile == "" {
			return nil
		}
		set, err := rules.LoadFile(d.f.rulesFile)
		if err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		set.SetMaxSeries(d.f.rulesMaxSeries)
		h.mu.Lock()
		set.Inherit(h.set)
		h.set = set
		h.mu.Unlock()
		d.logger.Info("profile export rules loaded", "file", d.f.rulesFile, "rules", len(set.Rules()))
		return nil
	}
	if err := load(); err != nil {
		return err
	}
	ingestHandler := ingest.NewHandler(h, ingest.Options{
		MaxBodyBytes:         d.f.ingestMaxBytes,
		MaxDecompressedBytes: d.f.ingestMaxDecompressed,
		MaxInflightBytes:     d.f.ingestMaxInflight,
		BodyTimeout:          d.f.ingestBodyTimeout,
		Logger:               d.logger.With("component", "ingest"),
	})
	d.reg.MustRegister(h, ruleStats{h}, ingestHandler)
	exported := prometheus.NewRegistry()
	exported.MustRegister(h)
	d.profileSink = h
	x := &d.extras
	x.reloaders = append(x.reloaders, load)
	x.routeFns = append(x.routeFns, func(o *web.Options) {
		o.Extra["/exported-metrics"] = promhttp.HandlerFor(exported, promhttp.HandlerOpts{})
		o.Extra["/ingest"] = ingestHandler
		o.Links = append(o.Links, web.Link{Path: "/exported-metrics", Text: "Exported profile metrics"})
	})
	x.statusFns = append(x.statusFns, func(st *web.Status) {
		for _, r := range h.get().Rules() {
			if r.Recording {
				st.Rules = append(st.Rules, fmt.Sprintf("%s: recording rule, matchers %q function %q group_by %v", r.Name, r.Matchers, r.FunctionName, r.GroupBy))
				continue
			}
			st.Rules = append(st.Rules, fmt.Sprintf("%s: expr %q node %q group_by %v", r.Name, r.Expr, r.Node, append(r.GroupBy, r.Labels...)))
		}
	})
	return nil
}

var _ http.Handler = (*ingest.Handler)(nil)
