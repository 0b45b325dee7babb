// Package profile is a built-in eBPF CPU profiler: a perf event samples
// every online CPU, the kernel counts the stacks of selected processes, and
// userspace drains and symbolizes them into root-first stacks for the
// export rules.
package profile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/attach"
	"github.com/probe-exporter/probe_exporter/internal/procfs"
	"github.com/probe-exporter/probe_exporter/internal/safeopen"
	"github.com/probe-exporter/probe_exporter/rules"
	"github.com/probe-exporter/probe_exporter/targets"
	"github.com/probe-exporter/probe_exporter/web"
)

// Target is a set of processes profiled as one application.
type Target struct {
	// App is the application name; profiles are reported as App.cpu.
	App      string
	Tags     map[string]string
	Selector config.Selector
	// OffCPU also records the time its threads spend blocked, reported
	// as App.off_cpu (offcpu.go).
	OffCPU bool
}

// Options configure a Profiler.
type Options struct {
	// Frequency is the sampling frequency in Hz (default 100).
	Frequency int
	// Interval is how often samples are drained (default 10s).
	Interval time.Duration
	// OffCPUMin is the shortest blocked time recorded as off-CPU time
	// (0: all of it).
	OffCPUMin time.Duration
	Targets   []Target
	// Sink takes every drained profile (the live export rules).
	Sink    rules.Sink
	Watcher *targets.Watcher
	// Kernel resolves kernel addresses; nil leaves them as addresses.
	Kernel   func(addr uint64) (string, bool)
	ProcRoot string
	Logger   *slog.Logger
	// Files counts the files of profiled processes refused or not read
	// in time (probe_exporter_untrusted_file_errors_total); nil counts
	// nothing.
	Files *safeopen.Stats
}

// Profiler samples the CPU stacks of its targets.
type Profiler struct {
	opts   Options
	coll   *ebpf.Collection
	events io.Closer
	unsubs []func()
	sym    *symbolizer

	unw *unwinder
	py  *pyTracker
	off *offCPU // nil unless a target records off-CPU time
	// reads runs the reads of profiled processes' files (maps, ELF files,
	// perf maps) for refresh, under a deadline.
	reads *safeopen.Runner
	// starts wakes refresh for a process just started.
	starts   chan struct{}
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu    sync.Mutex
	procs map[int]*proc
	// closed is set once Close releases the maps.
	closed bool

	samples, drops, drains, truncated, perfCut prometheus.Counter
	drainTime                                  prometheus.Gauge
	tables                                     tableDescs
	// processes describes the processes each application's targets
	// select now (0 for a target selecting none).
	processes *prometheus.Desc
}

// tableDescs describe the tables' metrics, read at collection from the
// unwinder's and symbolizer's snapshots.
type tableDescs struct {
	unwindRows, unwindFiles, unwindSkipped, symbolBytes, symbolFiles, symbolSkipped *prometheus.Desc
}

func newTableDescs() tableDescs {
	return tableDescs{
		unwindRows: prometheus.NewDesc("probe_exporter_profiler_unwind_rows",
			"Rows of the kernel's unwind table (from .eh_frame, 16 bytes each, 1048576 in all), by state: used by files some profiled process maps, or free.",
			[]string{"state"}, nil),
		unwindFiles: prometheus.NewDesc("probe_exporter_profiler_unwind_files",
			"Files whose unwind rows are in the kernel (shared by the profiled processes mapping them).", nil, nil),
		unwindSkipped: prometheus.NewDesc("probe_exporter_profiler_unwind_skipped_files_total",
			"Files whose unwind rows were not loaded (their frames walk frame pointers), by reason: file_limit, user_limit, users_limit, table_full, unreadable.",
			[]string{"reason"}, nil),
		symbolBytes: prometheus.NewDesc("probe_exporter_profiler_symbol_bytes",
			"Estimated memory of the symbol tables held for files profiled processes map.", nil, nil),
		symbolFiles: prometheus.NewDesc("probe_exporter_profiler_symbol_files",
			"Files whose symbol tables are held.", nil, nil),
		symbolSkipped: prometheus.NewDesc("probe_exporter_profiler_symbol_skipped_files_total",
			"Files whose symbols were not loaded (their frames are file+offset), by reason: file_limit, user_limit, users_limit, table_full, unreadable.",
			[]string{"reason"}, nil),
	}
}

