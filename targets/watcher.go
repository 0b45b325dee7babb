package targets

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/procfs"
)

//go:embed procevents.bpf.o
var procEventsObject []byte

// EventKind says whether a process started or exited.
type EventKind int

// Event kinds.
const (
	Start EventKind = iota + 1
	Exit
)

// Event is a selected process starting (or found at subscription) or
// exiting.
type Event struct {
	Kind    EventKind
	Process Process
	// Exe identifies the file the process executes as uprobes see it (the
	// real file under overlayfs); zero when unknown.
	Exe FileKey
	// Held is set when the process is stopped at its exec until every
	// subscriber has returned: probes placed now see its first instruction.
	Held bool
	// Selected tells how the kernel selects the process (Start only).
	Selected Selected
	// Late is set when userspace selected the process after reading its
	// exec event (a cmdline selector) rather than the kernel at exec;
	// Delay is then the time from exec to this delivery, during which the
	// process was not counted.
	Late  bool
	Delay time.Duration
}

// FileKey identifies a file: device (kernel encoding, major<<20|minor) and
// inode.
type FileKey struct{ Dev, Ino uint64 }

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	ProcRoot string
	// CgroupRoot is the cgroup v2 mount (default: found in mountinfo).
	CgroupRoot string
	// PollInterval rescans /proc: the only discovery when the exec/exit
	// tracepoints cannot be used, a safety net for lost events otherwise.
	PollInterval time.Duration
	// NoBPF forces polling (tests of the fallback).
	NoBPF  bool
	Logger *slog.Logger
}

// Watcher follows processes for subscriptions. With the exec, exit and
// fork tracepoints (the normal case) selection happens in the kernel: see
// Selected. Nothing is loaded and nothing runs until the first
// subscription, and everything is unloaded again after the last one.
type Watcher struct {
	opts WatcherOptions

	mu     sync.Mutex
	subs   map[int]*subscription
	nextID int
	slots  [maxSlots]*slot
	k      *kernel // nil when not loaded
	// noBPF is set once loading the tracepoints failed: poll from then on.
	noBPF bool
	wake  chan struct{}
	// stats sums the counts of kernels unloaded; lostSeen is the loaded
	// one's lost count at the last rescan.
	stats    Stats
	lostSeen uint64
}

// Stats are counts since the watcher started.
type Stats struct {
	// Lost counts process events the kernel could not queue (ring full).
	Lost uint64
	// Held counts processes stopped at exec until their probes were placed.
	Held uint64
}

type subscription struct {
	sel  config.Selector
	opts SubscribeOptions
	fn   func(Event)
	slot int
	mu   sync.Mutex // orders deliveries
	// pids this subscription has delivered Start for, with start time.
	pids map[int]uint64
	// gone are pids userspace delivered Exit for, awaiting the kernel's
	// (with the tracepoints only).
	gone   map[int]time.Time
	kernel bool
	logger *slog.Logger
}

// SubscribeOptions say how a subscriber uses the processes.
type SubscribeOptions struct {
	// ProbesExe holds a newly started selected process at exec, when its
	// executable is not yet known to this subscription, until the Start
	// callback returns (the subscriber probes the executable itself).
	ProbesExe bool
}

// NewWatcher returns a watcher; it loads nothing until a subscription needs
// it.
func NewWatcher(opts WatcherOptions) (*Watcher, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.CgroupRoot == "" {
		opts.CgroupRoot = Cgroup2Mount()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{opts: opts, subs: map[int]*subscription{}, noBPF: opts.NoBPF, wake: make(chan struct{}, 1)}, nil
}

// Polling reports whether discovery falls back to polling /proc.
func (w *Watcher) Polling() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.noBPF
}

func (w *Watcher) pollInterval() time.Duration {
	if w.opts.PollInterval > 0 {
		return w.opts.PollInterval
	}
	if w.noBPF {
		return time.Second
	}
	return 30 * time.Second
}

