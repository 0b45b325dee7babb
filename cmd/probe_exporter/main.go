// Command probe_exporter turns eBPF programs, userspace probes, scripts and
// CPU profiles into Prometheus metrics.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
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

	d, err := newDaemon(ctx, f, logger)
	if err != nil {
		logger.Error("startup failed", "err", err)
		return 1
	}
	defer d.close()
	if f.check {
		return d.checkResult()
	}
	plan, err := d.planCapabilities()
	if err == nil {
		d.setCapabilityPlan(plan)
		err = applyCapabilities(plan, f.runAs, logger)
	}
	if err != nil {
		logger.Error("dropping capabilities", "err", err)
		return 1
	}
	d.privilegesChanged()
	if err := d.run(ctx); err != nil {
		logger.Error("exporter stopped", "err", err)
		return 1
	}
	logger.Info("shut down cleanly")
	return 0
}
