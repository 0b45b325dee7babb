package services

import (
	"bytes"
	"fmt"
	"github.com/probe-exporter/probe_exporter/config"
	"log/slog"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/probe-exporter/probe_exporter/internal/safeopen"
	"github.com/probe-exporter/probe_exporter/profile"
	"github.com/probe-exporter/probe_exporter/rules"
	"github.com/probe-exporter/probe_exporter/targets"
)

// targetsFile is the --profile.config file: the processes to profile.
//
//	targets:
//	  - app: simple.golang.app
//	    tags: {env: prod}
//	    comm: app            # and/or exe, cmdline, cgroup, pid
//	    off_cpu: true        # also app.off_cpu: seconds blocked, by stack
type targetsFile struct {
	Targets []struct {
		App    string            `yaml:"app"`
		Tags   map[string]string `yaml:"tags"`
		OffCPU bool              `yaml:"off_cpu"`
		// comm, exe, cmdline, cgroup, pid.
		Selector config.Selector `yaml:",inline"`
	} `yaml:"targets"`
}

// ProfilerOptions configure the built-in CPU profiler.
type ProfilerOptions struct {
	// TargetsFile names the processes to profile (--profile.config).
	TargetsFile string
	Frequency   int
	Interval    time.Duration
	// OffCPUMin is the shortest blocked time counted as off-CPU time
	// (--profile.off-cpu-min).
	OffCPUMin time.Duration
	// Rules take every drained profile.
	Rules   rules.Sink
	Watcher *targets.Watcher
	// Kernel resolves kernel addresses (the ksym decoders' table).
	Kernel func(addr uint64) (string, bool)
	// Files counts the files of profiled processes refused or not read
	// in time.
	Files  *safeopen.Stats
	Logger *slog.Logger
}

// NewProfiler reads the targets file and loads the profiler; it samples
// once Run runs.
func NewProfiler(opts ProfilerOptions) (*profile.Profiler, error) {
	data, err := os.ReadFile(opts.TargetsFile)
	if err != nil {
		return nil, fmt.Errorf("profile config: %w", err)
	}
	var tf targetsFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil {
		return nil, fmt.Errorf("profile config %s: %w", opts.TargetsFile, err)
	}
	var tgts []profile.Target
	for i, t := range tf.Targets {
		if t.App == "" {
			return nil, fmt.Errorf("profile config %s: target %d has no app", opts.TargetsFile, i+1)
		}
		tgts = append(tgts, profile.Target{App: t.App, Tags: t.Tags, Selector: t.Selector, OffCPU: t.OffCPU})
	}
	if opts.Watcher == nil {
		return nil, fmt.Errorf("profiler: process targets are unavailable")
	}
	p, err := profile.New(profile.Options{
		Frequency: opts.Frequency,
		Interval:  opts.Interval,
		OffCPUMin: opts.OffCPUMin,
		Targets:   tgts,
		Sink:      opts.Rules,
		Watcher:   opts.Watcher,
		Kernel:    opts.Kernel,
		Files:     opts.Files,
		Logger:    opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	opts.Logger.Info("profiling", "targets", len(tgts), "frequency_hz", opts.Frequency)
	return p, nil
}
