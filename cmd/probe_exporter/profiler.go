package main

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/profile"
)

// profileConfig is the --profile.config file: the processes to profile.
//
//	targets:
//	  - app: simple.golang.app
//	    tags: {env: prod}
//	    comm: app            # and/or exe, cmdline, cgroup, pid
type profileConfig struct {
	Targets []struct {
		App  string            `yaml:"app"`
		Tags map[string]string `yaml:"tags"`
		// comm, exe, cmdline, cgroup, pid.
		Selector config.Selector `yaml:",inline"`
	} `yaml:"targets"`
}

// startProfiler runs the built-in CPU profiler on the targets of
// --profile.config, feeding the export rules.
func (d *daemon) startProfiler(ctx context.Context) error {
	if d.f.profileConfig == "" {
		return nil
	}
	data, err := os.ReadFile(d.f.profileConfig)
	if err != nil {
		return fmt.Errorf("profile config: %w", err)
	}
	var pc profileConfig
	dec := yaml.NewDecoder(bytesReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&pc); err != nil {
		return fmt.Errorf("profile config %s: %w", d.f.profileConfig, err)
	}
	var tgts []profile.Target
	for i, t := range pc.Targets {
		if t.App == "" {
			return fmt.Errorf("profile config %s: target %d has no app", d.f.profileConfig, i+1)
		}
		tgts = append(tgts, profile.Target{App: t.App, Tags: t.Tags, Selector: t.Selector})
	}
	if d.watcher == nil {
		return fmt.Errorf("profiler: process targets are unavailable")
	}
	// The same kernel symbol table as the ksym decoders, read once.
	p, err := profile.New(profile.Options{
		Frequency: d.f.profileFrequency,
		Interval:  d.f.profileInterval,
		Targets:   tgts,
		Sink:      d.profileSink,
		Watcher:   d.watcher,
		Kernel:    d.env.Kallsyms.Sym,
		Logger:    d.logger.With("component", "profiler"),
	})
	if err != nil {
		return err
	}
	d.reg.MustRegister(p)
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = p.Run(pctx); close(done) }()
	d.extras.closers = append(d.extras.closers, func() error { cancel(); <-done; return nil })
	d.logger.Info("profiling", "targets", len(tgts), "frequency_hz", d.f.profileFrequency)
	return nil
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
