package profile

import (
	"debug/elf"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"

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

// fileRows is where a file's rows are in the rows map.
type fileRows struct {
	first, count uint32
}

// unwinder loads the unwind rows of the files selected processes map into
// the kernel, once per file, and describes each process's mappings.
type unwinder struct {
	rows, procs *ebpf.Map
	sym         *symbolizer
	procRoot    string
	// stats counts the mapped files refused.
	stats *safeopen.Stats

	mu    sync.Mutex
	next  uint32
	files map[fileID]fileRows
	// closed is set when the profiler releases the maps.
	closed bool
	// described is what procs holds per pid, to skip unchanged updates.
	described map[int][]bpfMapping
	// full counts files left to frame pointers because the rows map is
	// full; parseFailures files whose CFI could not be read.
	full, parseFailures int
}

func newUnwinder(rows, procs *ebpf.Map, sym *symbolizer, procRoot string, stats *safeopen.Stats) *unwinder {
	return &unwinder{rows: rows, procs: procs, sym: sym, procRoot: procRoot, stats: stats, files: map[fileID]fileRows{}, described: map[int][]bpfMapping{}}
}

// maxELFSize caps the mapped files read for symbols and unwind rows; the
// largest shared libraries (libLLVM, browsers) are a few hundred MB.
const maxELFSize = 2 << 30

// load reads the symbols and unwind rows of m's file, once per file. The
// file is opened with safeopen (the very file the process maps, regular,
// never blocking to open) and read without u.mu held: a read that blocks
// (a FUSE server that does not answer) holds up only its caller, which
// runs it under a deadline.
func (u *unwinder) load(pid int, m *procfs.Mapping) {
	id := idOf(m)
	u.mu.Lock()
	_, done := u.files[id]
	u.mu.Unlock()
	if done && u.sym.has(id) {
		return
	}
	name := filepath.Join(procfs.Dir(u.procRoot, pid), "root", m.Path)
	f, err := safeopen.Mapped(u.procRoot, pid, *m, safeopen.Rules{MaxSize: maxELFSize})
	if err != nil {
		if u.stats.Record("mapped file", name, err) {
			u.storeFailed(id) // refused: not tried again
		}
		return
	}
	defer f.Close()
	// The file is any user's: read within internal/elfread's bounds.
	var t *symbolTable
	var rows []cfi.Row
	ef, err := elfread.NewFile(f, uint64(f.Stat.Size))
	if err == nil {
		var serr error
		if t, serr = loadSymbols(ef); serr != nil {
			// Once per file: its table, empty or partial, is kept.
			u.sym.log.Warn("profiler: cannot read the symbols of a mapped file; its frames are named file+offset", "file", name, "err", serr)
		}
		rows, err = cfi.FromELF(ef)
	} else {
		t = &symbolTable{}
	}
	u.sym.store(id, name, t)
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.files[id]; ok || u.closed {
		return
	}
	fr := fileRows{}
	switch {
	case err != nil:
		if !errors.Is(err, cfi.ErrNoCFI) {
			u.parseFailures++
			// Once per file: the result is kept.
			u.sym.log.Warn("profiler: cannot read the unwind rows of a mapped file; its frames are walked by frame pointers", "file", name, "err", err)
		}
	case uint64(u.next)+uint64(len(rows)) > maxRows:
		u.full++
	default:
		if err := u.write(u.next, rows); err == nil {
			fr = fileRows{first: u.next, count: uint32(len(rows))}
			u.next += uint32(len(rows))
		}
	}
	u.files[id] = fr
}

// storeFailed records a file that could not be read: no symbols, no rows.
func (u *unwinder) storeFailed(id fileID) {
	u.sym.store(id, "", &symbolTable{})
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.files[id]; !ok {
		u.files[id] = fileRows{}
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

// describe tells the kernel the executable mappings of pid, with the rows
// of their files, loading the files not seen before; unchanged mappings
// are not written again.
func (u *unwinder) describe(pid int, maps []procfs.Mapping) error {
	for i := range maps {
		if m := &maps[i]; m.Path != "" && m.Path[0] == '/' {
			u.load(pid, m)
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
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
		fr := u.files[idOf(m)]
		out = append(out, bpfMapping{Start: m.Start, End: m.End, Bias: bias, First: fr.first, Count: fr.count})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	if len(out) > maxMappings {
		out = out[:maxMappings]
	}
	if old, ok := u.described[pid]; ok && sameMappings(old, out) {
		return nil
	}
	var info procInfo
	info.Count = uint32(copy(info.Maps[:], out))
	if err := u.procs.Put(uint32(pid), &info); err != nil {
		return fmt.Errorf("describing pid %d: %w", pid, err)
	}
	u.described[pid] = out
	return nil
}

// forget removes an exited process.
func (u *unwinder) forget(pid int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.described, pid)
	if !u.closed {
		_ = u.procs.Delete(uint32(pid))
	}
}

// close makes every later call leave the maps alone: they are being
// closed.
func (u *unwinder) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
}

// used is how many rows are loaded.
func (u *unwinder) used() (rows uint32, files int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.next, len(u.files)
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
