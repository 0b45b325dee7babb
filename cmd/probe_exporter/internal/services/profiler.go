package services

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/safeopen"
	"github.com/probe-exporter/probe_exporter/internal/yamlfields"
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
	Targets []targetYAML `yaml:"targets"`
}

type targetYAML struct {
	App    string            `yaml:"app"`
	Tags   map[string]string `yaml:"tags"`
	OffCPU bool              `yaml:"off_cpu"`
	// comm, exe, cmdline, cgroup, pid.
	Selector config.Selector `yaml:",inline"`
}

var (
	// The names a push to /ingest may carry (Pyroscope's).
	appNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-/]+$`)
	tagKeyRE  = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
	yamlAtRE  = regexp.MustCompile(`^(?:yaml: )?(?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)
)

// parseTargets reads a targets file; each error names the file, the line
// and the cause.
func parseTargets(path string, data []byte) ([]profile.Target, error) {
	fail := func(line int, format string, args ...any) error {
		if line > 0 {
			return fmt.Errorf("profile config %s:%d: %s", path, line, fmt.Sprintf(format, args...))
		}
		return fmt.Errorf("profile config %s: %s", path, fmt.Sprintf(format, args...))
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlFail(fail, err)
	}
	if len(root.Content) == 0 {
		return nil, fail(0, "empty: want targets: [{app: NAME, comm: ...}]")
	}
	var tf targetsFile
	var unknown *yamlfields.Error
	if err := yamlfields.Check(&root, &tf); errors.As(err, &unknown) {
		return nil, fail(unknown.Line, "%v", unknown)
	}
	if err := root.Decode(&tf); err != nil {
		return nil, yamlFail(fail, err)
	}
	var items []*yaml.Node
	if doc := root.Content[0]; doc.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if doc.Content[i].Value == "targets" {
				items = doc.Content[i+1].Content
			}
		}
	}
	if len(tf.Targets) == 0 {
		return nil, fail(0, "no targets: want targets: [{app: NAME, comm: ...}]")
	}
	var tgts []profile.Target
	for i, t := range tf.Targets {
		line := 0
		if i < len(items) {
			line = items[i].Line
		}
		switch {
		case t.App == "":
			return nil, fail(line, "target %d has no app", i+1)
		case !appNameRE.MatchString(t.App):
			return nil, fail(line, "app %q: want letters, digits and _ . - / (the profile is APP.cpu)", t.App)
		}
		for k := range t.Tags {
			switch {
			case !tagKeyRE.MatchString(k) || strings.HasPrefix(k, "__"):
				return nil, fail(line, "app %q: tag %q: want letters, digits and _ . -, not starting with __", t.App, k)
			case k == "pid" || k == "comm":
				return nil, fail(line, "app %q: tag %q is set by the profiler to each process's own", t.App, k)
			}
		}
		if err := t.Selector.Validate(); err != nil {
			return nil, fail(line, "app %q: %v", t.App, err)
		}
		tgts = append(tgts, profile.Target{App: t.App, Tags: t.Tags, Selector: t.Selector, OffCPU: t.OffCPU})
	}
	return tgts, nil
}

// yamlFail words a YAML error as FILE:LINE: cause (the first problem).
func yamlFail(fail func(int, string, ...any) error, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if m := yamlAtRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return fail(line, "%s", m[2])
	}
	return fail(0, "%s", strings.TrimPrefix(msg, "yaml: "))
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
	tgts, err := parseTargets(opts.TargetsFile, data)
	if err != nil {
		return nil, err
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