// Run rescans while subscriptions exist (every PollInterval when polling;
// with the tracepoints only after lost events and to drop processes whose
// exit was missed) until ctx ends, then releases the tracepoints.
func (w *Watcher) Run(ctx context.Context) error {
	var tick <-chan time.Time
	var ticker *time.Ticker
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
		w.mu.Lock()
		k := w.k
		w.k = nil
		w.mu.Unlock()
		if k != nil {
			k.close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
			w.mu.Lock()
			active := len(w.subs) > 0
			w.mu.Unlock()
			switch {
			case active && ticker == nil:
				ticker = time.NewTicker(w.pollInterval())
				tick = ticker.C
			case !active && ticker != nil:
				ticker.Stop()
				ticker, tick = nil, nil
			}
		case <-tick:
			w.periodic()
		}
	}
}

func (w *Watcher) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Watcher) periodic() {
	w.mu.Lock()
	k, poll := w.k, w.noBPF
	w.mu.Unlock()
	if poll || k == nil {
		w.rescan()
		return
	}
	if lost := k.stat(statLost); lost != w.loadLost() {
		w.storeLost(lost)
		w.rescan()
		return
	}
	w.collectExited()
}

func (w *Watcher) loadLost() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lostSeen
}

func (w *Watcher) storeLost(n uint64) {
	w.mu.Lock()
	w.lostSeen = n
	w.mu.Unlock()
}

// Stats reports event counts.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	k := w.k
	st := w.stats
	w.mu.Unlock()
	if k != nil {
		st.Lost += k.stat(statLost)
		st.Held += k.stat(statHeld)
	}
	return st
}

func (w *Watcher) subscriptions() []*subscription {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*subscription, 0, len(w.subs))
	for _, s := range w.subs {
		out = append(out, s)
	}
	return out
}

// handle acts on one kernel event.
func (w *Watcher) handle(k *kernel, ev kernelEvent) {
	switch ev.kind {
	case evExit:
		w.exitSlots(int(ev.pid), ev.left)
	case evFork:
		p, err := procfs.Read(w.opts.ProcRoot, int(ev.pid))
		if err != nil {
			return // gone already: its exit event follows
		}
		// Still selected: not yet an exec of something else (whose event
		// follows and ends the selection).
		w.deliverStart(k, p, k.stillSelected(p.PID, ev.matched), FileKey{}, 0, false, 0, 0)
	case evExec, evRename:
		defer func() {
			if ev.flags&evfStopped != 0 {
				if err := unix.Kill(int(ev.pid), unix.SIGCONT); err != nil && !errors.Is(err, unix.ESRCH) {
					w.opts.Logger.Error("cannot continue a process held at exec; it stays stopped", "pid", ev.pid, "err", err)
					w.RefreshPermissions()
				}
			}
		}()
		if ev.kind == evExec && ev.flags&evfWasTracked != 0 {
			// A new image: what was selected before ends here.
			w.exitSlots(int(ev.pid), ev.left)
		}
		if ev.kind == evRename && ev.left != 0 {
			// Renamed away from the name of these slots.
			w.leaveSlots(int(ev.pid), ev.left)
		}
		if ev.matched == 0 && ev.userspace == 0 {
			return
		}
		p, err := procfs.Read(w.opts.ProcRoot, int(ev.pid))
		if err != nil {
			return
		}
		if ev.kind == evRename {
			// The name being taken: /proc may not show it yet.
			p.Comm = string(bytes.TrimRight(ev.comm[:], "\x00"))
		}
		key := FileKey{Dev: ev.dev, Ino: ev.ino}
		mask := ev.matched
		for _, s := range w.subscriptions() {
			bit := uint64(1) << s.slot
			if ev.userspace&bit != 0 && s.sel.Matches(p) {
				if k.selectPID(p.PID, s.slot) == nil {
					mask |= bit
				}
			}
		}
		w.verdicts(k, p, ev.userspace, key, ev.gen)
		w.deliverStart(k, p, mask, key, ev.gen, ev.flags&evfStopped != 0, mask&^ev.matched, sinceBoot(ev.time))
		if mask != ev.matched && !p.Alive() {
			// Exited while userspace selected it: the kernel's exit
			// came first and found nothing to report.
			w.exit(p.PID)
		}
	}
}

