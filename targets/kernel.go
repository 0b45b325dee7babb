package targets

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
)

// maxSlots is the number of distinct selectors the kernel evaluates (one
// bit each in the event masks).
const maxSlots = 64

// Slot flags, as in bpf/procevents.bpf.c.
const (
	slotActive    = 1
	slotComm      = 2
	slotExe       = 4
	slotPID       = 8
	slotCgroup    = 16
	slotUserspace = 32
	slotInherit   = 64
	slotProbesExe = 128
	slotExeHint   = 256
	slotCmdline   = 512
)

// Verdicts in slot_exes and slot_cgroups.
const (
	verdictMatch   = 1
	verdictNoMatch = 2
)

// Event kinds and flags from the kernel.
const (
	evExec = 1
	evExit = 2
	evFork = 3
	// evRename: a process took a name (task_rename) that selects it
	// for some slots or leaves others.
	evRename = 4

	evfStopped    = 1
	evfWasTracked = 2
)

// Per-CPU counters of the kernel programs.
const (
	statLost = 0
	statFull = 1
	statHeld = 2
)

type kernelSlot struct {
	Flags   uint32
	_       uint32
	Comm    [16]byte
	ExeComm [16]byte
}

type pidKey struct{ PID, Slot uint32 }

type fileKey struct {
	Dev, Ino uint64
	Slot     uint32
	Gen      uint32 // the inode's generation, or genAny
}

// genAny in a verdict or probed key: made without knowing the inode's generation
// (the filesystem does not tell it to userspace); the kernel falls back to
// it when it has no verdict for the exact generation.
const genAny = 0xffffffff

type cgroupKey struct {
	ID   uint64
	Slot uint32
	_    uint32
}

type kernelSettings struct {
	StopUID uint32
	_       uint32
}

type kernelEvent struct {
	kind, pid, ppid, flags uint32
	matched, userspace     uint64
	stop                   uint64
	dev, ino               uint64
	time                   uint64 // CLOCK_BOOTTIME ns
	left                   uint64 // slots the process leaves
	gen                    uint32 // exec: the executable's inode generation
	comm                   [16]byte
}

// eventSize is the size of struct event.
const eventSize = 96

// slot is one distinct selector the kernel evaluates; subscriptions with
// the same selector and options share it.
type slot struct {
	key   string
	sel   config.Selector
	users int
}

// kernel is the loaded exec/exit/fork programs and their maps.
type kernel struct {
	coll     *ebpf.Collection
	links    []link.Link
	reader   *ringbuf.Reader
	selected *ebpf.Map
	pidns    FileKey
	done     sync.WaitGroup
	once     sync.Once

	mu sync.Mutex
	// probedSeen caches the entries of the probed map written already.
	probedSeen map[fileKey]bool
}

// loadKernel loads and attaches the programs and starts reading events.
func loadKernel(w *Watcher) (*kernel, error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(procEventsObject))
	if err != nil {
		return nil, err
	}
	k := &kernel{probedSeen: map[fileKey]bool{}}
	level, ns, err := pidNamespace(w.opts.ProcRoot)
	if err != nil {
		return nil, fmt.Errorf("pid namespace: %w", err)
	}
	if level > 0 {
		k.pidns = ns
		if err := spec.Variables["pidns_level"].Set(uint32(level)); err != nil {
			return nil, err
		}
		if err := spec.Variables["pidns_ino"].Set(uint32(ns.Ino)); err != nil {
			return nil, err
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("loading process event programs: %w", err)
	}
	k.coll = coll
	k.selected = coll.Maps["selected"]
	for prog, tp := range map[string]string{"on_exec": "sched_process_exec", "on_exit": "sched_process_exit"} {
		l, err := link.Tracepoint("sched", tp, coll.Programs[prog], nil)
		if err != nil {
			k.close()
			return nil, fmt.Errorf("tracepoint sched/%s: %w", tp, err)
		}
		k.links = append(k.links, l)
	}
	for prog, tp := range map[string]string{"on_fork": "sched_process_fork", "on_rename": "task_rename"} {
		l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[prog]})
		if err != nil {
			k.close()
			return nil, fmt.Errorf("tp_btf %s: %w", tp, err)
		}
		k.links = append(k.links, l)
	}
	if err := k.setStopUID(); err != nil {
		k.close()
		return nil, err
	}
	rd, err := ringbuf.NewReader(coll.Maps["events"])
	if err != nil {
		k.close()
		return nil, err
	}
	k.reader = rd
	k.done.Add(1)
	go func() { defer k.done.Done(); k.read(w) }()
	return k, nil
}