func (d tableDescs) all() []*prometheus.Desc {
	return []*prometheus.Desc{d.unwindRows, d.unwindFiles, d.unwindSkipped, d.symbolBytes, d.symbolFiles, d.symbolSkipped}
}

// proc is a profiled process.
type proc struct {
	target int
	comm   string
	// startTime tells the process from a later one of the same pid.
	startTime uint64
	maps      []procfs.Mapping
	exited    bool
	// described is set once refresh told the kernel its mappings;
	// sampling once its pid is in the kernel's pids map.
	described, sampling bool
	// busy is set while a refresh of it runs (or is stuck reading).
	// started is when the process was seen starting: young processes'
	// mappings are re-read often, while the dynamic loader maps libraries.
	started time.Time
	busy    bool
	// perf is the JIT symbol map the process wrote to /tmp/perf-PID.map,
	// as last read at perfAt (kept for the drain after it exits).
	perf   []perfSym
	perfAt time.Time
}

// New loads the profiler and starts sampling the targets.
func New(opts Options) (*Profiler, error) {
	if opts.Frequency <= 0 {
		opts.Frequency = 100
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Kernel == nil {
		opts.Kernel = func(uint64) (string, bool) { return "", false }
	}
	if opts.Watcher == nil || opts.Sink == nil {
		return nil, errors.New("profiler needs a process watcher and a sink")
	}
	if len(profileObject) == 0 {
		return nil, fmt.Errorf("the profiler has no BPF object for %s (x86-64 and arm64 only)", runtime.GOARCH)
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(profileObject))
	if err != nil {
		return nil, fmt.Errorf("profiler object: %w", err)
	}
	if err := prepareOffCPU(spec, opts); err != nil {
		return nil, fmt.Errorf("profiler object: %w", err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("loading the profiler: %w", err)
	}
	p := &Profiler{
		opts:  opts,
		coll:  coll,
		sym:   newSymbolizer(opts.Logger),
		reads: safeopen.NewRunner(readSlots, readTimeout),
		procs: map[int]*proc{},
		samples: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "probe_exporter", Subsystem: "profiler", Name: "samples_total",
			Help: "CPU samples of profiled processes drained."}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "probe_exporter", Subsystem: "profiler", Name: "lost_stacks_total",
			Help: "Samples whose stack could not be recorded (stack map full or no stack)."}),
		drains: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "probe_exporter", Subsystem: "profiler", Name: "drains_total",
			Help: "Drains of the sample maps."}),
		drainTime: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "probe_exporter", Subsystem: "profiler", Name: "last_drain_duration_seconds",
			Help: "Time the last drain (read, symbolize, emit) took."}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "probe_exporter", Subsystem: "profiler", Name: "truncated_stacks_total",
			Help: "Samples whose user stack was deeper than the unwinder walks (64 frames): their root frames are missing."}),
		perfCut: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "probe_exporter", Subsystem: "profiler", Name: "perf_map_cut_total",
			Help: "Reads of a /tmp/perf-PID.map cut at its bounds (16 MiB, 200000 symbols, 4096-byte lines): the rest of its JIT frames stay unnamed."}),
		tables: newTableDescs(),
		processes: prometheus.NewDesc("probe_exporter_profiler_processes",
			"Processes the profile targets of an application select now (running, profiled or being described).", []string{"app"}, nil),
		starts: make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	p.unw = newUnwinder(coll.Maps["rows"], coll.Maps["procs"], p.sym, opts.ProcRoot, opts.Files)
	p.py = newPyTracker(coll.Maps["py_procs"], coll.Maps["py_names"], p.sym, opts.ProcRoot)
	go p.refresh()
	// Read the kernel symbol table now (a few hundred ms of /proc/kallsyms)
	// rather than in the first drain.
	go p.opts.Kernel(0)
	p.events, err = attach.OnEveryCPU(coll.Programs["do_sample"], attach.PerfEvent{
		Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK, Frequency: uint64(opts.Frequency),
	})
	if err != nil {
		coll.Close()
		return nil, fmt.Errorf("profiler perf events: %w", err)
	}
	if p.off, err = startOffCPU(coll); err != nil {
		p.Close()
		return nil, err
	}
	for i, t := range opts.Targets {
		unsub, err := opts.Watcher.Subscribe(t.Selector, func(ev targets.Event) { p.event(i, ev) })
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("profile target %q: %w", t.App, err)
		}
		p.unsubs = append(p.unsubs, unsub)
	}
	return p, nil
}

