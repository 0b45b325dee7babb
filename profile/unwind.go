package profile

import (
	"debug/elf"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/internal/cfi"
	"github.com/probe-exporter/probe_exporter/internal/elfread"
	"github.com/probe-exporter/probe_exporter/internal/procfs"
	"github.com/probe-exporter/probe_exporter/internal/safeopen"
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

// fileID names a file by device and inode, as the mappings of processes
// name it: processes mapping the same file share its rows and symbols.
type fileID struct {
	dev, ino uint64
}

// idOf identifies the file of mapping m.
func idOf(m *procfs.Mapping) fileID {
	return fileID{dev: m.Dev(), ino: m.Inode}
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
	procRoot    string
	// refused counts the mapped files refused.
	refused *safeopen.Stats

	mu     sync.Mutex
	space  *rowSpace
	shares *shares
	files  map[fileID]*tableFile
	refs   *holders
	// closed is set when the profiler releases the maps.
	closed bool
	// described is what procs holds per pid, to skip unchanged updates.
	described map[int][]bpfMapping
	// skipped counts files whose rows were not loaded, by reason (once
	// per file while it is mapped).
	skipped map[skipReason]uint64
	snap    atomic.Pointer[unwindStats]
}

func newUnwinder(rows, procs *ebpf.Map, sym *symbolizer, procRoot string, refused *safeopen.Stats) *unwinder {
	return &unwinder{
		rows: rows, procs: procs, sym: sym, procRoot: procRoot, refused: refused,
		space: newRowSpace(maxRows), shares: newShares(rowLimits),
		files: map[fileID]*tableFile{}, refs: newHolders(),
		described: map[int][]bpfMapping{}, skipped: map[skipReason]uint64{},
	}
}

// maxELFSize caps the mapped files read for symbols and unwind rows; the
// largest shared libraries (libLLVM, browsers) are a few hundred MB.
const maxELFSize = 2 << 30

// load reads the symbols and unwind rows of m's file for pid, a process of
// uid, unless they are loaded (or were refused for good). The file is
// opened with safeopen (the very file the process maps, regular, never
// blocking to open) and read without u.mu held: a read that blocks (a
// FUSE server that does not answer) holds up only its caller, which runs
// it under a deadline. The caller holds the file (describe) so that what
// is read is kept.
func (u *unwinder) load(pid int, uid uint32, m *procfs.Mapping) {
	id := idOf(m)
	u.mu.Lock()
	wantRows, closed := u.wantsRows(id, uid), u.closed
	u.mu.Unlock()
	wantSyms := u.sym.wants(id, uid)
	if closed || !wantRows && !wantSyms {
		return
	}
	name := filepath.Join(procfs.Dir(u.procRoot, pid), "root", m.Path)
	f, err := safeopen.Mapped(u.procRoot, pid, *m, safeopen.Rules{MaxSize: maxELFSize})
	if err != nil {
		if u.refused.Record("mapped file", name, err) {
			// Refused (and logged): not tried again while it is
			// mapped.
			u.sym.store(id, name, &symbolTable{}, uid, true)
			u.mu.Lock()
			u.storeRows(id, name, uid, nil, err)
			u.publish()
			u.mu.Unlock()
		}
		return
	}
	defer f.Close()
	// The file is any user's: read within internal/elfread's bounds.
	var rows []cfi.Row
	ef, err := elfread.NewFile(f, uint64(f.Stat.Size))
	if wantSyms {
		t := &symbolTable{}
		if err == nil {
			var serr error
			if t, serr = loadSymbols(ef); serr != nil {
				// Once per file: its table, empty or partial, is kept.
				u.sym.log.Warn("profiler: cannot read the symbols of a mapped file; its frames are named file+offset", "file", name, "err", serr)
			}
		}
		u.sym.store(id, name, t, uid, err != nil)
	}
	if !wantRows {
		return
	}
	if err == nil {
		rows, err = cfi.FromELF(ef)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	defer u.publish()
	u.storeRows(id, name, uid, rows, err)
}

// wantsRows reports whether file id's rows are to be read for uid: it was
// never read, or its rows were refused for a reason that may have gone
// (another user's share, room freed since); u.mu is held.
func (u *unwinder) wantsRows(id fileID, uid uint32) bool {
	f := u.files[id]
	if f == nil {
		return true
	}
	if f.rows.count > 0 || f.skipped == "" || !f.skipped.retry() {
		return false
	}
	return u.shares.admit(uid, int64(f.need)) == "" && u.space.largest() >= f.need
}

// storeRows loads rows, read from file id (named name) for a process of
// uid, into the kernel, within uid's share; err is why they could not be
// read. Nothing is loaded for a file no process holds any more, or whose
// rows were loaded meanwhile; u.mu is held.
func (u *unwinder) storeRows(id fileID, name string, uid uint32, rows []cfi.Row, err error) {
	if u.closed || !u.refs.held(id) || !u.wantsRows(id, uid) {
		return
	}
	f := u.files[id]
	first := f == nil
	if first {
		f = &tableFile{}
		u.files[id] = f
	}
	switch {
	case errors.Is(err, cfi.ErrNoCFI):
		f.skipped = ""
		return
	case err != nil:
		u.skip(f, first, skipUnreadable, name, uid, err)
		return
	case uint64(len(rows)) > maxRows:
		u.skip(f, first, skipFile, name, uid, nil)
		return
	}
	f.need = uint32(len(rows))
	if why := u.shares.admit(uid, int64(f.need)); why != "" {
		u.skip(f, first, why, name, uid, nil)
		return
	}
	e, ok := u.space.alloc(f.need)
	if !ok {
		u.skip(f, first, skipFull, name, uid, nil)
		return
	}
	if err := u.write(e.first, rows); err != nil {
		u.space.release(e)
		u.skip(f, first, skipUnreadable, name, uid, err)
		return
	}
	u.shares.charge(uid, int64(e.count))
	f.rows, f.uid, f.skipped = e, uid, ""
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
		if safeopen.ReasonOf(err) != "" {
			return // logged as refused
		}
		u.sym.log.Warn("profiler: cannot read the unwind rows of a mapped file; its frames are walked by frame pointers", "file", name, "err", err)
		return
	}
	u.sym.log.Warn("profiler: unwind rows of a file not loaded; its frames are walked by frame pointers",
		"file", name, "rows", f.need, "uid", uid, "reason", string(why))
}

// release frees the rows of files no process maps any more; u.mu is held.
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
// uid), with the rows of their files, loading the files not loaded yet;
// unchanged mappings are not written again. The files pid mapped before
// and no process maps now are released once the kernel's description no
// longer points at them.
func (u *unwinder) describe(pid int, uid uint32, maps []procfs.Mapping) error {
	var ids []fileID
	for i := range maps {
		if m := &maps[i]; m.Path != "" && m.Path[0] == '/' {
			ids = append(ids, idOf(m))
		}
	}
	// Held before they are read, so that a file another process
	// releases meanwhile is not released under this one.
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.refs.add(pid, ids)
	u.mu.Unlock()
	u.sym.hold(pid, ids)
	for i := range maps {
		if m := &maps[i]; m.Path != "" && m.Path[0] == '/' {
			u.load(pid, uid, m)
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	defer u.publish()
	if u.closed {
		return nil
	}
	var out []bpfMapping
	for i := range maps {
		m := &maps[i]
		if m.Path == "" || m.Path[0] != '/' {
			continue // anonymous, [vdso], JIT: frame pointers
		}
		t := u.sym.table(m)
		if t == nil {
			continue
		}
		bias, ok := t.bias(m.Start, m.Offset)
		if !ok {
			continue
		}
		var e extent
		if f := u.files[idOf(m)]; f != nil {
			e = f.rows
		}
		out = append(out, bpfMapping{Start: m.Start, End: m.End, Bias: bias, First: e.first, Count: e.count})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	if len(out) > maxMappings {
		out = out[:maxMappings]
	}
	if old, ok := u.described[pid]; !ok || !sameMappings(old, out) {
		var info procInfo
		info.Count = uint32(copy(info.Maps[:], out))
		if err := u.procs.Put(uint32(pid), &info); err != nil {
			// Its old description must not outlive the rows it
			// points at.
			_ = u.procs.Delete(uint32(pid))
			delete(u.described, pid)
			u.release(u.refs.drop(pid))
			u.sym.settle(pid, ids)
			return fmt.Errorf("describing pid %d: %w", pid, err)
		}
		u.described[pid] = out
	}
	u.release(u.refs.set(pid, ids))
	u.sym.settle(pid, ids)
	return nil
}

// forget removes an exited process, and the rows of files no other
// process maps (its symbol tables stay for the drain after its exit).
func (u *unwinder) forget(pid int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	defer u.publish()
	delete(u.described, pid)
	if !u.closed {
		_ = u.procs.Delete(uint32(pid))
	}
	u.release(u.refs.drop(pid))
}

// close makes every later call leave the maps alone: they are being
// closed.
func (u *unwinder) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
}

// pids lists the described processes.
func (u *unwinder) pids() []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.refs.pids()
}

// unwindStats is what the unwinder holds.
type unwindStats struct {
	used, free uint32
	files      int
	skipped    map[skipReason]uint64
}

// stats is what the unwinder held after its last change; it never waits
// for a description in progress, so a scrape does not either.
func (u *unwinder) stats() unwindStats {
	if st := u.snap.Load(); st != nil {
		return *st
	}
	return unwindStats{free: maxRows}
}

// publish makes the current state what stats returns; u.mu is held.
func (u *unwinder) publish() {
	st := unwindStats{used: u.space.used, free: u.space.size - u.space.used, skipped: make(map[skipReason]uint64, len(u.skipped))}
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
