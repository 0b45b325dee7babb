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
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/probe-exporter/probe_exporter/cmd/probe_exporter/internal/component"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := runContext(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// runContext runs the exporter until ctx ends and returns the exit code.
func runContext(ctx context.Context, args []string) int {
	app := kingpin.New("probe_exporter", "Turns eBPF programs, userspace probes, scripts and CPU profiles into Prometheus metrics.")
	f := registerFlags(app)
	webFlags := kingpinflag.AddFlags(app, ":9900")
	logCfg := &promslog.Config{}
	promslogflag.AddFlags(app, logCfg)
	app.Version(version.Print("probe_exporter"))
	app.HelpFlag.Short('h')
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "probe_exporter: %v\n", err)
		return 2
	}
	f.web = webFlags
	if f.port != 0 {
		addr := []string{fmt.Sprintf(":%d", f.port)}
		f.web.WebListenAddresses = &addr
	}
	logger := promslog.New(logCfg)

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
		if !x.configs.Check(os.Stdout) {
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