// Bounds of the reads refresh makes: each waited for at most
// readTimeout; at most readSlots at once, stuck ones included.
const (
	readTimeout = 10 * time.Second
	readSlots   = 4
)

// event follows the watcher's processes. It reads no file of the process:
// the watcher waits for its subscribers, and a process's files can be made
// to block (see refresh).
func (p *Profiler) event(target int, ev targets.Event) {
	pid := ev.Process.PID
	switch ev.Kind {
	case targets.Start:
		p.mu.Lock()
		if old := p.procs[pid]; old == nil || old.exited {
			p.procs[pid] = &proc{target: target, comm: ev.Process.Comm, startTime: ev.Process.StartTime, started: time.Now()}
		}
		p.mu.Unlock()
		select {
		case p.starts <- struct{}{}:
		default:
		}
	case targets.Exit:
		p.py.forget(pid)
		p.mu.Lock()
		if pr := p.procs[pid]; pr != nil {
			pr.exited = true // forgotten after the next drain
			pr.sampling = false
		}
		if !p.closed {
			_ = p.coll.Maps["pids"].Delete(uint32(pid))
		}
		p.offCPUForget(pid)
		p.mu.Unlock()
		p.unw.forget(pid)
	}
}

// Run drains every interval until ctx ends, drains once more and closes.
func (p *Profiler) Run(ctx context.Context) error {
	tick := time.NewTicker(p.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			err := p.Drain()
			p.Close()
			return err
		case <-tick.C:
			if err := p.Drain(); err != nil {
				p.opts.Logger.Warn("profiler drain", "err", err)
			}
		}
	}
}

// sampleKey is struct sample_key of the BPF program.
type sampleKey struct {
	PID         uint32
	KernelStack int32
	Frames      uint32
	Flags       uint32
	User        [maxFrames]uint64
}

// Flags of a sample.
const sampleTruncated = 1

// refresh describes new processes to the kernel and re-reads the
// mappings of profiled processes, so libraries mapped after exec (the
// dynamic loader, dlopen) get their unwind rows: every 20 ms in a
// process's first second (until then its libraries are walked by frame
// pointers), every 250 ms up to 5 s, every 5 s after. A new process is
// sampled once its mappings are described. Its perf map is re-read at most
// once a second.
//
// Everything read here belongs to the processes (their maps, the files
// they map, their perf maps): each process's refresh runs under the
// reads runner's deadline, so a file that blocks (a FUSE server that does
// not answer) costs at most that once, and the drain, the watcher and
// scrapes never wait for it.
func (p *Profiler) refresh() {
	defer close(p.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-p.stop
		cancel()
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		case <-p.starts:
		}
		type live struct {
			pid int
			pr  *proc
		}
		var due []live
		p.mu.Lock()
		for pid, pr := range p.procs {
			age := time.Since(pr.started)
			if !pr.exited && !pr.busy && (!pr.described || age < time.Second || age < 5*time.Second && n%12 == 0 || n%250 == 0) {
				pr.busy = true
				due = append(due, live{pid, pr})
			}
		}
		p.mu.Unlock()
		for _, l := range due {
			path := procfs.Dir(p.opts.ProcRoot, l.pid)
			err := p.reads.Do(ctx, path, func() error { p.refreshProc(l.pid, l.pr); return nil })
			switch r := safeopen.ReasonOf(err); {
			case err == nil:
			case r == safeopen.Busy:
				// Not run: every slot is held by stuck reads.
				p.mu.Lock()
				l.pr.busy = false
				p.mu.Unlock()
			case r == safeopen.Timeout:
				// Still running; it clears busy when (if ever) it ends.
				if ctx.Err() == nil {
					p.opts.Files.Record("profiled process's files", path, err)
				}
			default:
				p.opts.Logger.Warn("profiler refresh", "pid", l.pid, "err", err)
			}
		}
	}
}

