// Package userspace attaches uprobes, uretprobes and USDT probes to the
// processes a config selects, as they start and exit.
//
// A probe is placed once per file (binary or shared library, identified by
// device and inode), not once per process, and stays for as long as the
// config is loaded. The kernel decides which processes count: the process
// watcher's exec tracepoint selects new processes before their first
// instruction (see package targets), and a dispatcher attached in place of
// the user's program tail-calls it only for selected processes. A new
// executable is probed while its first selected process is held at exec,
// so no call is missed however short the process lives. Selectors only
// userspace can evaluate (cmdline) select the process once its exec event
// is read. When the tracepoints are unavailable, each process gets its own
// attachment restricted to its pid instead.
package userspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/attach"
	"github.com/probe-exporter/probe_exporter/internal/caps"
	"github.com/probe-exporter/probe_exporter/internal/safeopen"
	"github.com/probe-exporter/probe_exporter/loader"
	"github.com/probe-exporter/probe_exporter/targets"
	"github.com/probe-exporter/probe_exporter/usdt"
)

// TargetPIDsMap is the optional hash map (u32 tgid -> u8) a program may
// declare to have the exporter fill it with the selected processes.
const TargetPIDsMap = "target_pids"

// PIDDropper forgets map entries of an exited process (no stale series).
type PIDDropper interface {
	DropPID(config string, pid int)
}

// Attacher implements loader.UserspaceAttacher.
type Attacher struct {
	watcher *targets.Watcher
	logger  *slog.Logger
	dropper PIDDropper
	// reads runs each Start (opening and reading the process's files,
	// placing probes) under a deadline: the watcher waits for it, holding
	// the process at exec, and a file can be made to block.
	reads     *safeopen.Runner
	untrusted *safeopen.Stats

	mu    sync.Mutex
	progs map[*loader.Program]*progState
	// usdt holds one spec allocator per object: the programs of an object
	// share its __bpf_usdt_specs map.
	usdt map[*ebpf.Map]*usdt.Attacher

	matched *prometheus.Desc
	enabled *prometheus.Desc
	// attaches counts processes attached to, detaches those let go.
	attaches, detaches prometheus.Counter
	// races counts processes gone before their probes could be placed.
	races prometheus.Counter
	late  prometheus.Histogram
	files *prometheus.Desc
	lost  *prometheus.Desc
	held  *prometheus.Desc
}

// Bounds of a Start: placing a process's probes waits at most
// startTimeout for its files (the process is then let go, uncounted until
// they are read); at most startSlots Starts run at once, stuck ones
// included.
const (
	startTimeout = 10 * time.Second
	startSlots   = 4
)

// New returns an attacher following processes with w; files counts the
// files of selected processes refused or not read in time (nil: not
// counted).
func New(w *targets.Watcher, dropper PIDDropper, files *safeopen.Stats, logger *slog.Logger) *Attacher {
	return &Attacher{
		watcher:   w,
		logger:    logger,
		dropper:   dropper,
		reads:     safeopen.NewRunner(startSlots, startTimeout),
		untrusted: files,
		progs:     map[*loader.Program]*progState{},
		usdt:      map[*ebpf.Map]*usdt.Attacher{},
		matched:   prometheus.NewDesc("probe_exporter_targets_matched", "Processes a config's targets select now.", []string{"config"}, nil),
		enabled:   prometheus.NewDesc("probe_exporter_enabled_programs", "Programs attached to a process (ebpf-userspace-exporter's view).", []string{"config", "program", "pid"}, nil),
		attaches: prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_exporter_userspace_attaches_total",
			Help: "Programs attached to a selected process as it started."}),
		detaches: prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_exporter_userspace_detaches_total",
			Help: "Programs detached from a selected process as it exited."}),
		races: prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_exporter_userspace_attach_races_total",
			Help: "Selected processes that exited (or whose file vanished) before their probes could be placed."}),
		late: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "probe_exporter_userspace_late_select_seconds",
			Help:    "Exec to probes counting, for processes only userspace can select (cmdline selectors); the kernel selects the others at exec.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		files: prometheus.NewDesc("probe_exporter_userspace_files", "Files (device and inode) a program's probes are placed in.", []string{"config", "program"}, nil),
		lost:  prometheus.NewDesc("probe_exporter_targets_events_lost_total", "Process events the kernel could not queue (ring buffer full); a rescan follows.", nil, nil),
		held:  prometheus.NewDesc("probe_exporter_targets_held_total", "Processes held at exec until the probes of their new executable were placed.", nil, nil),
	}
}