// deliverStart delivers Start to the subscriptions of the slots in mask and
// then records the executable (of inode generation gen) as probed for
// them. late are the slots userspace selected delay after the exec.
func (w *Watcher) deliverStart(k *kernel, p Process, mask uint64, exe FileKey, gen uint32, held bool, late uint64, delay time.Duration) {
	for _, s := range w.subscriptions() {
		bit := uint64(1) << s.slot
		if mask&bit == 0 {
			continue
		}
		s.mu.Lock()
		if _, had := s.pids[p.PID]; !had {
			s.pids[p.PID] = p.StartTime
			ev := Event{Kind: Start, Process: p, Exe: exe, Held: held, Selected: k.selectedFor(s.slot)}
			if late&bit != 0 && delay > 0 && !held {
				ev.Late, ev.Delay = true, delay
			}
			w.deliver(s, ev)
		}
		s.mu.Unlock()
	}
	if k == nil || exe == (FileKey{}) {
		return
	}
	for i := 0; i < maxSlots; i++ {
		if mask&(1<<i) != 0 {
			k.markProbed(exe, gen, i)
		}
	}

}

// verdicts records, for the slots in mask userspace evaluated p for, what
// the kernel needs to decide alone next time: whether p's executable and
// its cgroup match. Only what was read: a process gone while it was read
// has no cgroup. gen is the executable's inode generation (genAny:
// unknown).
func (w *Watcher) verdicts(k *kernel, p Process, mask uint64, exe FileKey, gen uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, sl := range w.slots {
		if sl == nil || mask&(1<<i) == 0 {
			continue
		}
		if sl.sel.Exe != "" && p.Exe != "" {
			k.exeVerdict(exe, gen, i, sl.sel.MatchExe(p.ExeInRoot))
		}
		if sl.sel.Cgroup != "" && p.Cgroup != "" {
			if id, err := cgroupID(w.opts.CgroupRoot, p.Cgroup); err == nil {
				k.cgroupVerdict(id, i, sl.sel.MatchCgroup(p.Cgroup))
			}
		}
	}
}

// exit delivers Exit for a process userspace found gone (not through the
// kernel's exit event, which may still be queued).
func (w *Watcher) exit(pid int) {
	for _, s := range w.subscriptions() {
		s.mu.Lock()
		s.exitLocked(pid, false)
		s.mu.Unlock()
	}
}

// exitSlots delivers the kernel's exit (or exec of something else) to the
// subscriptions that had pid and to those of the slots in left (the kernel
// selected the process, but it exited before userspace read its start:
// what it left in maps must go too).
func (w *Watcher) exitSlots(pid int, left uint64) {
	for _, s := range w.subscriptions() {
		s.mu.Lock()
		if _, had := s.pids[pid]; had {
			s.exitLocked(pid, true)
		} else if left&(1<<s.slot) != 0 {
			if _, done := s.gone[pid]; done {
				delete(s.gone, pid) // delivered already
			} else {
				w.deliver(s, Event{Kind: Exit, Process: Process{PID: pid}})
			}
		}
		s.mu.Unlock()
	}
}

// leaveSlots delivers Exit to the subscriptions of the slots in left only
// (a rename away from their name; others keep the process).
func (w *Watcher) leaveSlots(pid int, left uint64) {
	for _, s := range w.subscriptions() {
		if left&(1<<s.slot) == 0 {
			continue
		}
		s.mu.Lock()
		if _, had := s.pids[pid]; had {
			s.exitLocked(pid, true)
		} else if _, done := s.gone[pid]; done {
			delete(s.gone, pid)
		} else {
			// Selected in the kernel, gone before userspace read
			// its start: what it left in maps must go too.
			s.fn(Event{Kind: Exit, Process: Process{PID: pid}})
		}
		s.mu.Unlock()
	}
}

// exitLocked delivers Exit for a process s had. One found gone by
// userspace is remembered so that the kernel's exit event, which may
// still be queued, does not deliver it twice. s.mu is held.
func (s *subscription) exitLocked(pid int, byKernel bool) {
	if _, had := s.pids[pid]; !had {
		return
	}
	delete(s.pids, pid)
	if !byKernel && s.kernel {
		s.gone[pid] = time.Now()
	}
	s.deliver(s.logger, Event{Kind: Exit, Process: Process{PID: pid}})
}