// refreshProc re-reads a process's mappings and perf map; a reads runner
// runs it.
func (p *Profiler) refreshProc(pid int, pr *proc) {
	defer func() {
		p.mu.Lock()
		pr.busy = false
		p.mu.Unlock()
	}()
	maps, err := readMaps(p.opts.ProcRoot, pid)
	if err != nil {
		return
	}
	p.mu.Lock()
	same := pr.described && sameMaps(pr.maps, maps)
	p.mu.Unlock()
	if !same {
		// Its tables are charged to its real user, read as it is now
		// (a service dropping root is charged as the user it became).
		uid, err := procfs.UID(p.opts.ProcRoot, pid)
		if err != nil {
			uid = unknownUID // gone already: charged as a user, never as root
		}
		if err := p.unw.describe(pid, uid, maps); err != nil {
			p.opts.Logger.Debug("profiler unwind tables", "pid", pid, "err", err)
		}
		p.mu.Lock()
		pr.maps, pr.described = maps, true
		if !pr.exited && !pr.sampling && !p.closed {
			if err := p.coll.Maps["pids"].Put(uint32(pid), uint32(pr.target)); err == nil {
				pr.sampling = true
				p.offCPUFollow(pid, pr.target)
			}
		}
		// It may have exited while being described: its rows go now,
		// unless the pid is already another profiled process's.
		gone := pr.exited && (p.procs[pid] == nil || p.procs[pid] == pr)
		p.mu.Unlock()
		if gone {
			p.unw.forget(pid)
		}
	}
	// An interpreter is named once it has initialized (its symbol table
	// loaded by describe): checked at each refresh until settled.
	p.py.check(pid, maps)
	p.mu.Lock()
	perfDue := time.Since(pr.perfAt) >= time.Second
	p.mu.Unlock()
	if !perfDue {
		return
	}
	syms, cut, err := readPerfMap(p.opts.ProcRoot, pid)
	if cut {
		p.perfCut.Inc()
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.opts.Files.Record("perf map", filepath.Join(procfs.Dir(p.opts.ProcRoot, pid), "root", "tmp", fmt.Sprintf("perf-%d.map", pid)), err)
	}
	p.mu.Lock()
	// A JIT writes its map once it runs: until the file exists it is
	// looked for at every refresh (a missing file costs one failed open),
	// so the first samples of its code are named; once read, or refused,
	// at most once a second.
	if !errors.Is(err, fs.ErrNotExist) {
		pr.perfAt = time.Now()
	}
	if err == nil {
		pr.perf = syms
	}
	p.mu.Unlock()
}

// Drain reads and clears the sample counts (and the off-CPU times),
// symbolizes the stacks and hands each target's profiles to the sink.
func (p *Profiler) Drain() error {
	start := time.Now()
	cpu, err := p.drainStacks(p.coll.Maps["counts"], p.coll.Maps["stacks"])
	if err != nil {
		return fmt.Errorf("reading samples: %w", err)
	}
	p.samples.Add(float64(cpu.kept))
	p.drops.Add(float64(cpu.lost))
	p.truncated.Add(float64(cpu.truncated))
	for _, g := range cpu.groups {
		t := p.opts.Targets[g.target]
		p.opts.Sink.ObserveProfile(rules.Sampled(t.App+".cpu", g.tags(t), "samples", uint32(p.opts.Frequency), g.samples()))
	}
	if p.off != nil {
		if err := p.drainOffCPU(); err != nil {
			return err
		}
	}
	gone := map[int]bool{}
	p.mu.Lock()
	for pid, pr := range p.procs {
		if pr.exited && !pr.busy {
			delete(p.procs, pid)
			gone[pid] = true
		}
	}
	p.mu.Unlock()
	p.py.drop(gone)
	p.reconcile()
	p.drains.Inc()
	p.drainTime.Set(time.Since(start).Seconds())
	return nil
}

// stackGroup is one process's drained stacks.
type stackGroup struct {
	target int
	pid    int
	comm   string
	stacks map[string]uint64
}

// tags are the group's profile tags: pid, comm and the target's.
func (g *stackGroup) tags(t Target) map[string]string {
	tags := map[string]string{"pid": strconv.Itoa(g.pid), "comm": g.comm}
	for k, v := range t.Tags {
		tags[k] = v
	}
	return tags
}

func (g *stackGroup) samples() []rules.Sample {
	samples := make([]rules.Sample, 0, len(g.stacks))
	for st, n := range g.stacks {
		samples = append(samples, rules.Sample{Stack: st, Value: n})
	}
	return samples
}

// drained is what drainStacks read: stacks by pid, and the values kept,
// lost (no stack) and truncated (root frames missing).
type drained struct {
	groups                map[int]*stackGroup
	kept, lost, truncated uint64
}

