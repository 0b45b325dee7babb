// Package component runs what serves beside the configs (the process
// watcher, scripts, the profiler, profile rules, the HTTP server) with one
// lifecycle, as node_exporter's registry runs its collectors: each part is
// a Component added to a Group by name, with optional interfaces for what
// it reloads, serves, shows and exports. The Group runs them together,
// reloads them in order and stops them in reverse order within a bound.
package component

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/web"
)

// Component is one part of the exporter. Construction (its New) acquires
// what needs privileges; Run serves until ctx ends and stops what it
// started before returning; a non-nil error from Run stops the exporter.
// A component may also be a Reloader, Router, Statuser, Readier,
// io.Closer (to release what construction acquired) and a
// prometheus.Collector.
type Component interface {
	Run(ctx context.Context) error
}

// Reloader is a component that re-reads its files on SIGHUP and POST
// /-/reload; on error it keeps serving what it had.
type Reloader interface {
	Reload() error
}

// Router is a component that serves HTTP endpoints.
type Router interface {
	Routes() []web.Route
}

// Statuser is a component shown on the landing page.
type Statuser interface {
	Status(*web.Status)
}

// Readier is a component that can make the exporter not ready
// (/-/ready): nil when ready, else why not.
type Readier interface {
	Ready() error
}

// Idle is the Run of a component with nothing to run: it waits for ctx.
func Idle(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// DefaultStopTimeout bounds how long Run waits for components to stop.
const DefaultStopTimeout = 30 * time.Second

// Options configure a Group.
type Options struct {
	// Namespace prefixes the reload metrics
	// (<namespace>_config_last_reload_successful).
	Namespace string
	// StopTimeout bounds the stop of every component together
	// (DefaultStopTimeout when 0).
	StopTimeout time.Duration
	Logger      *slog.Logger
}

type part struct {
	name string
	c    Component
}

// Group runs components. Add them in dependency order: a component may
// use those added before it, which stop after it.
type Group struct {
	opts  Options
	parts []part

	reloadMu   sync.Mutex // one reload at a time
	mu         sync.Mutex // guards last
	last       web.ReloadStatus
	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge
}

// New makes an empty group.
func New(opts Options) *Group {
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Group{
		opts: opts,
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: opts.Namespace, Name: "config_last_reload_successful",
			Help: "Whether the last configuration reload succeeded.",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: opts.Namespace, Name: "config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload.",
		}),
	}
}

// Add appends a component under a name used in logs and errors.
func (g *Group) Add(name string, c Component) {
	g.parts = append(g.parts, part{name, c})
}

// Register registers the reload metrics and every component that is a
// prometheus.Collector.
func (g *Group) Register(reg prometheus.Registerer) error {
	if err := reg.Register(g.reloadOK); err != nil {
		return err
	}
	if err := reg.Register(g.reloadTime); err != nil {
		return err
	}
	for _, p := range g.parts {
		if c, ok := p.c.(prometheus.Collector); ok {
			if err := reg.Register(c); err != nil {
				return fmt.Errorf("%s: registering metrics: %w", p.name, err)
			}
		}
	}
	return nil
}

// Run runs every component until ctx ends or one fails; then it stops
// them in reverse order, each after those added later have returned,
// within the stop timeout altogether. It returns the first failure and
// the components that did not stop in time.
func (g *Group) Run(ctx context.Context) error {
	type running struct {
		cancel context.CancelFunc
		done   chan struct{}
		err    error
	}
	failed := make(chan int, len(g.parts))
	rs := make([]*running, len(g.parts))
	// Each component's context ends only when the group stops it, in
	// order: not when ctx ends, which would stop them all at once.
	base := context.WithoutCancel(ctx)
	for i, p := range g.parts {
		cctx, cancel := context.WithCancel(base)
		r := &running{cancel: cancel, done: make(chan struct{})}
		rs[i] = r
		go func() {
			defer close(r.done)
			if r.err = p.c.Run(cctx); r.err != nil {
				failed <- i
			}
		}()
	}
	var errs []error
	first := -1
	select {
	case <-ctx.Done():
	case first = <-failed:
		errs = append(errs, fmt.Errorf("%s: %w", g.parts[first].name, rs[first].err))
		g.opts.Logger.Error("component failed; stopping", "component", g.parts[first].name, "err", rs[first].err)
	}
	deadline := time.NewTimer(g.opts.StopTimeout)
	defer deadline.Stop()
	late := false
	for i := len(rs) - 1; i >= 0; i-- {
		rs[i].cancel()
		if late {
			continue
		}
		select {
		case <-rs[i].done:
		case <-deadline.C:
			late = true // the rest are told to stop, not waited for
		}
	}
	// Errors of stopping (an HTTP server that could not shut down) count
	// too; a component still running is named.
	var slow []string
	for i, r := range rs {
		select {
		case <-r.done:
			if r.err != nil && i != first {
				errs = append(errs, fmt.Errorf("%s: %w", g.parts[i].name, r.err))
			}
		default:
			slow = append(slow, g.parts[i].name)
		}
	}
	if len(slow) > 0 {
		errs = append(errs, fmt.Errorf("%v did not stop within %s", slow, g.opts.StopTimeout))
	}
	return errors.Join(errs...)
}

// Reload reloads every Reloader in order, each even when one before it
// failed, and records how it went for Status and the reload metrics.
func (g *Group) Reload() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	var errs []error
	for _, p := range g.parts {
		if r, ok := p.c.(Reloader); ok {
			if err := r.Reload(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	err := errors.Join(errs...)
	g.Record(err)
	return err
}

// Record records a load: the first one, made while the components were
// constructed, or a Reload.
func (g *Group) Record(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.last = web.ReloadStatus{At: time.Now()}
	if err != nil {
		g.reloadOK.Set(0)
		g.last.Error = err.Error()
		return
	}
	g.reloadOK.Set(1)
	g.reloadTime.SetToCurrentTime()
}

// Routes lists the HTTP endpoints of every Router, in order.
func (g *Group) Routes() []web.Route {
	var out []web.Route
	for _, p := range g.parts {
		if r, ok := p.c.(Router); ok {
			out = append(out, r.Routes()...)
		}
	}
	return out
}

// Status is the landing page: the last reload and what every Statuser
// shows, in order.
func (g *Group) Status() web.Status {
	var st web.Status
	g.mu.Lock()
	st.Reload = g.last
	g.mu.Unlock()
	for _, p := range g.parts {
		if s, ok := p.c.(Statuser); ok {
			s.Status(&st)
		}
	}
	return st
}

// Ready is nil when every Readier is ready, else why each is not.
func (g *Group) Ready() error {
	var errs []error
	for _, p := range g.parts {
		if r, ok := p.c.(Readier); ok {
			if err := r.Ready(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Close closes every io.Closer in reverse order, after Run or instead
// of it (--config.check), and returns their errors.
func (g *Group) Close() error {
	var errs []error
	for i := len(g.parts) - 1; i >= 0; i-- {
		if c, ok := g.parts[i].c.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", g.parts[i].name, err))
			}
		}
	}
	return errors.Join(errs...)
}