// deliver calls the subscriber. A panic in it is recovered and logged:
// the watcher goes on, and a process held at exec is continued all the
// same (handle's deferred SIGCONT). Subscribers must return soon (they
// hold up every other delivery and any held process): those that read a
// process's files do so under a deadline, or off this path.
func (w *Watcher) deliver(s *subscription, ev Event) { s.deliver(w.opts.Logger, ev) }

func (s *subscription) deliver(logger *slog.Logger, ev Event) {
	defer func() {
		if p := recover(); p != nil {
			logger.Error("process watcher subscriber panicked; recovered", "pid", ev.Process.PID, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	s.fn(ev)
}

// goneFor is how long a process found gone by userspace waits for its
// kernel exit event (which never comes when it exited before userspace
// selected it).
const goneFor = time.Minute

// collectExited delivers Exit for tracked processes that are gone: their
// exit raced with userspace selecting them.
func (w *Watcher) collectExited() {
	for _, s := range w.subscriptions() {
		s.mu.Lock()
		for pid, start := range s.pids {
			if !procfs.Alive(w.opts.ProcRoot, pid, start) {
				s.exitLocked(pid, false)
			}
		}
		for pid, t := range s.gone {
			if time.Since(t) > goneFor {
				delete(s.gone, pid)
			}
		}
		s.mu.Unlock()
	}
}

// sinceBoot is the time since t, nanoseconds of CLOCK_BOOTTIME.
func sinceBoot(t uint64) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil || t == 0 {
		return 0
	}
	return time.Duration(uint64(ts.Nano()) - t)
}

// rescan reconciles every subscription with /proc: processes missed or
// gone (and pids reused) are delivered.
func (w *Watcher) rescan() {
	subs := w.subscriptions()
	if len(subs) == 0 {
		return
	}
	procs, err := w.scan()
	if err != nil {
		w.opts.Logger.Warn("scanning processes", "err", err)
		return
	}
	w.mu.Lock()
	k := w.k
	w.mu.Unlock()
	for _, s := range subs {
		w.reconcile(k, s, procs)
	}
}

func (w *Watcher) scan() (map[int]Process, error) {
	pids, err := procfs.PIDs(w.opts.ProcRoot)
	if err != nil {
		return nil, err
	}
	procs := make(map[int]Process, len(pids))
	for _, pid := range pids {
		if p, err := procfs.Read(w.opts.ProcRoot, pid); err == nil {
			procs[pid] = p
		}
	}
	return procs, nil
}

func (w *Watcher) reconcile(k *kernel, s *subscription, procs map[int]Process) {
	s.mu.Lock()
	for pid, start := range s.pids {
		p, ok := procs[pid]
		if !ok || p.StartTime != start || !s.sel.Matches(p) {
			s.exitLocked(pid, false)
		}
	}
	var found []Process
	for pid, p := range procs {
		if _, had := s.pids[pid]; !had && s.sel.Matches(p) {
			found = append(found, p)
		}
	}
	s.mu.Unlock()
	for _, p := range found {
		if k != nil {
			if err := k.selectPID(p.PID, s.slot); err != nil {
				continue
			}
		}
		exe := exeKey(p)
		gen := uint32(genAny)
		if exe != (FileKey{}) {
			gen = fileGen(filepath.Join(w.opts.ProcRoot, strconv.Itoa(p.PID), "exe"))
		}
		if k != nil {
			w.verdicts(k, p, 1<<s.slot, exe, gen)
		}
		w.deliverStart(k, p, 1<<s.slot, exe, gen, false, 0, 0)
		if k != nil && !p.Alive() {
			w.exit(p.PID)
		}
	}
}

// exeKey identifies the executable of a running process from its mappings
// (the real file under overlayfs, as the kernel's exec program sees it).
func exeKey(p Process) FileKey {
	maps, err := p.Mappings()
	if err != nil {
		return FileKey{}
	}
	for _, m := range maps {
		if m.Executable() && m.Path == p.Exe {
			return FileKey{Dev: m.Dev(), Ino: m.Inode}
		}
	}
	return FileKey{}
}

// fsIocGetVersion is FS_IOC_GETVERSION, _IOR('v', 1, long) on 64-bit
// architectures (the kernel writes an int).
const fsIocGetVersion = 0x80087601

// fileGen is the inode generation of the file at path (FS_IOC_GETVERSION:
// ext2/3/4, btrfs, ...), or genAny where the filesystem does not tell it.
func fileGen(path string) uint32 {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return genAny
	}
	defer unix.Close(fd)
	gen, err := unix.IoctlGetUint32(fd, fsIocGetVersion)
	if err != nil {
		return genAny
	}
	return gen
}

// StatKey identifies the file at path as the kernel does.
func StatKey(path string) (FileKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return FileKey{}, err
	}
	return FileKey{Dev: uint64(unix.Major(st.Dev))<<20 | uint64(unix.Minor(st.Dev)), Ino: st.Ino}, nil
}

