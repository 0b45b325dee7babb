package services

// Configs runs the eBPF configs: it reads them from a directory
// (ebpf_exporter's layout) or the embedded defaults, loads and attaches
// each one with loader, serves their metrics through collector and lets
// reconcile decide what runs across reloads. It shows them on the landing
// page, on /maps with --debug and for --config.check.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/btf"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/probe-exporter/probe_exporter/cmd/probe_exporter/internal/reconcile"
	"github.com/probe-exporter/probe_exporter/collector"
	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/decoder"
	"github.com/probe-exporter/probe_exporter/defaults"
	"github.com/probe-exporter/probe_exporter/internal/safeopen"
	"github.com/probe-exporter/probe_exporter/loader"
	"github.com/probe-exporter/probe_exporter/procexit"
	"github.com/probe-exporter/probe_exporter/targets"
	"github.com/probe-exporter/probe_exporter/tracing"
	"github.com/probe-exporter/probe_exporter/userspace"
	"github.com/probe-exporter/probe_exporter/web"
)

// ConfigsOptions configure the configs.
type ConfigsOptions struct {
	// Dir holds NAME.yaml next to NAME.bpf.o; "" runs the embedded
	// defaults.
	Dir string
	// Names are the configs to load from Dir; none loads every *.yaml.
	Names []string
	// MetricPrefix prefixes metrics read from maps.
	MetricPrefix string
	Env          *decoder.Env
	Compiler     *loader.Compiler
	// KernelTypes is --btf.path's BTF; nil uses the running kernel's.
	KernelTypes *btf.Spec
	// Watcher follows processes for uprobe and USDT targets; nil attaches
	// userspace probes to every process running the file.
	Watcher *targets.Watcher
	// Files counts the files of selected processes refused or not read
	// in time; nil counts nothing.
	Files *safeopen.Stats
	// Tracing exports the spans of the start and of configs' tracing
	// sections; nil exports none.
	Tracing *tracing.Provider
	// EventsMaxSeries bounds the label sets of each events metric.
	EventsMaxSeries int
	// Debug serves /maps.
	Debug  bool
	Logger *slog.Logger
}

// Configs is the configs part of the exporter, a component.Component.
type Configs struct {
	opts      ConfigsOptions
	ctx       context.Context
	coll      *collector.Collector
	userspace *userspace.Attacher // nil without a watcher
	exits     *procexit.Watcher   // loaded once a config's keys carry a pid
	engine    *reconcile.Engine[*collector.Config]

	traceCtx     context.Context // parent of the spans of loading configs
	kallsymsRead bool
}

// New prepares the configs; nothing is loaded until Load. ctx bounds what
// loaded configs run (cgroup and span readers).
func NewConfigs(ctx context.Context, opts ConfigsOptions) *Configs {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Configs{opts: opts, ctx: ctx, traceCtx: ctx}
	// Exits of processes whose pids keys carry (the collector's expiry).
	c.exits = procexit.New(opts.Logger.With("component", "procexit"), 0)
	c.coll = collector.New(collector.Options{
		MetricPrefix: opts.MetricPrefix,
		Env:          opts.Env,
		Logger:       opts.Logger,
		Exits:        c.exits,

		EventsMaxSeries: opts.EventsMaxSeries,
	})
	if opts.Watcher != nil {
		c.userspace = userspace.New(opts.Watcher, c.coll, opts.Files, opts.Logger.With("component", "userspace"))
	}
	c.engine = reconcile.New(reconcile.Options[*collector.Config]{
		Sources:     c.sources,
		Fingerprint: fingerprint,
		Load:        c.load,
		Changed:     c.unitsChanged,
		Logger:      opts.Logger,
	})
	return c
}

// Collector serves the configs' maps and state (its Handler is /metrics).
func (c *Configs) Collector() *collector.Collector { return c.coll }

// Load loads every config the first time, traced as ebpf_exporter traces
// its start: attach > attach_configs > attach_config per config.
func (c *Configs) Load() error {
	attachCtx, attach := c.traceStart(c.ctx, "attach")
	configsCtx, attachConfigs := c.traceStart(attachCtx, "attach_configs")
	c.traceCtx = configsCtx
	err := c.Reload()
	attachConfigs.End()
	attach.End()
	c.traceCtx = c.ctx
	return err
}

// Reload re-reads the configs: the engine keeps unchanged ones running,
// swaps changed ones, keeps the old version of one that fails and retries
// failed ones.
func (c *Configs) Reload() error {
	err := c.engine.Reload()
	for _, u := range c.engine.Units() {
		if u.Err != nil {
			c.opts.Logger.Error("config failed", "config", u.Name, "stale_version_serving", u.Stale, "err", u.Err)
		}
	}
	return err
}

