package services

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/probe-exporter/probe_exporter/ingest"
	"github.com/probe-exporter/probe_exporter/rules"
	"github.com/probe-exporter/probe_exporter/web"
)

// RulesOptions configure the profile export rules.
type RulesOptions struct {
	// File is the Pyroscope metrics-export-rules file; "" has no rules
	// (pushes to /ingest are taken and count nowhere).
	File      string
	MaxSeries int
	Ingest    ingest.Options
	Logger    *slog.Logger
}

// Rules turns profiles (from the profiler and /ingest) into counters
// with Pyroscope's export rules, served on /metrics and, alone, on
// /exported-metrics.
type Rules struct {
	opts     RulesOptions
	live     *rules.Live
	ingest   *ingest.Handler
	exported *prometheus.Registry
}

// NewRules reads the rules file; an error in it is fatal at start.
func NewRules(opts RulesOptions) (*Rules, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Rules{opts: opts, live: rules.NewLive(nil), exported: prometheus.NewRegistry()}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	r.ingest = ingest.NewHandler(r.live, opts.Ingest)
	r.exported.MustRegister(r.live)
	return r, nil
}

// Live is the rule set serving now; the profiler counts into it.
func (r *Rules) Live() *rules.Live { return r.live }

// Run serves until ctx ends.
func (r *Rules) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Reload reads the rules file again; the new set keeps the counters of
// unchanged rules. On error the current set keeps serving.
func (r *Rules) Reload() error {
	if r.opts.File == "" {
		return nil
	}
	set, err := rules.LoadFile(r.opts.File)
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	set.SetMaxSeries(r.opts.MaxSeries)
	r.live.Replace(set)
	r.opts.Logger.Info("profile export rules loaded", "file", r.opts.File, "rules", len(set.Rules()))
	return nil
}

// Routes serves /ingest and /exported-metrics.
func (r *Rules) Routes() []web.Route {
	return []web.Route{
		{Path: "/exported-metrics", Handler: promhttp.HandlerFor(r.exported, promhttp.HandlerOpts{}), Link: "Exported profile metrics"},
		{Path: "/ingest", Handler: r.ingest},
	}
}

// Status lists the rules on the landing page.
func (r *Rules) Status(st *web.Status) {
	series, dropped := r.health()
	for _, ru := range r.live.Rules() {
		rs := web.RuleStatus{Series: series[ru.Name], Dropped: dropped[ru.Name]}
		if ru.Recording {
			rs.Text = fmt.Sprintf("%s: recording rule, matchers %q function %q group_by %v", ru.Name, ru.Matchers, ru.FunctionName, ru.GroupBy)
		} else {
			rs.Text = fmt.Sprintf("%s: expr %q node %q group_by %v", ru.Name, ru.Expr, ru.Node, append(ru.GroupBy, ru.Labels...))
		}
		st.Rules = append(st.Rules, rs)
	}
}

// health reads the rules' series and dropped counts from their health
// metrics (probe_exporter_rule_series, _rule_series_dropped_total), by rule.
func (r *Rules) health() (series, dropped map[string]float64) {
	series, dropped = map[string]float64{}, map[string]float64{}
	ch := make(chan prometheus.Metric)
	go func() {
		r.live.Stats().Collect(ch)
		close(ch)
	}()
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil {
			continue
		}
		rule := ""
		for _, l := range d.GetLabel() {
			if l.GetName() == "rule" {
				rule = l.GetValue()
			}
		}
		switch name := m.Desc().String(); {
		case strings.Contains(name, `"probe_exporter_rule_series"`):
			series[rule] = d.GetGauge().GetValue()
		case strings.Contains(name, `"probe_exporter_rule_series_dropped_total"`):
			dropped[rule] = d.GetCounter().GetValue()
		}
	}
	return series, dropped
}

// Describe sends no descriptors: the rules change on reload.
func (r *Rules) Describe(chan<- *prometheus.Desc) {}

// Collect reports the rules' counters, their health and /ingest's.
func (r *Rules) Collect(ch chan<- prometheus.Metric) {
	r.live.Collect(ch)
	r.live.Stats().Collect(ch)
	r.ingest.Collect(ch)
}
