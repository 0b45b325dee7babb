package profile

import (
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/internal/cfi"
	"github.com/probe-exporter/probe_exporter/internal/procfs"
)

// Sizes shared with bpf/profile.bpf.c.
const (
	maxFrames   = 64
	maxMappings = 64
	maxRows     = 1 << 20
)

// bpfRow is struct row of the BPF program.
type bpfRow struct {
	PC        uint64
	CFAOffset int32
	BPOffset  int16
	CFAReg    uint8
	BPSaved   uint8
}

// bpfMapping is struct mapping of the BPF program.
type bpfMapping struct {
	Start, End, Bias uint64
	First, Count     uint32
}

// procInfo is struct proc_info of the BPF program.
type procInfo struct {
	Count, Pad uint32
	Maps       [maxMappings]bpfMapping
}

// fileID names a file by device, inode and modification time: processes
// mapping the same file share its rows.
type fileID struct {
	dev, ino uint64
	mtime    int64
}

// idOf identifies the file st describes.
func idOf(st os.FileInfo) fileID {
	id := fileID{mtime: st.ModTime().UnixNano()}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = s.Dev, s.Ino
	}
	return id
}

// Limits of the kernel's rows table, in rows: one file may take a quarter
// of it, and users share it as shares.go says.
var rowLimits = shareLimits(maxRows, maxRows/4)

// tableFile is a file some described process maps: its rows in the kernel
// (none when it has no CFI or was skipped), who they are charged to, and
// why they were not loaded.
type tableFile struct {
	rows extent
	uid  uint32
	// need is how many rows the file has, once read (for retries).
	need    uint32
	skipped skipReason
}

// unwinder loads the unwind rows of the files selected processes map into
// the kernel, once per file while some described process maps it, and
// describes each process's mappings. A file's rows are released (and the
// rows reused) when the last process mapping it exits or unmaps it.
type unwinder struct {
	rows, procs *ebpf.Map
	sym         *symbolizer
	logger      *slog.Logger

	mu     sync.Mutex
	space  *rowSpace
	shares *shares
	files  map[fileID]*tableFile
	refs   *holders
	// described is what procs holds per pid, to skip unchanged updates.
	described map[int][]bpfMapping
	// skipped counts files whose rows were not loaded, by reason (once
	// per file while it is mapped).
	skipped map[skipReason]uint64
	snap    atomic.Pointer[unwindStats]
}

func newUnwinder(rows, procs *ebpf.Map, sym *symbolizer, logger *slog.Logger) *unwinder {
	return &unwinder{
		rows: rows, procs: procs, sym: sym, logger: logger,
		space: newRowSpace(maxRows), shares: newShares(rowLimits),
		files: map[fileID]*tableFile{}, refs: newHolders(),
		described: map[int][]bpfMapping{}, skipped: map[skipReason]uint64{},
	}
}

// file returns the rows of the file id (at host path, named name as the
// process sees it), reading and loading them for uid when no process
// mapped the file yet, or when they were refused for a reason that may
// have gone (another user's share, room freed since).
func (u *unwinder) file(id fileID, host, name string, uid uint32) extent {
	f := u.files[id]
	if f != nil && (f.rows.count > 0 || !f.skipped.retry() || f.skipped == "") {
		return f.rows
	}
	if f != nil && (u.shares.admit(uid, int64(f.need)) != "" || u.space.largest() < f.need) {
		return f.rows // still no room: not read again
	}
	first := f == nil
	if first {
		f = &tableFile{}
		u.files[id] = f
	}
	rows, err := cfi.Load(host)
	switch {
	case errors.Is(err, cfi.ErrNoCFI):
		f.skipped = ""
		return f.rows
	case err != nil:
		u.skip(f, first, skipUnreadable, name, uid, err)
		return f.rows
	}
	if uint64(len(rows)) > maxRows {
		u.skip(f, first, skipFile, name, uid, nil)
		return f.rows
	}
	f.need = uint32(len(rows))
	if why := u.shares.admit(uid, int64(f.need)); why != "" {
		u.skip(f, first, why, name, uid, nil)
		return f.rows
	}
	e, ok := u.space.alloc(f.need)
	if !ok {
		u.skip(f, first, skipFull, name, uid, nil)
		return f.rows
	}
	if err := u.write(e.first, rows); err != nil {
		u.space.release(e)
		u.skip(f, first, skipUnreadable, name, uid, err)
		return f.rows
	}
	u.shares.charge(uid, int64(e.count))
	f.rows, f.uid, f.skipped = e, uid, ""
	return f.rows
}

// skip records that f's rows were not loaded; the first time, it is
// counted and logged.
func (u *unwinder) skip(f *tableFile, first bool, why skipReason, name string, uid uint32, err error) {
	f.skipped = why
	if !first {
		return
	}
	u.skipped[why]++
	if why == skipUnreadable {
		u.logger.Debug("profiler: no unwind rows for a file, its frames walk frame pointers", "file", name, "err", err)
		return
	}
	u.logger.Warn("profiler: unwind rows of a file not loaded, its frames walk frame pointers",
		"file", name, "rows", f.need, "uid", uid, "reason", string(why))
}

