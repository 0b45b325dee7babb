package main

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/probe-exporter/probe_exporter/ingest"
	"github.com/probe-exporter/probe_exporter/rules"
	"github.com/probe-exporter/probe_exporter/web"
)

// startProfiles sets up export rules, /exported-metrics and /ingest.
func (d *daemon) startProfiles() error {
	h := rules.NewLive(nil)
	load := func() error {
		if d.f.rulesFile == "" {
			return nil
		}
		set, err := rules.LoadFile(d.f.rulesFile)
		if err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		set.SetMaxSeries(d.f.rulesMaxSeries)
		h.Replace(set)
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
	d.reg.MustRegister(h, h.Stats(), ingestHandler)
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
		for _, r := range h.Rules() {
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