// pidNamespace finds the level of the exporter's pid namespace (0 for the
// initial one) and its identity.
func pidNamespace(procRoot string) (int, FileKey, error) {
	key, err := StatKey(filepath.Join(procRoot, "self/ns/pid"))
	if err != nil {
		return 0, FileKey{}, err
	}
	status, err := os.ReadFile(filepath.Join(procRoot, "self/status"))
	if err != nil {
		return 0, FileKey{}, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(l, "NSpid:"); ok {
			return len(strings.Fields(rest)) - 1, key, nil
		}
	}
	return 0, key, nil
}

// setStopUID lets the kernel stop processes the exporter can continue: any
// with CAP_KILL, else those of its own user.
func (k *kernel) setStopUID() error {
	st := kernelSettings{StopUID: uint32(os.Geteuid())}
	if hasCapKill() {
		st.StopUID = 0xffffffff
	}
	return k.coll.Maps["settings"].Put(uint32(0), st)
}

func hasCapKill() bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			var mask uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &mask); err == nil {
				return mask&(1<<unix.CAP_KILL) != 0
			}
		}
	}
	return false
}

func (k *kernel) close() {
	k.once.Do(func() {
		for _, l := range k.links {
			l.Close()
		}
		if k.reader != nil {
			// Drain what is queued (held processes are continued as
			// their events are handled), then stop.
			_ = k.reader.Flush()
			k.done.Wait()
			k.reader.Close()
		}
		k.done.Wait()
		if k.coll != nil {
			k.coll.Close()
		}
	})
}

// read handles events until the reader is closed. It blocks in the kernel
// between events: no polling.
func (k *kernel) read(w *Watcher) {
	for {
		rec, err := k.reader.Read()
		if err != nil {
			if !errors.Is(err, ringbuf.ErrClosed) && !errors.Is(err, ringbuf.ErrFlushed) {
				w.opts.Logger.Warn("reading process events", "err", err)
			}
			return
		}
		raw := rec.RawSample
		if len(raw) < eventSize {
			continue
		}
		ne := binary.NativeEndian
		ev := kernelEvent{
			kind: ne.Uint32(raw), pid: ne.Uint32(raw[4:]), ppid: ne.Uint32(raw[8:]), flags: ne.Uint32(raw[12:]),
			matched: ne.Uint64(raw[16:]), userspace: ne.Uint64(raw[24:]), stop: ne.Uint64(raw[32:]),
			dev: ne.Uint64(raw[40:]), ino: ne.Uint64(raw[48:]), time: ne.Uint64(raw[56:]), left: ne.Uint64(raw[64:]),
			gen: ne.Uint32(raw[72:]),
		}
		copy(ev.comm[:], raw[80:96])
		w.handle(k, ev)
	}
}

