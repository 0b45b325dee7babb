package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/probe-exporter/probe_exporter/collector"
	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/decoder"
	"github.com/probe-exporter/probe_exporter/defaults"
	"github.com/probe-exporter/probe_exporter/internal/caps"
	"github.com/probe-exporter/probe_exporter/internal/engine"
	"github.com/probe-exporter/probe_exporter/loader"
	"github.com/probe-exporter/probe_exporter/scripts"
	"github.com/probe-exporter/probe_exporter/targets"
	"github.com/probe-exporter/probe_exporter/tracing"
	"github.com/probe-exporter/probe_exporter/web"
)

// daemon holds everything the exporter runs.
type daemon struct {
	f      *flags
	logger *slog.Logger
	ctx    context.Context

	reg      *prometheus.Registry
	coll     *collector.Collector
	env      *decoder.Env
	compiler *loader.Compiler
	btf      *btf.Spec // --btf.path, nil for the running kernel's

	tracing      *tracing.Provider // nil without OTLP configured
	traceCtx     context.Context   // parent of the spans of loading configs
	kallsymsRead bool

	engine     *engine.Engine[*collector.Config]
	mu         sync.Mutex // guards lastReload and capPlan
	lastReload web.ReloadStatus
	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge

	extras      extras
	profileSink *ruleHolder
	watcher     *targets.Watcher
	scripts     *scripts.Supervisor
	capPlan     caps.Plan
}

func newDaemon(ctx context.Context, f *flags, logger *slog.Logger) (*daemon, error) {
	d := &daemon{
		f:        f,
		logger:   logger,
		ctx:      ctx,
		reg:      prometheus.NewRegistry(),
		env:      decoder.HostEnv(),
		compiler: loader.NewCompiler(f.cacheDir),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: collector.Namespace, Name: "config_last_reload_successful",
			Help: "Whether the last configuration reload succeeded.",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: collector.Namespace, Name: "config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload.",
		}),
	}
	d.compiler.Logger, d.compiler.ShowTranslated = logger, f.debug
	for _, w := range d.env.Warnings() {
		logger.Warn(w)
	}
	// With ebpf_exporter's prefix, decoders give its values and
	// build_info its name too.
	buildInfo := "probe_exporter"
	if f.metricPrefix == collector.EbpfExporterPrefix {
		d.env.EbpfExporter = true
		buildInfo = collector.EbpfExporterPrefix
	}
	d.engine = engine.New(engine.Options[*collector.Config]{
		Sources:     d.sources,
		Fingerprint: fingerprint,
		Load:        d.load,
		Changed:     d.unitsChanged,
		Logger:      logger,
	})
	d.coll = collector.New(collector.Options{
		MetricPrefix: f.metricPrefix,
		Env:          d.env,
		Logger:       logger,
	})
	d.reg.MustRegister(
		d.coll,
		d.reloadOK,
		d.reloadTime,
		versioncollector.NewCollector(buildInfo),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if f.btfPath != "" {
		spec, err := btf.LoadSpec(f.btfPath)
		if err != nil {
			return d, fmt.Errorf("--btf.path: %w", err)
		}
		d.btf = spec
		d.compiler.BTF = f.btfPath
	}
	if err := loader.PrepareHost(logger); err != nil {
		logger.Warn("host preparation", "err", err)
	}
	d.startUserspace(ctx)
	if err := d.startTracing(ctx); err != nil {
		return d, err
	}
	// Trace the start as ebpf_exporter does: attach > attach_configs >
	// attach_config per config.
	attachCtx, attach := d.traceStart(ctx, "attach")
	configsCtx, attachConfigs := d.traceStart(attachCtx, "attach_configs")
	d.traceCtx = configsCtx
	err := d.reload()
	attachConfigs.End()
	attach.End()
	d.traceCtx = ctx
	if err != nil {
		if f.strict {
			return d, err
		}
		logger.Warn("some configs failed; the others are serving", "err", err)
	}
	if err := d.startExtras(ctx); err != nil {
		return d, err
	}
	return d, nil
}