// progState follows the attachments of one program.
type progState struct {
	obj    *loader.Object
	prog   *loader.Program
	filter *ebpf.Map
	usdt   *usdt.Attacher

	mu sync.Mutex
	// dispatch is built at the first process the kernel selects.
	dispatch *dispatcher
	// files holds the per-file attachments (dispatcher or, without a
	// kernel selection, filter map mode), kept while the config is loaded.
	files map[fileID]*fileAttach
	// pids maps a selected process to its own attachment, if any (no
	// kernel selection and no filter map).
	pids  map[int]*pidAttach
	unsub func()
	// closed is set by closeAll: a placement finishing later undoes
	// itself.
	closed bool
}

type fileID = targets.FileKey

type fileAttach struct {
	closer io.Closer // nil when placing the probes failed (or not yet done)
	users  int
}

type pidAttach struct {
	file   fileID
	closer io.Closer // per-process attachment
}

// multiCloser closes several links as one attachment.
type multiCloser []link.Link

func (m multiCloser) Close() error {
	var errs []error
	for _, l := range m {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// Attach implements loader.UserspaceAttacher.
func (a *Attacher) Attach(ctx context.Context, obj *loader.Object, prog *loader.Program) error {
	st := &progState{
		obj:    obj,
		prog:   prog,
		filter: obj.Map(TargetPIDsMap),
		files:  map[fileID]*fileAttach{},
		pids:   map[int]*pidAttach{},
	}
	if prog.Attach.Kind == config.AttachUSDT {
		// Programs that read no arguments need no specs map; those using
		// <bpf/usdt.bpf.h> have libbpf's.
		specs := obj.Map("__bpf_usdt_specs")
		a.mu.Lock()
		if a.usdt[specs] == nil {
			a.usdt[specs] = usdt.NewAttacher(specs, obj.Map("__bpf_usdt_ip_to_spec_id"))
			prog.AddAttachment(closerFunc(func() error {
				a.mu.Lock()
				delete(a.usdt, specs)
				a.mu.Unlock()
				return nil
			}))
		}
		st.usdt = a.usdt[specs]
		a.mu.Unlock()
	}
	sel := obj.Config.Attachments
	if sel.Empty() {
		// No process selection: attach to the file for every process.
		if prog.Attach.Path == "" {
			return fmt.Errorf("%s %s names no binary: give attachments (binary_name, exe, cmdline, cgroup or pid) or a path in the section", prog.Attach.Kind, prog.Attach.Target)
		}
		return a.attachFile(st, prog.Attach.Path, "", 0)
	}
	if err := sel.Validate(); err != nil {
		return fmt.Errorf("attachments: %w", err)
	}
	a.mu.Lock()
	a.progs[prog] = st
	a.mu.Unlock()
	opts := targets.SubscribeOptions{ProbesExe: prog.Attach.Path == ""}
	unsub, err := a.watcher.SubscribeWith(*sel, opts, func(ev targets.Event) {
		switch ev.Kind {
		case targets.Start:
			t0 := time.Now()
			err := a.reads.Do(context.Background(), filepath.Dir(ev.Process.Root), func() error { return a.start(st, ev) })
			if err != nil {
				if errors.Is(err, errGone) {
					a.races.Inc()
					return
				}
				if a.untrusted.Record("probed file", fileName(ev.Process, prog.Attach.Path), err) {
					return
				}
				a.logger.Warn("attach to process failed", "config", obj.Config.Name, "program", prog.Name, "pid", ev.Process.PID, "comm", ev.Process.Comm, "err", err)
				return
			}
			if ev.Late {
				a.late.Observe((ev.Delay + time.Since(t0)).Seconds())
			}
			a.logger.Debug("attached to process", "config", obj.Config.Name, "program", prog.Name, "pid", ev.Process.PID, "held", ev.Held, "took", time.Since(t0))
		case targets.Exit:
			a.exit(st, ev.Process.PID)
		}
	})
	if err != nil {
		a.mu.Lock()
		delete(a.progs, prog)
		a.mu.Unlock()
		return fmt.Errorf("following processes: %w", err)
	}
	st.unsub = unsub
	prog.AddAttachment(closerFunc(func() error {
		unsub()
		a.mu.Lock()
		delete(a.progs, prog)
		a.mu.Unlock()
		st.closeAll()
		return nil
	}))
	return nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// errGone marks a process (or its file) that vanished before its probes
// could be placed: a race counted, not logged.
var errGone = errors.New("process gone")

// fileFor opens the file a probe goes into for process p: the section's
// path (a library through the process's mappings), or the process's own
// executable when the config names none (ebpf-userspace-exporter's usdt: and uprobes:).
// The executable is reached through /proc/PID/exe, which names the very
// file the process runs, in a container too; a mapped library through
// /proc/PID/map_files; any other path inside the process's root. Every
// one is opened with safeopen: a regular file, opened without blocking.
func fileFor(p targets.Process, name string) (*safeopen.File, error) {
	procRoot := filepath.Dir(p.Dir())
	if name == "" {
		if p.Exe == "" {
			return nil, errGone
		}
		return safeopen.Exe(procRoot, p.PID, safeopen.Rules{})
	}
	// The config's path may be a distribution's symlink
	// (libc.so.6 -> libc-2.31.so): followed, inside the root.
	inRoot := safeopen.Rules{FollowLast: true}
	if filepath.IsAbs(name) {
		return safeopen.InRoot(p.Root, name, inRoot)
	}
	maps, err := p.Mappings()
	if errors.Is(err, os.ErrNotExist) {
		return nil, errGone
	}
	if err == nil {
		for _, m := range maps {
			if !m.Executable() || !m.IsFile() {
				continue
			}
			if base := filepath.Base(m.Path); base == name || strings.HasPrefix(base, name) {
				return safeopen.Mapped(procRoot, p.PID, m, safeopen.Rules{})
			}
		}
		if filepath.Base(p.Exe) == name {
			return safeopen.Exe(procRoot, p.PID, safeopen.Rules{})
		}
	}
	path, err := loader.ResolveBinary(name, p.Root)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(p.Root, path)
	if err != nil {
		return nil, err
	}
	return safeopen.InRoot(p.Root, rel, inRoot)
}

// fileName names the file of process p that name designates, for logs.
func fileName(p targets.Process, name string) string {
	if name == "" {
		return p.ExePath()
	}
	return p.HostPath(name)
}

// gone reports whether err says the process or file no longer exists.
func gone(err error) bool {
	return errors.Is(err, errGone) || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH)
}

// start places the probes of a process that started. Its files are opened
// and read, and probes placed, without st.mu held: a read that blocks
// holds up only this Start (which runs under a deadline), never exits or
// scrapes.
func (a *Attacher) start(st *progState, ev targets.Event) error {
	p := ev.Process
	f, err := fileFor(p, st.prog.Attach.Path)
	if err != nil {
		if gone(err) {
			return errGone
		}
		return err
	}
	defer f.Close()
	id := ev.Exe
	if st.prog.Attach.Path != "" || id == (fileID{}) {
		id = fileID{Dev: f.Dev(), Ino: f.Stat.Ino}
	}
	st.mu.Lock()
	if _, ok := st.pids[p.PID]; ok || st.closed {
		st.mu.Unlock()
		return nil
	}
	pa := &pidAttach{file: id}
	var prog *ebpf.Program // placed once per file
	switch {
	case ev.Selected.Map != nil:
		// The kernel selects: one dispatcher per program, placed once
		// per file.
		if st.dispatch == nil {
			d, err := newDispatcher(st.prog.Program, st.prog.AttachType, ev.Selected, st.filter)
			if err != nil {
				st.mu.Unlock()
				return err
			}
			st.dispatch = d
		}
		prog = st.dispatch.prog
	case st.filter != nil:
		prog = st.prog.Program
	}
	placing := false
	if prog != nil {
		if fa, ok := st.files[id]; ok {
			fa.users++
		} else {
			st.files[id] = &fileAttach{users: 1}
			placing = true
		}
	}
	st.mu.Unlock()

	switch {
	case placing:
		c, err := a.place(st, prog, f, 0)
		if err != nil && gone(err) {
			a.release(st, id)
			return errGone
		}
		if err != nil {
			a.logger.Warn("placing probes in file failed; its processes are not counted", "config", st.obj.Config.Name, "program", st.prog.Name, "file", f.Name(), "err", err)
		}
		st.mu.Lock()
		if fa := st.files[id]; fa != nil && !st.closed {
			fa.closer = c
		} else if c != nil {
			_ = c.Close()
		}
		st.mu.Unlock()
	case prog == nil:
		c, err := a.place(st, st.prog.Program, f, p.PID)
		if err != nil {
			if gone(err) {
				return errGone
			}
			return err
		}
		pa.closer = c
	}
	if prog == st.prog.Program && st.filter != nil {
		if err := st.filter.Put(uint32(p.PID), uint8(1)); err != nil {
			return fmt.Errorf("adding pid %d to %s: %w", p.PID, TargetPIDsMap, err)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || !p.Alive() {
		// Unloaded, or the process exited (its Exit may have come while
		// its files were read): nothing of it is kept.
		if pa.closer != nil {
			_ = pa.closer.Close()
		}
		return nil
	}
	st.pids[p.PID] = pa
	a.attaches.Inc()
	return nil
}

// release undoes a file placement that found the file gone.
func (a *Attacher) release(st *progState, id fileID) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if fa := st.files[id]; fa != nil {
		if fa.users--; fa.users <= 0 && fa.closer == nil {
			delete(st.files, id)
		}
	}
}

func (a *Attacher) exit(st *progState, pid int) {
	st.mu.Lock()
	pa, ok := st.pids[pid]
	if ok {
		delete(st.pids, pid)
		if pa.closer != nil {
			_ = pa.closer.Close()
		}
		if st.filter != nil {
			_ = st.filter.Delete(uint32(pid))
		}
		if fa := st.files[pa.file]; fa != nil {
			fa.users--
			if fa.users <= 0 && st.dispatch == nil && fa.closer != nil {
				// Filter map mode: the next process of the file is
				// attached as it is found anyway.
				_ = fa.closer.Close()
				delete(st.files, pa.file)
			}
		}
	}
	if !ok && st.filter != nil {
		_ = st.filter.Delete(uint32(pid))
	}
	st.mu.Unlock()
	if ok {
		a.detaches.Inc()
	}
	// Also for a process userspace never saw start: the kernel selected
	// it and its probes counted.
	if a.dropper != nil {
		a.dropper.DropPID(st.obj.Config.Name, pid)
	}
}

func (st *progState) closeAll() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	for pid, pa := range st.pids {
		if pa.closer != nil {
			_ = pa.closer.Close()
		}
		delete(st.pids, pid)
	}
	for id, fa := range st.files {
		if fa.closer != nil {
			_ = fa.closer.Close()
		}
		delete(st.files, id)
	}
	if st.dispatch != nil {
		_ = st.dispatch.Close()
		st.dispatch = nil
	}
}

// attachFile attaches to one file for every process (no selection).
func (a *Attacher) attachFile(st *progState, name, root string, pid int) error {
	path, err := loader.ResolveBinary(name, root)
	if err != nil {
		return err
	}
	f, err := safeopen.Configured(path, safeopen.Rules{})
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := a.place(st, st.prog.Program, f, pid)
	if err != nil {
		return err
	}
	st.prog.AddAttachment(c)
	return nil
}

// place attaches prog (the user's program or its dispatcher) to the open
// file f, through its /proc/self/fd path (the very file opened, whatever
// its name now holds); pid > 0 restricts it to that process. Errors name
// the file by its name.
func (a *Attacher) place(st *progState, prog *ebpf.Program, f *safeopen.File, pid int) (io.Closer, error) {
	at := st.prog.Attach
	switch at.Kind {
	case config.AttachUSDT:
		links, err := st.usdt.Attach(prog, f.ProcPath(), at.Provider, at.Target, pid)
		if err != nil {
			return nil, caps.Explain(f.Named(err), caps.SysAdmin, "uprobes")
		}
		return multiCloser(links), nil
	case config.AttachUprobe, config.AttachUretprobe:
		l, err := attach.Uprobe{Path: f.ProcPath(), Symbol: at.Target, Offset: at.Offset, Return: at.Kind == config.AttachUretprobe, PID: pid}.Attach(prog)
		return l, f.Named(err)
	}
	return nil, fmt.Errorf("attach type %q is not a userspace probe", at.Kind)
}

// Describe implements prometheus.Collector (unchecked).
func (a *Attacher) Describe(chan<- *prometheus.Desc) {}

// Collect reports matched processes and enabled programs per pid.
func (a *Attacher) Collect(ch chan<- prometheus.Metric) {
	a.attaches.Collect(ch)
	a.detaches.Collect(ch)
	a.races.Collect(ch)
	a.late.Collect(ch)
	ws := a.watcher.Stats()
	ch <- prometheus.MustNewConstMetric(a.lost, prometheus.CounterValue, float64(ws.Lost))
	ch <- prometheus.MustNewConstMetric(a.held, prometheus.CounterValue, float64(ws.Held))
	a.mu.Lock()
	states := make([]*progState, 0, len(a.progs))
	for _, st := range a.progs {
		states = append(states, st)
	}
	a.mu.Unlock()
	matched := map[string]map[int]bool{}
	for _, st := range states {
		name := st.obj.Config.Name
		if matched[name] == nil {
			matched[name] = map[int]bool{}
		}
		st.mu.Lock()
		for pid := range st.pids {
			matched[name][pid] = true
			ch <- prometheus.MustNewConstMetric(a.enabled, prometheus.GaugeValue, 1, name, st.prog.Name, fmt.Sprint(pid))
		}
		ch <- prometheus.MustNewConstMetric(a.files, prometheus.GaugeValue, float64(len(st.files)), name, st.prog.Name)
		st.mu.Unlock()
	}
	for name, pids := range matched {
		ch <- prometheus.MustNewConstMetric(a.matched, prometheus.GaugeValue, float64(len(pids)), name)
	}
}