// Subscribe delivers Start for every selected process now running and for
// each one started later, and Exit when they exit. Deliveries for one
// subscription are serialized. The returned function unsubscribes.
func (w *Watcher) Subscribe(sel config.Selector, fn func(Event)) (func(), error) {
	return w.SubscribeWith(sel, SubscribeOptions{}, fn)
}

// SubscribeWith is Subscribe with options.
func (w *Watcher) SubscribeWith(sel config.Selector, opts SubscribeOptions, fn func(Event)) (func(), error) {
	if err := sel.Validate(); err != nil {
		return nil, err
	}
	s := &subscription{sel: sel, opts: opts, fn: fn, pids: map[int]uint64{}, gone: map[int]time.Time{}, logger: w.opts.Logger}
	w.mu.Lock()
	if w.k == nil && !w.noBPF {
		k, err := loadKernel(w)
		if err != nil {
			w.opts.Logger.Warn("exec/exit tracepoints unavailable; discovering processes by polling /proc", "err", err, "interval", time.Second)
			w.noBPF = true
		} else {
			w.k, w.lostSeen = k, 0
		}
	}
	k := w.k
	if k != nil {
		_ = k.setStopUID()
		slot, err := w.acquireSlot(k, sel, opts)
		if err != nil {
			w.releaseIfIdle()
			w.mu.Unlock()
			return nil, err
		}
		s.slot = slot
		s.kernel = true
	}
	id := w.nextID
	w.nextID++
	w.subs[id] = s
	w.mu.Unlock()
	w.notify()
	procs, err := w.scan()
	if err != nil {
		w.unsubscribe(id)
		return nil, err
	}
	w.reconcile(k, s, procs)
	return func() { w.unsubscribe(id) }, nil
}

func (w *Watcher) unsubscribe(id int) {
	w.mu.Lock()
	s, ok := w.subs[id]
	if ok {
		delete(w.subs, id)
		if w.k != nil {
			w.releaseSlot(s.slot)
		}
		w.releaseIfIdle()
	}
	w.mu.Unlock()
	w.notify()
}

// releaseIfIdle unloads the tracepoints when nothing needs them. w.mu is
// held.
func (w *Watcher) releaseIfIdle() {
	if len(w.subs) > 0 || w.k == nil {
		return
	}
	k := w.k
	w.k = nil
	w.stats.Lost += k.stat(statLost)
	w.stats.Held += k.stat(statHeld)
	go k.close() // waits for the reader, which may be delivering to us
}

// RefreshPermissions re-reads whom the exporter may signal (CAP_KILL, its
// user): the kernel holds at exec only processes it can continue.
func (w *Watcher) RefreshPermissions() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.k != nil {
		if err := w.k.setStopUID(); err != nil {
			w.opts.Logger.Warn("updating which processes may be held at exec", "err", err)
		}
	}
}

// Tracked counts the processes subscriptions follow now.
func (w *Watcher) Tracked() int {
	n := 0
	for _, s := range w.subscriptions() {
		s.mu.Lock()
		n += len(s.pids)
		s.mu.Unlock()
	}
	return n
}

// Selected is what a dispatcher in front of a uprobe program needs to
// check in the kernel whether the current process is selected: the map of
// (pid, slot) pairs and the slot. Map is nil when selection runs in
// userspace (polling).
type Selected struct {
	Map  *ebpf.Map
	Slot uint32
	// PIDNamespace is the exporter's pid namespace (device in kernel
	// encoding, inode); zero when it is the initial one, where pids are
	// the kernel's tgids.
	PIDNamespace FileKey
}

var errNoSlot = errors.New("too many distinct process selectors (at most 64)")
