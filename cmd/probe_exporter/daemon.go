package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"github.com/cilium/ebpf/btf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"

	"github.com/probe-exporter/probe_exporter/cmd/probe_exporter/internal/component"
	"github.com/probe-exporter/probe_exporter/cmd/probe_exporter/internal/services"
	"github.com/probe-exporter/probe_exporter/collector"
	"github.com/probe-exporter/probe_exporter/decoder"
	"github.com/probe-exporter/probe_exporter/ingest"
	"github.com/probe-exporter/probe_exporter/internal/safeopen"
	"github.com/probe-exporter/probe_exporter/loader"
	"github.com/probe-exporter/probe_exporter/scripts"
	"github.com/probe-exporter/probe_exporter/targets"
	"github.com/probe-exporter/probe_exporter/tracing"
	"github.com/probe-exporter/probe_exporter/web"
)

// daemon is what the flags configure: the components, in the order
// they start (each may use those before it; they stop in reverse).
type daemon struct {
	group      *component.Group
	configs    *services.Configs
	watcher    *targets.Watcher  // nil when process targets are unavailable
	scripts    *services.Scripts // nil without --scripts.dir
	privileges *privileges
}

// newDaemon builds every component the flags ask for. What needs
// privileges (loading programs, opening perf events) happens here, before
// capabilities are dropped; nothing runs until group.Run. On error the
// exporter returned holds what was built, for group.Close.
func newDaemon(ctx context.Context, f *flags, logger *slog.Logger) (*daemon, error) {
	g := component.New(component.Options{Namespace: collector.Namespace, Logger: logger})
	x := &daemon{group: g}

	env := decoder.HostEnv()
	for _, w := range env.Warnings() {
		logger.Warn(w)
	}
	kube := newKubeNames(ctx, f.kube, logger.With("component", "kubernetes"))
	env.Pods = kube.Resolver
	g.Add("kubernetes", kube)
	// With ebpf_exporter's prefix, decoders give its values and
	// build_info its name too.
	buildInfo := "probe_exporter"
	if f.metricPrefix == collector.EbpfExporterPrefix {
		env.EbpfExporter = true
		buildInfo = collector.EbpfExporterPrefix
	}
	compiler := loader.NewCompiler(f.cacheDir)
	compiler.Logger, compiler.ShowTranslated = logger, f.debug
	g.Add("compiler", compiler)
	var kernelTypes *btf.Spec
	if f.btfPath != "" {
		spec, err := btf.LoadSpec(f.btfPath)
		if err != nil {
			return x, fmt.Errorf("--btf.path: %w", err)
		}
		kernelTypes, compiler.BTF = spec, f.btfPath
	}
	if err := loader.PrepareHost(logger); err != nil {
		logger.Warn("host preparation", "err", err)
	}

	// Every file of another process or user the exporter reads goes
	// through safeopen; refusals are counted here, for all of them.
	untrusted := safeopen.NewStats(logger.With("component", "safeopen"))
	if !safeopen.Openat2() {
		logger.Warn("this kernel has no openat2 (Linux 5.6): paths inside processes' roots are resolved component by component, and a symlink is never followed out of the root either way")
	}

	if w, err := targets.NewWatcher(targets.WatcherOptions{Logger: logger.With("component", "targets")}); err != nil {
		logger.Warn("process targets unavailable", "err", err)
	} else {
		x.watcher = w
		g.Add("targets", w)
	}
	tr, err := services.NewTracing(ctx, logger, f.compat == compatEbpfExporter)
	if err != nil {
		return x, err
	}
	var provider *tracing.Provider
	if tr != nil {
		provider = tr.Provider
		g.Add("tracing", tr)
	}

	x.configs = services.NewConfigs(ctx, services.ConfigsOptions{
		Dir:          f.configDir,
		Names:        f.names(),
		MetricPrefix: f.metricPrefix,
		Env:          env,
		Compiler:     compiler,
		KernelTypes:  kernelTypes,
		Watcher:      x.watcher,
		Files:        untrusted,
		Tracing:      provider,
		Debug:        f.debug,
		Logger:       logger,

		EventsMaxSeries: f.eventsMaxSeries,
	})
	g.Add("configs", x.configs)
	err = x.configs.Load()
	g.Record(err)
	if err != nil {
		if f.strict {
			return x, err
		}
		logger.Warn("some configs failed; the others are serving", "err", err)
	}

	rules, err := services.NewRules(services.RulesOptions{
		File:      f.rulesFile,
		MaxSeries: f.rulesMaxSeries,
		Ingest: ingest.Options{
			MaxBodyBytes:         f.ingestMaxBytes,
			MaxDecompressedBytes: f.ingestMaxDecompressed,
			MaxInflightBytes:     f.ingestMaxInflight,
			BodyTimeout:          f.ingestBodyTimeout,
			Logger:               logger.With("component", "ingest"),
		},
		Logger: logger,
	})
	if err != nil {
		return x, err
	}
	g.Add("rules", rules)

	if f.profileConfig != "" {
		p, err := services.NewProfiler(services.ProfilerOptions{
			TargetsFile: f.profileConfig,
			Frequency:   f.profileFrequency,
			Interval:    f.profileInterval,
			OffCPUMin:   f.profileOffCPUMin,
			Rules:       rules.Live(),
			Watcher:     x.watcher,
			Kernel:      env.Kallsyms.Sym, // the ksym decoders' table, read once
			Files:       untrusted,
			Logger:      logger.With("component", "profiler"),
		})
		if err != nil {
			return x, err
		}
		g.Add("profiler", p)
	}

	if f.scriptsDir != "" {
		s, err := services.NewScripts(scripts.Options{
			Dir:         f.scriptsDir,
			Keepalive:   timeOf(f.scriptsKeepalive),
			StartWait:   f.scriptsStartWait,
			MaxRunning:  f.scriptsMaxRunning,
			MaxOutput:   f.scriptsMaxOutput,
			Timeout:     f.scriptsTimeout,
			Timeouts:    f.scriptsTimeouts,
			MinInterval: f.scriptsMinInt,
			Logger:      logger.With("component", "scripts"),
			ExporterID:  exporterID(f),
		})
		if err != nil {
			return x, fmt.Errorf("scripts: %w", err)
		}
		x.scripts = s
		g.Add("scripts", s)
		logger.Info("serving scripts", "dir", f.scriptsDir, "scripts", len(s.Supervisor.Status()))
	}

	x.privileges = &privileges{}
	g.Add("capabilities", x.privileges)

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector(buildInfo),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		untrusted,
	)
	if err := g.Register(reg); err != nil {
		return x, err
	}
	coll := x.configs.Collector()
	handler := web.Handler(web.Options{
		Registry: reg,
		Gatherer: prometheus.Gatherers{reg, coll},
		Metrics: coll.Handler(reg, collector.HandlerOpts{
			ErrorLog:            slog.NewLogLogger(logger.Handler(), slog.LevelError),
			Registry:            reg,
			MaxRequestsInFlight: f.maxRequests,
		}),
		TelemetryPath:  f.telemetryPath,
		Logger:         logger,
		Status:         g.Status,
		Debug:          f.debug,
		Reload:         g.Reload,
		ReloadDisabled: !f.enableReload,
		Ready:          g.Ready,
		MaxRequests:    f.maxRequests,
		Routes:         g.Routes(),
	})
	g.Add("http", &web.Server{
		Handler:        handler,
		Flags:          f.web,
		Logger:         logger,
		MaxConnections: maxConnections(f.maxConns, logger),
		Registerer:     reg,
	})
	return x, nil
}

// maxConnections is --web.max-connections, lowered to half the open file
// limit when over it (said in the log): a bound that exhausts the
// descriptors BPF objects and scripts need would bound nothing.
func maxConnections(flag int, logger *slog.Logger) int {
	var lim syscall.Rlimit
	if flag <= 0 || syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return flag
	}
	if half := lim.Cur / 2; uint64(flag) > half {
		logger.Warn("--web.max-connections lowered to half the open file limit", "max_connections", half, "nofile", lim.Cur)
		return int(half)
	}
	return flag
}

// exporterID names this exporter instance in systemtap module names: the
// port it listens on.
func exporterID(f *flags) string {
	if f.web != nil && f.web.WebListenAddresses != nil && len(*f.web.WebListenAddresses) > 0 {
		if _, port, err := net.SplitHostPort((*f.web.WebListenAddresses)[0]); err == nil && port != "" {
			return port
		}
	}
	return "9900"
}
