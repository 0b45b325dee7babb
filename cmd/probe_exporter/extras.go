package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/probe-exporter/probe_exporter/loader"
	"github.com/probe-exporter/probe_exporter/scripts"
	"github.com/probe-exporter/probe_exporter/targets"
	"github.com/probe-exporter/probe_exporter/userspace"
	"github.com/probe-exporter/probe_exporter/web"
)

// extras are the parts beside BPF configs: scripts, profile rules, the
// profiler, /ingest and userspace probe targets.
type extras struct {
	userspace loader.UserspaceAttacher
	closers   []func() error
	reloaders []func() error
	routeFns  []func(*web.Options)
	statusFns []func(*web.Status)
}

func (d *daemon) startExtras(ctx context.Context) error {
	if err := d.startProfiles(); err != nil {
		return err
	}
	if err := d.startProfiler(ctx); err != nil {
		return err
	}
	if d.f.scriptsDir != "" {
		if err := d.startScripts(ctx); err != nil {
			return err
		}
	}
	return nil
}

// startUserspace follows processes for uprobe and USDT targets.
func (d *daemon) startUserspace(ctx context.Context) {
	w, err := targets.NewWatcher(targets.WatcherOptions{Logger: d.logger.With("component", "targets")})
	if err != nil {
		d.logger.Warn("process targets unavailable", "err", err)
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = w.Run(wctx); close(done) }()
	d.watcher = w
	att := userspace.New(w, d.coll, d.logger.With("component", "userspace"))
	d.reg.MustRegister(att)
	d.extras.userspace = att
	d.extras.closers = append(d.extras.closers, func() error { cancel(); <-done; return nil })
}

// privilegesChanged tells the process watcher the capabilities or user
// changed: it holds new processes at exec only when it can continue them.
func (d *daemon) privilegesChanged() {
	if d.watcher != nil {
		d.watcher.RefreshPermissions()
	}
}

// exporterID names this exporter instance in systemtap module names: the
// port it listens on.
func (d *daemon) exporterID() string {
	if d.f.web != nil && d.f.web.WebListenAddresses != nil && len(*d.f.web.WebListenAddresses) > 0 {
		if _, port, err := net.SplitHostPort((*d.f.web.WebListenAddresses)[0]); err == nil && port != "" {
			return port
		}
	}
	return "9900"
}

func (d *daemon) startScripts(ctx context.Context) error {
	sup, err := scripts.New(scripts.Options{
		Dir:        d.f.scriptsDir,
		Keepalive:  timeOf(d.f.scriptsKeepalive),
		StartWait:  d.f.scriptsStartWait,
		MaxRunning: d.f.scriptsMaxRunning,
		MaxOutput:  d.f.scriptsMaxOutput,
		Logger:     d.logger.With("component", "scripts"),
		ExporterID: d.exporterID(),
	})
	if err != nil {
		return fmt.Errorf("scripts: %w", err)
	}
	d.reg.MustRegister(sup)
	d.scripts = sup
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = sup.Run(sctx); close(done) }()
	x := &d.extras
	x.closers = append(x.closers, func() error { cancel(); <-done; return nil })
	x.reloaders = append(x.reloaders, sup.Reload)
	x.routeFns = append(x.routeFns, func(o *web.Options) {
		o.Fallback = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sup.ServeScript(w, r, strings.TrimPrefix(r.URL.Path, "/"))
		})
	})
	x.statusFns = append(x.statusFns, func(st *web.Status) {
		for _, s := range sup.Status() {
			st.Scripts = append(st.Scripts, web.ScriptStatus{
				Name: s.Name, Kind: string(s.Kind), State: string(s.State), LastError: s.LastError,
				Restarts: s.Restarts, Autostart: s.Autostart, LastOutput: s.LastOutput,
			})
		}
	})
	d.logger.Info("serving scripts", "dir", d.f.scriptsDir, "scripts", len(sup.Status()))
	return nil
}

func (x *extras) routes(o *web.Options) {
	for _, f := range x.routeFns {
		f(o)
	}
}

func (x *extras) status(st *web.Status) {
	for _, f := range x.statusFns {
		f(st)
	}
}

func (x *extras) reload() error {
	var errs []error
	for _, f := range x.reloaders {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}

func (x *extras) close() {
	for i := len(x.closers) - 1; i >= 0; i-- {
		_ = x.closers[i]()
	}
	x.closers = nil
}
