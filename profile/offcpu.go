package profile

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/rules"
)

// Off-CPU time (offcpu.bpf.h): for targets with OffCPU set, the kernel
// sums by stack the nanoseconds their threads spend blocked, from the
// sched_switch that takes a sleeping thread off its CPU to the one that
// puts it back. Drains report it as the profile App.off_cpu, whose values
// the rules read in seconds.

// offCPUProgram is the sched_switch program; the maps it alone uses are
// shrunk to one entry when no target asks for off-CPU time.
const offCPUProgram = "off_cpu_switch"

var offCPUMaps = []string{"offcpu_pids", "offcpu_starts", "offcpu_stacks", "offcpu_counts", "offcpu_scratch"}

// offCPU is the off-CPU part of a Profiler, nil when no target wants it.
type offCPU struct {
	link link.Link
	pids *ebpf.Map
	// seconds counts the off-CPU time drained, truncated the part of it
	// whose stacks were deeper than the walk (their root frames missing);
	// lostBlocks and lostNanos mirror the kernel's cumulative count of
	// blocks that found its map full.
	seconds, truncated    prometheus.Counter
	lostBlocks, lostNanos atomic.Uint64
	lost, lostSecs        prometheus.CounterFunc
}

// wantsOffCPU reports whether some target records off-CPU time.
func wantsOffCPU(ts []Target) bool {
	for _, t := range ts {
		if t.OffCPU {
			return true
		}
	}
	return false
}

// prepareOffCPU edits the profiler's spec before loading: without an
// off-CPU target the sched_switch program is not loaded and its maps take
// no memory; with one, the minimum blocked time is set.
func prepareOffCPU(spec *ebpf.CollectionSpec, opts Options) error {
	if !wantsOffCPU(opts.Targets) {
		delete(spec.Programs, offCPUProgram)
		for _, name := range offCPUMaps {
			if m := spec.Maps[name]; m != nil {
				m.MaxEntries = 1
			}
		}
		return nil
	}
	if opts.OffCPUMin < 0 {
		return fmt.Errorf("off-CPU minimum %s is negative", opts.OffCPUMin)
	}
	v := spec.Variables["offcpu_min_ns"]
	if v == nil {
		return errors.New("profiler object has no offcpu_min_ns")
	}
	if err := v.Set(uint64(opts.OffCPUMin.Nanoseconds())); err != nil {
		return fmt.Errorf("setting offcpu_min_ns: %w", err)
	}
	return nil
}

// startOffCPU attaches the sched_switch program, if loaded.
func startOffCPU(coll *ebpf.Collection) (*offCPU, error) {
	prog := coll.Programs[offCPUProgram]
	if prog == nil {
		return nil, nil
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attaching %s to sched_switch: %w", offCPUProgram, err)
	}
	o := &offCPU{
		link: l,
		pids: coll.Maps["offcpu_pids"],
		seconds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "probe_exporter", Subsystem: "profiler", Name: "off_cpu_seconds_total",
			Help: "Off-CPU time (threads blocked) of profiled processes drained, in seconds."}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "probe_exporter", Subsystem: "profiler", Name: "off_cpu_truncated_seconds_total",
			Help: "Off-CPU seconds drained whose stack was deeper than the unwinder walks (64 frames): their root frames are missing."}),
	}
	o.lost = prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "probe_exporter", Subsystem: "profiler", Name: "off_cpu_lost_blocks_total",
		Help: "Blocked periods not counted because an off-CPU map was full (16384 threads blocked at once, 16384 stacks between drains)."}, func() float64 { return float64(o.lostBlocks.Load()) })
	o.lostSecs = prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "probe_exporter", Subsystem: "profiler", Name: "off_cpu_lost_seconds_total",
		Help: "Off-CPU seconds of the blocked periods not counted for want of room for their stack (unknown for threads not tracked)."}, func() float64 { return float64(o.lostNanos.Load()) / 1e9 })
	return o, nil
}

// offCPUFollow starts recording pid's off-CPU time if its target asks;
// p.mu is held.
func (p *Profiler) offCPUFollow(pid, target int) {
	if p.off == nil || p.closed || !p.opts.Targets[target].OffCPU {
		return
	}
	if err := p.off.pids.Put(uint32(pid), uint32(target)); err != nil {
		p.opts.Logger.Warn("profiler off-CPU", "pid", pid, "err", err)
	}
}

// offCPUForget stops recording pid; p.mu is held.
func (p *Profiler) offCPUForget(pid int) {
	if p.off != nil && !p.closed {
		_ = p.off.pids.Delete(uint32(pid))
	}
}

// drainOffCPU reads and clears the off-CPU times and hands each process's
// to the sink as App.off_cpu (nanoseconds, read as seconds).
func (p *Profiler) drainOffCPU() error {
	d, err := p.drainStacks(p.coll.Maps["offcpu_counts"], p.coll.Maps["offcpu_stacks"])
	if err != nil {
		return fmt.Errorf("reading off-CPU times: %w", err)
	}
	p.off.seconds.Add(float64(d.kept) / 1e9)
	p.off.truncated.Add(float64(d.truncated) / 1e9)
	for _, g := range d.groups {
		t := p.opts.Targets[g.target]
		p.opts.Sink.ObserveProfile(OffCPUProfile(t.App, g.tags(t), g.samples()))
	}
	var lost []uint64
	for i, dst := range []*atomic.Uint64{&p.off.lostBlocks, &p.off.lostNanos} {
		if err := p.coll.Maps["offcpu_lost"].Lookup(uint32(i), &lost); err == nil {
			var sum uint64
			for _, v := range lost {
				sum += v
			}
			dst.Store(sum)
		}
	}
	return nil
}

// OffCPUProfile is the profile of off-CPU nanoseconds by stack of app:
// app.off_cpu, which export rules count in seconds and recording rules
// in nanoseconds (__profile_type__
// "off_cpu:off_cpu:nanoseconds:off_cpu:nanoseconds"), as they do CPU time.
func OffCPUProfile(app string, tags map[string]string, samples []rules.Sample) rules.Profile {
	return rules.Profile{App: app + ".off_cpu", Tags: tags, Units: "nanoseconds", CPU: true, Divisor: 1e9, Samples: samples}
}

func (o *offCPU) close() {
	if o != nil && o.link != nil {
		o.link.Close()
		o.link = nil
	}
}

func (o *offCPU) describe(ch chan<- *prometheus.Desc) {
	if o != nil {
		o.seconds.Describe(ch)
		o.truncated.Describe(ch)
		o.lost.Describe(ch)
		o.lostSecs.Describe(ch)
	}
}

func (o *offCPU) collect(ch chan<- prometheus.Metric) {
	if o != nil {
		o.seconds.Collect(ch)
		o.truncated.Collect(ch)
		o.lost.Collect(ch)
		o.lostSecs.Collect(ch)
	}
}
