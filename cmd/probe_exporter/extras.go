package main

import (
	"context"
	"errors"

	"github.com/probe-exporter/probe_exporter/loader"
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