// drainStacks reads and clears a map of sample keys to values and the
// kernel stacks they name, and symbolizes them by process.
func (p *Profiler) drainStacks(counts, stacks *ebpf.Map) (drained, error) {
	out := drained{groups: map[int]*stackGroup{}}
	var keys []sampleKey
	var vals []uint64
	var k sampleKey
	var v uint64
	it := counts.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	if err := it.Err(); err != nil {
		return out, err
	}
	// One BPF_MAP_DELETE_BATCH for the drained keys; kernels without
	// batch operations (before 5.6) delete them one by one.
	if len(keys) > 0 {
		if _, err := counts.BatchDelete(keys, nil); err != nil {
			for _, k := range keys {
				_ = counts.Delete(k)
			}
		}
	}
	usedStacks := map[int32]bool{}
	addrs := make([]uint64, 127)
	p.mu.Lock()
	procs := make(map[int]*proc, len(p.procs))
	maps := make(map[int][]procfs.Mapping, len(p.procs))
	perfs := make(map[int][]perfSym, len(p.procs))
	for pid, pr := range p.procs {
		procs[pid] = pr
		maps[pid] = pr.maps
		perfs[pid] = pr.perf
	}
	p.mu.Unlock()
	for i, k := range keys {
		pr := procs[int(k.PID)]
		if pr == nil {
			continue
		}
		var frames []string
		if k.Flags&sampleTruncated != 0 {
			out.truncated += vals[i]
		}
		if k.Frames > 0 {
			// Callers' return addresses point after their call:
			// name the call.
			ret := append([]uint64(nil), userFrames(&keys[i])...)
			for j := 1; j < len(ret); j++ {
				if ret[j]&pyTag == 0 {
					ret[j]--
				}
			}
			user := p.frames(ret, func(a uint64) string {
				if a&pyTag != 0 {
					return p.py.name(int(k.PID), a)
				}
				return p.sym.user(maps[int(k.PID)], perfs[int(k.PID)], a)
			})
			frames = append(frames, user...)
		} else {
			out.lost += vals[i]
		}
		if k.KernelStack >= 0 {
			usedStacks[k.KernelStack] = true
			if err := stacks.Lookup(uint32(k.KernelStack), &addrs); err == nil {
				frames = append(frames, p.frames(addrs, p.kernelFrame)...)
			}
		}
		if len(frames) == 0 {
			continue
		}
		g := out.groups[int(k.PID)]
		if g == nil {
			g = &stackGroup{target: pr.target, pid: int(k.PID), comm: pr.comm, stacks: map[string]uint64{}}
			out.groups[int(k.PID)] = g
		}
		g.stacks[strings.Join(frames, ";")] += vals[i]
		out.kept += vals[i]
	}
	for id := range usedStacks {
		_ = stacks.Delete(uint32(id))
	}
	return out, nil
}

// unknownUID charges the tables of a process whose user could not be read.
const unknownUID = ^uint32(0)

// reconcile is the backstop for exits the profiler did not see (lost
// events, a pid described as it exited): processes that no longer run are
// marked exited (their symbols go after the next drain), and rows and
// symbols held for pids the profiler no longer follows are released. The
// pids holding tables are listed first: a process started after the
// listing is not among them, so it is not taken for gone.
func (p *Profiler) reconcile() {
	rowPIDs, symPIDs := p.unw.pids(), p.sym.pids()
	p.mu.Lock()
	running := make(map[int]bool, len(p.procs))
	for pid, pr := range p.procs {
		if !pr.exited && pr.startTime != 0 && !procfs.Alive(p.opts.ProcRoot, pid, pr.startTime) {
			pr.exited, pr.sampling = true, false
			if !p.closed {
				_ = p.coll.Maps["pids"].Delete(uint32(pid))
			}
		}
		running[pid] = !pr.exited
	}
	p.mu.Unlock()
	for _, pid := range rowPIDs {
		if !running[pid] {
			p.unw.forget(pid)
		}
	}
	for _, pid := range symPIDs {
		if _, followed := running[pid]; !followed {
			p.sym.forget(pid)
		}
	}
}

// frames turns a leaf-first address list into root-first names.
func (p *Profiler) frames(addrs []uint64, name func(uint64) string) []string {
	n := 0
	for n < len(addrs) && addrs[n] != 0 {
		n++
	}
	out := make([]string, 0, n)
	for i := n - 1; i >= 0; i-- {
		out = append(out, name(addrs[i]))
	}
	return out
}

