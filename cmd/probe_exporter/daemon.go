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
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"

	"github.com/probe-exporter/probe_exporter/collector"
	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/decoder"
	"github.com/probe-exporter/probe_exporter/defaults"
	"github.com/probe-exporter/probe_exporter/loader"
	"github.com/probe-exporter/probe_exporter/targets"
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

	mu         sync.Mutex // guards loaded and reload state
	loaded     map[string]*loadedConfig
	lastReload web.ReloadStatus
	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge

	extras      extras
	profileSink *ruleHolder
	watcher     *targets.Watcher
}

// loadedConfig is a config as loaded, with the fingerprint of its sources
// so that a reload keeps unchanged configs running.
type loadedConfig struct {
	fingerprint string
	cfg         *collector.Config
}

func newDaemon(ctx context.Context, f *flags, logger *slog.Logger) (*daemon, error) {
	d := &daemon{
		f:        f,
		logger:   logger,
		ctx:      ctx,
		reg:      prometheus.NewRegistry(),
		env:      decoder.HostEnv(),
		compiler: loader.NewCompiler(""),
		loaded:   map[string]*loadedConfig{},
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: collector.Namespace, Name: "config_last_reload_successful",
			Help: "Whether the last configuration reload succeeded.",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: collector.Namespace, Name: "config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload.",
		}),
	}
	for _, w := range d.env.Warnings() {
		logger.Warn(w)
	}
	d.coll = collector.New(collector.Options{
		MetricPrefix: f.metricPrefix,
		Env:          d.env,
		Logger:       logger,
	})
	d.reg.MustRegister(
		d.coll,
		d.reloadOK,
		d.reloadTime,
		versioncollector.NewCollector("probe_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if err := loader.PrepareHost(logger); err != nil {
		logger.Warn("host preparation", "err", err)
	}
	d.startUserspace(ctx)
	if err := d.reload(); err != nil {
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

// reload (re)reads configs: unchanged ones keep running (their counters
// continue), changed ones are swapped, removed ones detach. A config that
// fails to parse or load keeps its old version running, if any.
func (d *daemon) reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfgs, parseErrs := d.sources()
	var errs []error
	for _, err := range parseErrs {
		d.logger.Error("config error", "err", err)
		errs = append(errs, err)
	}
	failedNames := map[string]bool{}
	for _, err := range parseErrs {
		var ce *config.FileError
		if errors.As(err, &ce) {
			failedNames[ce.Name] = true
		}
	}
	next := map[string]*loadedConfig{}
	for _, c := range cfgs {
		fp := fingerprint(c)
		if old, ok := d.loaded[c.Name]; ok && old.fingerprint == fp {
			next[c.Name] = old
			continue
		}
		lc := d.load(c, fp)
		if !lc.cfg.Up() {
			for _, err := range configErrors(lc.cfg) {
				d.logger.Error("config failed", "config", c.Name, "err", err)
				errs = append(errs, err)
			}
			if old, ok := d.loaded[c.Name]; ok {
				// Keep the version that works.
				lc.cfg.Object.Close()
				next[c.Name] = old
				continue
			}
		}
		next[c.Name] = lc
	}
	// A config whose file no longer parses keeps running in its old form;
	// a config no longer named is removed.
	for name, old := range d.loaded {
		if _, ok := next[name]; ok {
			continue
		}
		if failedNames[name] {
			next[name] = old
			continue
		}
	}
	for name, old := range d.loaded {
		if next[name] != old {
			if err := old.cfg.Object.Close(); err != nil {
				d.logger.Warn("closing config", "config", name, "err", err)
			}
		}
	}
	for _, err := range parseErrs {
		var ce *config.FileError
		if errors.As(err, &ce) {
			if _, ok := next[ce.Name]; !ok {
				// Show the failure on /metrics and the landing page.
				obj := &loader.Object{Config: config.Config{Name: ce.Name, Path: ce.Path}, Err: err}
				next[ce.Name] = &loadedConfig{cfg: d.coll.NewConfig(obj)}
			}
		}
	}
	d.loaded = next
	names := make([]string, 0, len(next))
	for n := range next {
		names = append(names, n)
	}
	sort.Strings(names)
	list := make([]*collector.Config, 0, len(names))
	for _, n := range names {
		list = append(list, next[n].cfg)
	}
	d.coll.SetConfigs(list)
	err := errors.Join(errs...)
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

func (d *daemon) load(c config.Config, fp string) *loadedConfig {
	for _, w := range c.Warnings() {
		d.logger.Warn(w, "config", c.Name)
	}
	obj := loader.Load(d.ctx, c, loader.Options{
		Logger:    d.logger,
		Kaddr:     d.env.KernelAddr,
		Compiler:  d.compiler,
		Userspace: d.extras.userspace,
	})
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
	return &loadedConfig{fingerprint: fp, cfg: cc}
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
	for _, c := range d.coll.Configs() {
		if c.Up() {
			fmt.Printf("ok      %s\n", c.Name())
			continue
		}
		code = 1
		fmt.Printf("FAILED  %s\n", c.Name())
		for _, err := range configErrors(c) {
			for _, line := range strings.Split(err.Error(), "\n") {
				fmt.Printf("        %s\n", line)
			}
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
	for _, c := range d.coll.Configs() {
		cs := web.ConfigStatus{Name: c.Name(), Source: c.Object.Config.Path, Up: c.Up()}
		if cs.Source == "" {
			cs.Source = "embedded"
		}
		var msgs []string
		if c.Object.Err != nil {
			msgs = append(msgs, c.Object.Err.Error())
		}
		if c.Err != nil {
			msgs = append(msgs, c.Err.Error())
		}
		cs.Error = strings.Join(msgs, "\n")
		for _, p := range c.Object.Programs {
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
	d.mu.Unlock()
	d.extras.status(&st)
	return st
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
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, lc := range d.loaded {
		if err := lc.cfg.Object.Close(); err != nil {
			d.logger.Warn("closing config", "config", name, "err", err)
		}
	}
	d.loaded = map[string]*loadedConfig{}
	d.coll.SetConfigs(nil)
}