// sources reads the configs the flags name.
func (d *daemon) sources() ([]config.Config, []error) {
	if d.f.configDir == "" {
		cfgs, err := defaults.Configs()
		if err != nil {
			return nil, []error{fmt.Errorf("embedded defaults: %w", err)}
		}
		return cfgs, nil
	}
	names := d.f.names()
	if len(names) == 0 {
		matches, err := filepath.Glob(filepath.Join(d.f.configDir, "*.yaml"))
		if err != nil || len(matches) == 0 {
			return nil, []error{fmt.Errorf("no configs: %s has no *.yaml and --config.names is empty", d.f.configDir)}
		}
		for _, m := range matches {
			names = append(names, strings.TrimSuffix(filepath.Base(m), ".yaml"))
		}
	}
	return config.Load(d.f.configDir, names)
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

// reload re-reads the configs (the engine keeps unchanged ones running,
// swaps changed ones, keeps the old version of one that fails, retries
// failed ones) and records how it went.
func (d *daemon) reload() error {
	err := d.engine.Reload()
	for _, u := range d.engine.Units() {
		if u.Err != nil {
			d.logger.Error("config failed", "config", u.Name, "stale_version_serving", u.Stale, "err", u.Err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastReload = web.ReloadStatus{At: time.Now()}
	if err != nil {
		d.reloadOK.Set(0)
		d.lastReload.Error = err.Error()
	} else {
		d.reloadOK.Set(1)
		d.reloadTime.SetToCurrentTime()
	}
	return err
}

// unitsChanged gives the collector the configs the engine runs; a config
// that does not parse is reported (config_up 0) from its unit.
func (d *daemon) unitsChanged(units []engine.Unit[*collector.Config]) {
	list := make([]*collector.Config, 0, len(units))
	for _, u := range units {
		if u.Running != nil {
			list = append(list, u.Running)
			continue
		}
		list = append(list, d.coll.FailedConfig(u.Config, u.Err))
	}
	d.coll.SetConfigs(list)
}

func (d *daemon) load(c config.Config) (*collector.Config, []error) {
	for _, w := range c.Warnings() {
		d.logger.Warn(w, "config", c.Name)
	}
	ctx, span := d.traceStart(d.traceCtx, "attach_config", attribute.String("config", c.Name))
	defer span.End()
	d.passKaddrs(ctx, c)
	obj := loader.Load(d.ctx, c, loader.Options{
		Logger:      d.logger,
		Kaddr:       d.env.KernelAddr,
		Compiler:    d.compiler,
		Userspace:   d.extras.userspace,
		KernelTypes: d.btf,
	})
	d.startCgroupIDMap(obj)
	d.startSpans(obj)
	if errs := obj.Errors(); len(errs) > 0 {
		span.SetStatus(codes.Error, errors.Join(errs...).Error())
	}
	cc := d.coll.NewConfig(obj)
	if cc.Up() {
		attached := 0
		for _, p := range obj.Programs {
			if p.Attached() {
				attached++
			}
		}
		d.logger.Info("config loaded", "config", c.Name, "programs_attached", attached)
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

// checkResult reports every config's state for --config.check.
func (d *daemon) checkResult() int {
	code := 0
	for _, u := range d.engine.Units() {
		if u.Err == nil && u.Serving() {
			fmt.Printf("ok      %s\n", u.Name)
			// Attach points the kernel lacks, of a config that serves
			// with the others.
			for _, err := range u.Running.Object.Errors() {
				fmt.Printf("        absent in this kernel: %s\n", err)
			}
			continue
		}
		code = 1
		fmt.Printf("FAILED  %s\n", u.Name)
		for _, line := range strings.Split(u.Err.Error(), "\n") {
			fmt.Printf("        %s\n", line)
		}
	}
	return code
}

// run serves HTTP until ctx ends; SIGHUP reloads.
func (d *daemon) run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.logger.Info("reloading on SIGHUP")
				if err := d.reloadAll(); err != nil {
					d.logger.Error("reload failed", "err", err)
				}
			}
		}
	}()
	return web.Serve(ctx, d.handler(), d.f.web, d.logger)
}

// reloadAll reloads configs and every extra (scripts, rules).
func (d *daemon) reloadAll() error {
	err := d.reload()
	if xerr := d.extras.reload(); xerr != nil {
		err = errors.Join(err, xerr)
		d.mu.Lock()
		d.reloadOK.Set(0)
		d.lastReload.Error = err.Error()
		d.mu.Unlock()
	}
	return err
}

func (d *daemon) handler() http.Handler {
	opts := web.Options{
		Registry: d.reg,
		Gatherer: prometheus.Gatherers{d.reg, d.coll},
		Metrics: d.coll.Handler(d.reg, collector.HandlerOpts{
			ErrorLog:            slog.NewLogLogger(d.logger.Handler(), slog.LevelError),
			Registry:            d.reg,
			MaxRequestsInFlight: d.f.maxRequests,
		}),
		TelemetryPath: d.f.telemetryPath,
		Logger:        d.logger,
		Status:        d.status,
		Debug:         d.f.debug,
		Maps:          http.HandlerFunc(d.serveMaps),
		Reload:        d.reloadAll,
		Ready:         d.ready,
		MaxRequests:   d.f.maxRequests,
		Extra:         map[string]http.Handler{},
	}
	d.extras.routes(&opts)
	if d.f.debug {
		opts.Extra["/debug/pprof/"] = http.HandlerFunc(pprof.Index)
		opts.Extra["/debug/pprof/profile"] = http.HandlerFunc(pprof.Profile)
		opts.Extra["/debug/pprof/symbol"] = http.HandlerFunc(pprof.Symbol)
		opts.Extra["/debug/pprof/trace"] = http.HandlerFunc(pprof.Trace)
		opts.Extra["/debug/pprof/cmdline"] = http.HandlerFunc(pprof.Cmdline)
	}
	return web.Handler(opts)
}

func (d *daemon) status() web.Status {
	st := web.Status{Version: version.Info()}
	for _, u := range d.engine.Units() {
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
	d.mu.Lock()
	st.Reload = d.lastReload
	plan := d.capPlan
	d.mu.Unlock()
	for _, n := range plan.Needs {
		cs := web.CapabilityStatus{Feature: n.Feature, Caps: strings.Join(caps.Names(n.Caps&plan.Keep), ", "), Why: n.Why}
		if u, ok := plan.UnmetFor(n.Feature); ok {
			cs.Missing = strings.Join(caps.Names(u.Missing), ", ")
			cs.Why = u.Why
		}
		st.Capabilities = append(st.Capabilities, cs)
	}
	d.extras.status(&st)
	return st
}

// ready says the exporter is ready when at least one config is up (or
// none is configured): a node where every program failed is not.
func (d *daemon) ready() error {
	configs := d.coll.Configs()
	var failed []string
	for _, c := range configs {
		if c.Up() {
			return nil
		}
		failed = append(failed, c.Name())
	}
	if len(configs) == 0 {
		return nil
	}
	return fmt.Errorf("no config is up (%s failed)", strings.Join(failed, ", "))
}

// serveMaps dumps raw map contents (debug only).
func (d *daemon) serveMaps(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, c := range d.coll.Configs() {
		if err := c.DumpMaps(w); err != nil {
			fmt.Fprintf(w, "error: %v\n", err)
		}
	}
}

// close detaches every config and stops extras.
func (d *daemon) close() {
	d.extras.close()
	d.engine.Close()
	d.stopTracing()
}