func (p *Profiler) kernelFrame(a uint64) string {
	if name, ok := p.opts.Kernel(a); ok {
		return name
	}
	return fmt.Sprintf("[kernel]+0x%x", a)
}

// Close stops sampling and releases everything.
func (p *Profiler) Close() error {
	p.stopOnce.Do(func() { close(p.stop); <-p.done })
	for _, u := range p.unsubs {
		u()
	}
	p.unsubs = nil
	if p.events != nil {
		p.events.Close()
		p.events = nil
	}
	p.off.close()
	// Deliveries and reads still under way (a stuck one may end later)
	// check closed under these locks before touching the maps.
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.unw.close()
	if p.coll != nil {
		p.coll.Close()
		p.coll = nil
	}
	return nil
}

// Describe implements prometheus.Collector.
func (p *Profiler) Describe(ch chan<- *prometheus.Desc) {
	p.samples.Describe(ch)
	p.drops.Describe(ch)
	p.truncated.Describe(ch)
	p.perfCut.Describe(ch)
	for _, d := range p.tables.all() {
		ch <- d
	}
	p.drains.Describe(ch)
	p.drainTime.Describe(ch)
	ch <- p.processes
	p.py.interpreters.Describe(ch)
	p.off.describe(ch)
}

// Collect implements prometheus.Collector.
func (p *Profiler) Collect(ch chan<- prometheus.Metric) {
	p.samples.Collect(ch)
	p.drops.Collect(ch)
	p.truncated.Collect(ch)
	p.perfCut.Collect(ch)
	d, u, sy := p.tables, p.unw.stats(), p.sym.stats()
	ch <- prometheus.MustNewConstMetric(d.unwindRows, prometheus.GaugeValue, float64(u.used), "used")
	ch <- prometheus.MustNewConstMetric(d.unwindRows, prometheus.GaugeValue, float64(u.free), "free")
	ch <- prometheus.MustNewConstMetric(d.unwindFiles, prometheus.GaugeValue, float64(u.files))
	ch <- prometheus.MustNewConstMetric(d.symbolBytes, prometheus.GaugeValue, float64(sy.bytes))
	ch <- prometheus.MustNewConstMetric(d.symbolFiles, prometheus.GaugeValue, float64(sy.files))
	for _, r := range skipReasons {
		ch <- prometheus.MustNewConstMetric(d.unwindSkipped, prometheus.CounterValue, float64(u.skipped[r]), string(r))
		ch <- prometheus.MustNewConstMetric(d.symbolSkipped, prometheus.CounterValue, float64(sy.skipped[r]), string(r))
	}
	p.drains.Collect(ch)
	p.drainTime.Collect(ch)
	apps := map[string]int{}
	for i, n := range p.processCounts() {
		apps[p.opts.Targets[i].App] += n
	}
	for app, n := range apps {
		ch <- prometheus.MustNewConstMetric(p.processes, prometheus.GaugeValue, float64(n), app)
	}
	p.py.interpreters.Collect(ch)
	p.off.collect(ch)
}

// processCounts is the number of running processes each target selects.
func (p *Profiler) processCounts() []int {
	n := make([]int, len(p.opts.Targets))
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.procs {
		if !pr.exited {
			n[pr.target]++
		}
	}
	return n
}

// Status shows the targets on the landing page, the processes each
// selects now, and what became of the samples and interpreters met.
func (p *Profiler) Status(st *web.Status) {
	ps := &web.ProfilerStatus{
		Samples:   metricValue(p.samples),
		Lost:      metricValue(p.drops),
		Truncated: metricValue(p.truncated),
	}
	for i, n := range p.processCounts() {
		t := p.opts.Targets[i]
		ps.Targets = append(ps.Targets, web.ProfileTargetStatus{App: t.App, Selector: t.Selector.String(), OffCPU: t.OffCPU, Processes: n})
	}
	ch := make(chan prometheus.Metric)
	go func() { p.py.interpreters.Collect(ch); close(ch) }()
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil {
			continue
		}
		l := map[string]string{}
		for _, lp := range d.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		ps.Python = append(ps.Python, fmt.Sprintf("%s %s: %d", l["version"], l["result"], uint64(d.GetCounter().GetValue())))
	}
	slices.Sort(ps.Python)
	st.Profiler = ps
}

// metricValue is a counter's value.
func metricValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if c.Write(&m) != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// sameMaps reports whether two reads of a process's executable mappings
// are the same.
func sameMaps(a, b []procfs.Mapping) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