func (k *kernel) stat(i uint32) uint64 {
	var per []uint64
	if err := k.coll.Maps["stats"].Lookup(i, &per); err != nil {
		return 0
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

func (k *kernel) selectedFor(slot int) Selected {
	if k == nil {
		return Selected{}
	}
	return Selected{Map: k.selected, Slot: uint32(slot), PIDNamespace: k.pidns}
}

// selectPID selects a process userspace matched.
func (k *kernel) selectPID(pid, slot int) error {
	if err := k.selected.Put(pidKey{uint32(pid), uint32(slot)}, uint8(1)); err != nil {
		return err
	}
	return k.coll.Maps["tracked"].Put(uint32(pid), uint8(1))
}

// stillSelected keeps the slots of mask pid is selected in.
func (k *kernel) stillSelected(pid int, mask uint64) uint64 {
	for i := 0; i < maxSlots; i++ {
		var v uint8
		if mask&(1<<i) != 0 && k.selected.Lookup(pidKey{uint32(pid), uint32(i)}, &v) != nil {
			mask &^= 1 << i
		}
	}
	return mask
}

func (k *kernel) markProbed(f FileKey, gen uint32, slot int) {
	key := fileKey{Dev: f.Dev, Ino: f.Ino, Slot: uint32(slot), Gen: gen}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.probedSeen[key] {
		return
	}
	k.probedSeen[key] = true
	_ = k.coll.Maps["probed"].Update(key, uint8(1), ebpf.UpdateNoExist)
}

// exeVerdict records whether the file f, of inode generation gen (genAny:
// unknown), is selected for slot.
func (k *kernel) exeVerdict(f FileKey, gen uint32, slot int, match bool) {
	if f == (FileKey{}) {
		return
	}
	_ = k.coll.Maps["slot_exes"].Put(fileKey{Dev: f.Dev, Ino: f.Ino, Slot: uint32(slot), Gen: gen}, verdict(match))
}

func (k *kernel) cgroupVerdict(id uint64, slot int, match bool) {
	_ = k.coll.Maps["slot_cgroups"].Put(cgroupKey{ID: id, Slot: uint32(slot)}, verdict(match))
}

func verdict(match bool) uint8 {
	if match {
		return verdictMatch
	}
	return verdictNoMatch
}

// slotKey tells selectors apart; subscriptions with equal keys share a
// slot.
func slotKey(sel config.Selector, opts SubscribeOptions) string {
	return fmt.Sprintf("%s|%v|%v", sel.String(), sel.PIDs, opts.ProbesExe)
}

// acquireSlot finds or programs the kernel slot for sel. w.mu is held.
func (w *Watcher) acquireSlot(k *kernel, sel config.Selector, opts SubscribeOptions) (int, error) {
	key := slotKey(sel, opts)
	free := -1
	for i, s := range w.slots {
		if s != nil && s.key == key {
			s.users++
			return i, nil
		}
		if s == nil && free < 0 {
			free = i
		}
	}
	if free < 0 {
		return 0, errNoSlot
	}
	if err := w.program(k, free, sel, opts); err != nil {
		w.clearSlot(k, free)
		return 0, err
	}
	w.slots[free] = &slot{key: key, sel: sel, users: 1}
	return free, nil
}

// program writes slot i's selector into the kernel's maps: the command
// name, the pids, the executables a path or glob names on this host and
// the cgroups the regexp matches now. Executables and cgroups met later
// are learnt as userspace matches processes running them.
func (w *Watcher) program(k *kernel, i int, sel config.Selector, opts SubscribeOptions) error {
	ks := kernelSlot{Flags: slotActive}
	if sel.Comm != "" {
		ks.Flags |= slotComm
		copy(ks.Comm[:15], sel.Comm)
	}
	if sel.Cmdline != "" {
		ks.Flags |= slotUserspace
		if set, ok := cmdlinePrefilter(sel.Cmdline); ok {
			if err := k.coll.Maps["cmdline_dfa"].Put(uint32(i), set.compile()); err != nil {
				return fmt.Errorf("selector cmdline automaton: %w", err)
			}
			ks.Flags |= slotCmdline
		} else {
			w.opts.Logger.Warn("cmdline selector has no literal the kernel can look for at exec: its processes are selected after they start, and their first calls may be missed",
				"cmdline", sel.Cmdline)
		}
	}
	if len(sel.PIDs) > 0 {
		ks.Flags |= slotPID
		for _, pid := range sel.PIDs {
			if err := k.coll.Maps["slot_pids"].Put(pidKey{uint32(pid), uint32(i)}, uint8(1)); err != nil {
				return fmt.Errorf("selector pids: %w", err)
			}
		}
	} else {
		ks.Flags |= slotInherit
	}
	if opts.ProbesExe {
		ks.Flags |= slotProbesExe
	}
	if sel.Exe != "" {
		ks.Flags |= slotExe
		paths := []string{sel.Exe}
		if m, err := filepath.Glob(sel.Exe); err == nil && len(m) > 0 {
			paths = m
		}
		for _, p := range paths {
			if f, err := StatKey(p); err == nil {
				k.exeVerdict(f, fileGen(p), i, true)
			}
		}
		// An executable the kernel has no verdict on (created or
		// replaced since) is passed to userspace; when its name is
		// the selector's, the process waits for the verdict.
		if base := filepath.Base(sel.Exe); !strings.ContainsAny(base, `*?[\`) {
			ks.Flags |= slotExeHint
			copy(ks.ExeComm[:15], base)
		} else {
			w.opts.Logger.Warn("exe selector has a wildcard in its file name: the first process of a matching file created after the config loaded is selected after it starts, and its first calls may be missed; name the file literally (a wildcard in the directories is fine)",
				"exe", sel.Exe)
		}
	}
	if sel.Cgroup != "" {
		ks.Flags |= slotCgroup
		_ = filepath.WalkDir(w.opts.CgroupRoot, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			rel := "/" + strings.TrimPrefix(strings.TrimPrefix(path, w.opts.CgroupRoot), "/")
			if id, err := cgroupID(w.opts.CgroupRoot, rel); err == nil {
				k.cgroupVerdict(id, i, sel.MatchCgroup(rel))
			}
			return nil
		})
	}
	return k.coll.Maps["slots"].Put(uint32(i), ks)
}

// releaseSlot drops a subscription's use of slot i. w.mu is held.
func (w *Watcher) releaseSlot(i int) {
	s := w.slots[i]
	if s == nil {
		return
	}
	s.users--
	if s.users > 0 {
		return
	}
	w.slots[i] = nil
	w.clearSlot(w.k, i)
}

// clearSlot deactivates slot i and forgets every entry it has.
func (w *Watcher) clearSlot(k *kernel, i int) {
	_ = k.coll.Maps["slots"].Put(uint32(i), kernelSlot{})
	deleteWhere(k.coll.Maps["selected"], func(key []byte) bool { return binary.NativeEndian.Uint32(key[4:]) == uint32(i) })
	deleteWhere(k.coll.Maps["slot_pids"], func(key []byte) bool { return binary.NativeEndian.Uint32(key[4:]) == uint32(i) })
	deleteWhere(k.coll.Maps["slot_exes"], func(key []byte) bool { return binary.NativeEndian.Uint32(key[16:]) == uint32(i) })
	deleteWhere(k.coll.Maps["probed"], func(key []byte) bool { return binary.NativeEndian.Uint32(key[16:]) == uint32(i) })
	k.mu.Lock()
	for key := range k.probedSeen {
		if key.Slot == uint32(i) {
			delete(k.probedSeen, key)
		}
	}
	k.mu.Unlock()
	deleteWhere(k.coll.Maps["slot_cgroups"], func(key []byte) bool { return binary.NativeEndian.Uint32(key[8:]) == uint32(i) })
}

func deleteWhere(m *ebpf.Map, match func(key []byte) bool) {
	var keys [][]byte
	key := make([]byte, m.KeySize())
	it := m.Iterate()
	var val []byte
	for it.Next(&key, &val) {
		if match(key) {
			keys = append(keys, append([]byte(nil), key...))
		}
	}
	for _, k := range keys {
		_ = m.Delete(k)
	}
}

// cgroupID is the id of the cgroup v2 at path (as in /proc/PID/cgroup):
// its directory's inode, as bpf_get_current_cgroup_id returns.
func cgroupID(root, path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(root, path), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Cgroup2Mount finds where the cgroup v2 hierarchy is mounted (on hybrid
// systems often /sys/fs/cgroup/unified), /sys/fs/cgroup when unsure.
func Cgroup2Mount() string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "/sys/fs/cgroup"
	}
	for _, l := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 5 && len(g) >= 1 && g[0] == "cgroup2" {
			return f[4]
		}
	}
	return "/sys/fs/cgroup"
}