// Run serves until ctx ends; Close detaches the configs.
func (c *Configs) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Close detaches every config.
func (c *Configs) Close() error {
	c.engine.Close()
	c.exits.Close()
	return nil
}

// sources reads the configs the options name.
func (c *Configs) sources() ([]config.Config, []error) {
	if c.opts.Dir == "" {
		cfgs, err := defaults.Configs()
		if err != nil {
			return nil, []error{fmt.Errorf("embedded defaults: %w", err)}
		}
		return cfgs, nil
	}
	names := c.opts.Names
	if len(names) == 0 {
		matches, err := filepath.Glob(filepath.Join(c.opts.Dir, "*.yaml"))
		if err != nil || len(matches) == 0 {
			return nil, []error{fmt.Errorf("no configs: %s has no *.yaml and --config.names is empty", c.opts.Dir)}
		}
		for _, m := range matches {
			names = append(names, strings.TrimSuffix(filepath.Base(m), ".yaml"))
		}
	}
	return config.Load(c.opts.Dir, names)
}

// fingerprint identifies a config's sources: YAML, object and code.
func fingerprint(c config.Config) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", c.Name, c.Code)
	if c.Path != "" {
		if data, err := os.ReadFile(c.Path); err == nil {
			h.Write(data)
		}
	}
	if c.Object != nil {
		h.Write(c.Object)
	} else if c.Code == "" && c.BPFPath != "" {
		if data, err := os.ReadFile(c.BPFPath); err == nil {
			h.Write(data)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// unitsChanged gives the collector the configs the engine runs; a config
// that does not parse is reported (config_up 0) from its unit.
func (c *Configs) unitsChanged(units []reconcile.Unit[*collector.Config]) {
	list := make([]*collector.Config, 0, len(units))
	for _, u := range units {
		if u.Running != nil {
			list = append(list, u.Running)
			continue
		}
		list = append(list, c.coll.FailedConfig(u.Config, u.Err))
	}
	c.coll.SetConfigs(list)
}

func (c *Configs) load(cfg config.Config) (*collector.Config, []error) {
	for _, w := range cfg.Warnings() {
		c.opts.Logger.Warn(w, "config", cfg.Name)
	}
	ctx, span := c.traceStart(c.traceCtx, "attach_config", attribute.String("config", cfg.Name))
	defer span.End()
	c.passKaddrs(ctx, cfg)
	opts := loader.Options{
		Logger:      c.opts.Logger,
		Kaddr:       c.opts.Env.KernelAddr,
		Kallsyms:    c.opts.Env.Kallsyms,
		Compiler:    c.opts.Compiler,
		KernelTypes: c.opts.KernelTypes,
	}
	if c.userspace != nil {
		opts.Userspace = c.userspace
	}
	obj := loader.Load(c.ctx, cfg, opts)
	c.startCgroupIDMap(obj)
	cc := c.coll.NewConfig(obj)
	c.startEvents(cc)
	if errs := obj.Errors(); len(errs) > 0 {
		span.SetStatus(codes.Error, errors.Join(errs...).Error())
	}
	if cc.Up() {
		attached := 0
		for _, p := range obj.Programs {
			if p.Attached() {
				attached++
			}
		}
		c.opts.Logger.Info("config loaded", "config", cfg.Name, "programs_attached", attached)
	}
	return cc, configErrors(cc)
}

func configErrors(c *collector.Config) []error {
	errs := c.Object.Errors()
	if c.Err != nil {
		errs = append(errs, c.Err)
	}
	return errs
}

// Check writes every config's state for --config.check and reports
// whether all of them serve. With missedAttachOK a config whose object
// loaded with all its programs and metrics passes even where programs did
// not attach, as ebpf_exporter's check passes (it fails only on configs
// that do not load).
func (c *Configs) Check(w io.Writer, missedAttachOK bool) bool {
	ok := true
	for _, u := range c.engine.Units() {
		if u.Err != nil && missedAttachOK && onlyMissedAttachments(u.Running) {
			fmt.Fprintf(w, "ok      %s (programs not attached)\n", u.Name)
			for _, line := range strings.Split(u.Err.Error(), "\n") {
				fmt.Fprintf(w, "        %s\n", line)
			}
			continue
		}
		if u.Err == nil && u.Serving() {
			fmt.Fprintf(w, "ok      %s\n", u.Name)
			// Attach points the kernel lacks, of a config that serves
			// with the others.
			for _, err := range u.Running.Object.Errors() {
				fmt.Fprintf(w, "        absent in this kernel: %s\n", err)
			}
			continue
		}
		ok = false
		fmt.Fprintf(w, "FAILED  %s\n", u.Name)
		for _, line := range strings.Split(u.Err.Error(), "\n") {
			fmt.Fprintf(w, "        %s\n", line)
		}
	}
	return ok
}

// onlyMissedAttachments reports whether a config's object loaded with
// every program and its metrics, and failed only to attach programs (all
// of them, when the loader says no program could be attached).
func onlyMissedAttachments(cc *collector.Config) bool {
	if cc == nil || cc.Err != nil || cc.Object.Collection == nil {
		return false
	}
	for _, p := range cc.Object.Programs {
		if p.Err != nil && p.Program == nil && !p.Skipped {
			return false
		}
	}
	return true
}

// Status shows every config and its programs on the landing page.
func (c *Configs) Status(st *web.Status) {
	for _, u := range c.engine.Units() {
		cs := web.ConfigStatus{Name: u.Name, Source: u.Config.Path, Up: u.Serving() && u.Err == nil}
		if cs.Source == "" {
			cs.Source = "embedded"
		}
		if u.Err != nil {
			cs.Error = u.Err.Error()
			if u.Stale {
				cs.Error += "\n(the previous version keeps serving)"
			}
		}
		if u.Running == nil {
			st.Configs = append(st.Configs, cs)
			continue
		}
		sum := u.Running.Summary()
		cs.Scraped, cs.Series, cs.ScrapeDuration, cs.ScrapeBytes, cs.DecoderErrors = sum.Scraped, sum.Series, sum.ScrapeDuration, sum.ScrapeBytes, sum.DecoderErrors
		for _, h := range sum.Histograms {
			cs.Histograms = append(cs.Histograms, web.HistogramStatus{Name: h.Name, Series: h.Series, Bounds: h.Bounds, Counts: h.Counts, Exp2: h.Exp2})
		}
		for _, p := range u.Running.Object.Programs {
			if p.Skipped {
				continue
			}
			ps := web.ProgramStatus{Name: p.Name, Section: p.Section, Attach: p.Attach.String(), Attached: p.Attached()}
			if p.Err != nil {
				ps.Error = p.Err.Error()
			}
			cs.Programs = append(cs.Programs, ps)
		}
		st.Configs = append(st.Configs, cs)
	}
}

// Ready says the exporter is ready when at least one config is up (or
// none is configured): a node where every program failed is not.
func (c *Configs) Ready() error {
	configs := c.coll.Configs()
	var failed []string
	for _, cc := range configs {
		if cc.Up() {
			return nil
		}
		failed = append(failed, cc.Name())
	}
	if len(configs) == 0 {
		return nil
	}
	return fmt.Errorf("no config is up (%s failed)", strings.Join(failed, ", "))
}

// Routes serves /maps (raw map contents) with --debug.
func (c *Configs) Routes() []web.Route {
	if !c.opts.Debug {
		return nil
	}
	return []web.Route{{Path: "/maps", Handler: http.HandlerFunc(c.serveMaps)}}
}

func (c *Configs) serveMaps(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := collector.DumpMaps(w, c.coll.Configs()); err != nil {
		c.opts.Logger.Debug("writing /maps", "err", err)
	}
}

// Describe sends no descriptors: the metrics follow the configs.
func (c *Configs) Describe(chan<- *prometheus.Desc) {}

// Collect reports the configs' and programs' state and the userspace
// attacher's metrics; map metrics are served by the collector's Gather.
func (c *Configs) Collect(ch chan<- prometheus.Metric) {
	c.coll.Collect(ch)
	if c.userspace != nil {
		c.userspace.Collect(ch)
	}
}

// UsesXDP reports whether a loaded config has xdp/IFNAME programs.
func (c *Configs) UsesXDP() bool {
	for _, cc := range c.coll.Configs() {
		for _, p := range cc.Object.Programs {
			if p.Attach.Kind == loader.AttachXDP {
				return true
			}
		}
	}
	return false
}

// UsesUprobes reports whether a loaded config has uprobes, uretprobes or
// USDT probes, or selects processes.
func (c *Configs) UsesUprobes() bool {
	for _, cc := range c.coll.Configs() {
		if cc.Object.Config.Attachments != nil {
			return true
		}
		for _, p := range cc.Object.Programs {
			switch p.Attach.Kind {
			case config.AttachUprobe, config.AttachUretprobe, config.AttachUSDT:
				return true
			}
		}
	}
	return false
}
