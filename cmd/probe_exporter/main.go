// Command probe_exporter turns eBPF programs, userspace probes, scripts and
// CPU profiles into Prometheus metrics. This package holds its flags, its
// signals, the wiring of its components (cmd/probe_exporter/internal/component) and the
// capabilities it keeps; the parts themselves live in their packages.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"

	"github.com/probe-exporter/probe_exporter/cmd/probe_exporter/internal/component"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := runContext(ctx, os.Args[0], os.Args[1:])
	stop()
	os.Exit(code)
}

// runContext runs the exporter invoked as argv0 until ctx ends and returns
// the exit code.
func runContext(ctx context.Context, argv0 string, args []string) int {
	compat := compatMode(argv0, args)
	name, listen := "probe_exporter", ":9900"
	if compat == compatEbpfExporter {
		name, listen = compatEbpfExporter, ebpfExporterListen
	}
	app := kingpin.New(name, "Turns eBPF programs, userspace probes, scripts and CPU profiles into Prometheus metrics. "+
		"Flags come in groups: eBPF configs, HTTP, scripts, profiles, privileges, logging and compatibility "+
		"(docs/operations.md#flags).")
	// --help and --version answer on standard output, so that they can be
	// paged and searched; parse errors go to standard error.
	app.UsageWriter(os.Stdout)
	f := registerFlags(app, compat, listen)
	app.Version(version.Print(name))
	app.HelpFlag.Short('h')
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	logCfg := f.log
	if f.port != 0 {
		addr := []string{fmt.Sprintf(":%d", f.port)}
		f.web.WebListenAddresses = &addr
	}
	// ebpf_exporter's --web.listen-address=fd://0 is systemd socket
	// activation, exporter-toolkit's --web.systemd-socket.
	for _, a := range *f.web.WebListenAddresses {
		if strings.HasPrefix(a, "fd://") {
			on := true
			f.web.WebSystemdSocket = &on
		}
	}
	if compat == compatEbpfExporter && os.Getenv("OTEL_SERVICE_NAME") == "" {
		// ebpf_exporter's spans are of this service unless told otherwise.
		os.Setenv("OTEL_SERVICE_NAME", compatEbpfExporter)
	}
	logger := promslog.New(logCfg)
	if f.noTimestamps {
		logger = slog.New(noTimestamps{logger.Handler()})
	}

	x, err := newDaemon(ctx, f, logger)
	defer func() {
		if err := x.group.Close(); err != nil {
			logger.Warn("closing", "err", err)
		}
	}()
	if err != nil {
		logger.Error("startup failed", "err", err)
		return 1
	}
	if f.check {
		// ebpf_exporter's check fails only on configs that do not load
		// (and, with --config.strict, on programs not attached).
		if !x.configs.Check(os.Stdout, f.compat == compatEbpfExporter && !f.strict) {
			return 1
		}
		return 0
	}
	plan, err := x.planCapabilities(f)
	if err == nil {
		x.setCapabilityPlan(plan)
		err = applyCapabilities(plan, f.runAs, logger)
	}
	if err != nil {
		logger.Error("dropping capabilities", "err", err)
		return 1
	}
	if x.watcher != nil {
		// It holds new processes at exec only when it can continue them.
		x.watcher.RefreshPermissions()
	}
	stopHUP := reloadOnHUP(ctx, x.group, logger)
	defer stopHUP()
	if err := x.group.Run(ctx); err != nil {
		logger.Error("exporter stopped", "err", err)
		return 1
	}
	logger.Info("shut down cleanly")
	return 0
}

// reloadOnHUP reloads every component on SIGHUP until ctx ends or the
// returned stop is called.
func reloadOnHUP(ctx context.Context, g *component.Group, logger *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logger.Info("reloading on SIGHUP")
				if err := g.Reload(); err != nil {
					logger.Error("reload failed", "err", err)
				}
			}
		}
	}()
	return func() { signal.Stop(hup); cancel(); <-done }
}