// release frees the rows of files no process maps any more.
func (u *unwinder) release(ids []fileID) {
	for _, id := range ids {
		f := u.files[id]
		if f == nil {
			continue
		}
		if f.rows.count > 0 {
			u.space.release(f.rows)
			u.shares.refund(f.uid, int64(f.rows.count))
		}
		delete(u.files, id)
	}
}

// write stores rows at index first of the rows map.
func (u *unwinder) write(first uint32, rows []cfi.Row) error {
	keys := make([]uint32, len(rows))
	vals := make([]bpfRow, len(rows))
	for i, r := range rows {
		keys[i] = first + uint32(i)
		vals[i] = bpfRow{PC: r.PC, CFAOffset: r.CFAOffset, BPOffset: r.BPOffset, CFAReg: r.CFAReg}
		if r.BPSaved {
			vals[i].BPSaved = 1
		}
	}
	if _, err := u.rows.BatchUpdate(keys, vals, nil); err == nil {
		return nil
	}
	for i := range keys {
		if err := u.rows.Put(keys[i], vals[i]); err != nil {
			return fmt.Errorf("unwind rows: %w", err)
		}
	}
	return nil
}

// describe tells the kernel the executable mappings of pid (a process of
// uid), with the rows of their files; unchanged mappings are not written
// again. The files pid mapped before and no process maps now are released
// once the kernel's description no longer points at them.
func (u *unwinder) describe(pid int, uid uint32, maps []procfs.Mapping) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	defer u.publish()
	var files []*procfs.Mapping
	var hosts []string
	for i := range maps {
		m := &maps[i]
		if m.Path == "" || m.Path[0] != '/' {
			continue // anonymous, [vdso], JIT: frame pointers
		}
		files = append(files, m)
		hosts = append(hosts, u.sym.hostPath(pid, m))
	}
	tables := u.sym.hold(pid, uid, hosts, files)
	type candidate struct {
		m    *procfs.Mapping
		host string
		f    symFile
		bias uint64
	}
	var cands []candidate
	for i, m := range files {
		t := tables[i]
		if t.t == nil {
			continue
		}
		bias, ok := t.t.bias(m.Start, m.Offset)
		if !ok {
			continue
		}
		cands = append(cands, candidate{m, hosts[i], t, bias})
	}
	// The kernel holds the lowest maxMappings: only their files' rows are
	// read.
	sort.Slice(cands, func(i, j int) bool { return cands[i].m.Start < cands[j].m.Start })
	if len(cands) > maxMappings {
		cands = cands[:maxMappings]
	}
	out := make([]bpfMapping, 0, len(cands))
	ids := make([]fileID, 0, len(cands))
	for _, c := range cands {
		e := u.file(c.f.id, c.host, c.m.Path, uid)
		ids = append(ids, c.f.id)
		out = append(out, bpfMapping{Start: c.m.Start, End: c.m.End, Bias: c.bias, First: e.first, Count: e.count})
	}
	if old, ok := u.described[pid]; ok && sameMappings(old, out) {
		u.release(u.refs.set(pid, ids))
		return nil
	}
	var info procInfo
	info.Count = uint32(copy(info.Maps[:], out))
	if err := u.procs.Put(uint32(pid), &info); err != nil {
		// Its old description must not outlive the rows it points at.
		_ = u.procs.Delete(uint32(pid))
		delete(u.described, pid)
		u.release(u.refs.drop(pid))
		return fmt.Errorf("describing pid %d: %w", pid, err)
	}
	u.described[pid] = out
	u.release(u.refs.set(pid, ids))
	return nil
}

// forget removes an exited process, and the rows of files no other
// process maps.
func (u *unwinder) forget(pid int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	defer u.publish()
	delete(u.described, pid)
	_ = u.procs.Delete(uint32(pid))
	u.release(u.refs.drop(pid))
}

// pids lists the described processes.
func (u *unwinder) pids() []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.refs.pids()
}

// unwindStats is what the unwinder holds now.
type unwindStats struct {
	used, free uint32
	files      int
	skipped    map[skipReason]uint64
}

// stats is what the unwinder held after its last change; it never waits
// for a description in progress (reading a large file's rows), so a scrape
// does not either.
func (u *unwinder) stats() unwindStats {
	if st := u.snap.Load(); st != nil {
		return *st
	}
	return unwindStats{free: maxRows}
}

// publish makes the current state what stats returns; u.mu is held.
func (u *unwinder) publish() {
	st := unwindStats{used: u.space.used, free: u.space.size - u.space.used, skipped: map[skipReason]uint64{}}
	for _, f := range u.files {
		if f.rows.count > 0 {
			st.files++
		}
	}
	for r, n := range u.skipped {
		st.skipped[r] = n
	}
	u.snap.Store(&st)
}

func sameMappings(a, b []bpfMapping) bool {
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

// bias is what a mapping at start of file offset off adds to the file's
// virtual addresses.
func (t *symbolTable) bias(start, off uint64) (uint64, bool) {
	for _, p := range t.loads {
		if p.Flags&elf.PF_X == 0 {
			continue
		}
		if off >= p.Off&^0xfff && off < p.Off+p.Filesz {
			return start - (off - p.Off + p.Vaddr), true
		}
	}
	return 0, false
}

// userFrames turns a sample's leaf-first user addresses into the names
// the symbolizer gives.
func userFrames(key *sampleKey) []uint64 {
	n := int(key.Frames)
	if n > maxFrames {
		n = maxFrames
	}
	return key.User[:n]
}
