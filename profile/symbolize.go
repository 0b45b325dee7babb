package profile

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/probe-exporter/probe_exporter/internal/elfread"
	"github.com/probe-exporter/probe_exporter/internal/gopclntab"
	"github.com/probe-exporter/probe_exporter/internal/procfs"
	"github.com/probe-exporter/probe_exporter/internal/safeopen"
	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// readMaps reads the executable mappings of /proc/PID/maps.
func readMaps(procRoot string, pid int) ([]procfs.Mapping, error) {
	all, err := procfs.ReadMaps(procRoot, pid)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, m := range all {
		if m.Executable() {
			out = append(out, m)
		}
	}
	return out, nil
}

// symbolTable resolves file virtual addresses of one ELF file.
type symbolTable struct {
	syms *symtab.Table
	// loads maps file offsets to virtual addresses.
	loads []elf.ProgHeader
	gosym *gopclntab.Table
	// size is about what the table keeps in memory, in bytes.
	size int
}

// Bounds of the symbol tables held, in estimated bytes (a Go binary of
// 100 MB takes about 20 MiB): MaxSymbolMemory in all, maxFileSymbols for
// one file, users sharing it as shares.go says. The files of the profiled
// programs are anyone's, as many as they like; a file past its bound has
// its frames named file+0xoffset.
const (
	MaxSymbolMemory = 256 << 20
	maxFileSymbols  = 64 << 20
)

// symbolLimits bound the symbol tables held, in estimated bytes.
var symbolLimits = shareLimits(MaxSymbolMemory, maxFileSymbols)

// addresses keeps what maps addresses (the loadable segments) without the
// names: the table of a file whose names do not fit.
func (t *symbolTable) addresses() *symbolTable { return &symbolTable{loads: t.loads} }

// loadSymbols reads .symtab, then .dynsym, and .gopclntab for stripped Go
// binaries, within the bounds of internal/elfread and internal/gopclntab.
// A table that cannot be read is an error, and the tables that could be
// read are returned with it.
func loadSymbols(f *elfread.File) (*symbolTable, error) {
	t := &symbolTable{size: 64}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			t.loads = append(t.loads, p)
		}
	}
	var errs []error
	var syms []symtab.Symbol
	for _, typ := range []elf.SectionType{elf.SHT_SYMTAB, elf.SHT_DYNSYM} {
		ss, err := f.Functions(typ)
		if err != nil {
			if !errors.Is(err, elfread.ErrNoSymbols) {
				errs = append(errs, err)
			}
			continue
		}
		if syms = ss; len(syms) > 0 {
			// The entries and their names (an over-estimate where
			// names share bytes of the string table).
			for _, s := range syms {
				t.size += 24 + len(s.Name)
			}
			break
		}
	}
	if len(syms) == 0 {
		if sec, text := f.Section(".gopclntab"), f.Section(".text"); sec != nil && text != nil {
			data, err := f.Data(sec, gopclntab.MaxSize)
			if err == nil {
				t.gosym, err = gopclntab.Parse(data, text.Addr)
			}
			if err == nil {
				t.size += 3 * len(data)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("section .gopclntab: %w", err))
			}
		}
	}
	t.syms = symtab.New(syms)
	return t, errors.Join(errs...)
}

// vaddr turns a file offset into the ELF's virtual address.
func (t *symbolTable) vaddr(off uint64) (uint64, bool) {
	for _, p := range t.loads {
		if off >= p.Off && off < p.Off+p.Filesz {
			return off - p.Off + p.Vaddr, true
		}
	}
	return 0, false
}

func (t *symbolTable) lookup(addr uint64) (string, bool) {
	if t.gosym != nil {
		if name, ok := t.gosym.Lookup(addr); ok {
			return name, true
		}
	}
	return t.syms.Lookup(addr)
}

// symbolizer resolves user addresses with the symbol tables of the files
// processes map, one per file (device and inode, as the mappings name
// them), shared by every process that maps it. Tables are loaded off the
// drain (see unwinder.load); symbolizing only looks them up. A table is
// held while some process maps its file (hold, settle) and released after
// the drain that follows the last one's exit (forget).
type symbolizer struct {
	log    *slog.Logger
	mu     sync.Mutex
	byFile map[fileID]*symEntry
	refs   *holders
	shares *shares
	// skipped counts files whose names were not loaded, by reason (once
	// per file while it is mapped).
	skipped map[skipReason]uint64
	snap    atomic.Pointer[symbolStats]
}

// symEntry is a file's table, who it is charged to, and why its names
// were not loaded.
type symEntry struct {
	t       *symbolTable
	uid     uint32
	charged int64
	// need is the full table's size, once read (for retries).
	need    int64
	skipped skipReason
}

func newSymbolizer(log *slog.Logger) *symbolizer {
	return &symbolizer{log: log, byFile: map[fileID]*symEntry{}, refs: newHolders(),
		shares: newShares(symbolLimits), skipped: map[skipReason]uint64{}}
}

// table is the symbol table of m's file, nil until it is loaded.
func (s *symbolizer) table(m *procfs.Mapping) *symbolTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.byFile[idOf(m)]; e != nil {
		return e.t
	}
	return nil
}

// wants reports whether file id is to be read for uid: it was never read,
// or its names were refused for a reason that may have gone (another
// user's share, room freed since).
func (s *symbolizer) wants(id fileID, uid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wantsLocked(id, uid)
}

func (s *symbolizer) wantsLocked(id fileID, uid uint32) bool {
	e := s.byFile[id]
	return e == nil || e.skipped != "" && e.skipped.retry() && s.shares.admit(uid, e.need) == ""
}

// hold adds ids to the files pid maps, before they are loaded: a table is
// kept only for a file some process holds.
func (s *symbolizer) hold(pid int, ids []fileID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs.add(pid, ids)
}

// settle makes ids exactly the files pid maps, releasing the tables no
// process holds any more.
func (s *symbolizer) settle(pid int, ids []fileID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.publish()
	s.release(s.refs.set(pid, ids))
}

// store keeps the table of file id (named name in logs), read for a
// process of uid; unreadable says the file could not be read at all. A
// table past its user's share keeps only the file's load segments: its
// frames are named file+offset. Nothing is kept for a file no process
// holds any more.
func (s *symbolizer) store(id fileID, name string, t *symbolTable, uid uint32, unreadable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.publish()
	if !s.refs.held(id) || !s.wantsLocked(id, uid) {
		return
	}
	e := s.byFile[id]
	first := e == nil
	if first {
		e = &symEntry{}
		s.byFile[id] = e
	}
	if unreadable {
		e.t, e.skipped = t, skipUnreadable
		if first {
			s.skipped[skipUnreadable]++
		}
		return
	}
	if why := s.shares.admit(uid, int64(t.size)); why != "" {
		if first {
			s.skipped[why]++
			s.log.Warn("profiler: symbols of a file not loaded, its frames are named file+offset",
				"file", name, "bytes", t.size, "uid", uid, "reason", string(why))
		}
		e.t, e.need, e.skipped = t.addresses(), int64(t.size), why
		return
	}
	s.shares.charge(uid, int64(t.size))
	e.t, e.uid, e.charged, e.need, e.skipped = t, uid, int64(t.size), int64(t.size), ""
}

// release drops the tables of files no process holds any more; s.mu is
// held.
func (s *symbolizer) release(ids []fileID) {
	for _, id := range ids {
		if e := s.byFile[id]; e != nil {
			s.shares.refund(e.uid, e.charged)
			delete(s.byFile, id)
		}
	}
}

// forget drops an exited process after its last drain, and the tables of
// files no other process holds.
func (s *symbolizer) forget(pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.publish()
	s.release(s.refs.drop(pid))
}

// pids lists the processes holding tables.
func (s *symbolizer) pids() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refs.pids()
}

// symbolStats is what the symbolizer holds.
type symbolStats struct {
	bytes   int64
	files   int
	skipped map[skipReason]uint64
}

// stats is what the symbolizer held after its last change.
func (s *symbolizer) stats() symbolStats {
	if st := s.snap.Load(); st != nil {
		return *st
	}
	return symbolStats{}
}

// publish makes the current state what stats returns; s.mu is held.
func (s *symbolizer) publish() {
	st := symbolStats{bytes: s.shares.all, files: len(s.byFile), skipped: make(map[skipReason]uint64, len(s.skipped))}
	for r, n := range s.skipped {
		st.skipped[r] = n
	}
	s.snap.Store(&st)
}

// user symbolizes a user address of pid with its mappings; JIT code comes
// from /tmp/perf-PID.map; unknown frames are module+0xoffset.
func (s *symbolizer) user(maps []procfs.Mapping, perf []perfSym, addr uint64) string {
	for i := range maps {
		m := &maps[i]
		if addr < m.Start || addr >= m.End {
			continue
		}
		off := addr - m.Start + m.Offset
		if m.Path == "" || strings.HasPrefix(m.Path, "[") {
			break
		}
		if t := s.table(m); t != nil {
			if va, ok := t.vaddr(off); ok {
				if name, ok := t.lookup(va); ok {
					return name
				}
			}
		}
		return fmt.Sprintf("%s+0x%x", filepath.Base(m.Path), off)
	}
	// perf is sorted by start: the last symbol starting at or below addr.
	if i := sort.Search(len(perf), func(i int) bool { return perf[i].start > addr }); i > 0 {
		if p := perf[i-1]; addr < p.start+p.size {
			return p.name
		}
	}
	return fmt.Sprintf("[unknown]+0x%x", addr)
}

// perfSym is one line of a JIT's /tmp/perf-PID.map.
type perfSym struct {
	start, size uint64
	name        string
}

// Bounds of a perf map, read as it is at each refresh: a JIT's map of
// 200,000 symbols is some 15 MB; past either bound the rest is cut and
// counted.
const (
	maxPerfMapBytes = 16 << 20
	maxPerfSyms     = 200_000
	maxPerfLine     = 4096
)

// readPerfMap reads the JIT symbols a process wrote to /tmp/perf-PID.map
// (the perf convention that V8, the JVM's perf-map-agent, LuaJIT and
// CPython 3.12's perf trampolines follow), in the process's own file
// system and under its own pid, for processes in containers. As perf
// requires, the file must belong to the process's user and not be
// writable by others; it is opened with safeopen (no symlink, FIFO or
// device) and read within bounds. cut reports whether bounds cut it.
func readPerfMap(procRoot string, pid int) (syms []perfSym, cut bool, err error) {
	uids, err := procfs.UIDs(procRoot, pid)
	if err != nil {
		return nil, false, err
	}
	names := []int{pid}
	if ns := procfs.NSPID(procRoot, pid); ns > 0 && ns != pid {
		names = append([]int{ns}, names...)
	}
	rules := safeopen.Rules{Owners: uids, NotWritable: true}
	for _, n := range names {
		f, err := safeopen.InRoot(filepath.Join(procfs.Dir(procRoot, pid), "root"), fmt.Sprintf("/tmp/perf-%d.map", n), rules)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		defer f.Close()
		syms, cut := parsePerfMap(f)
		return syms, cut, nil
	}
	return nil, false, fs.ErrNotExist
}

// parsePerfMap parses "START SIZE name" lines (hex, with or without 0x),
// at most maxPerfMapBytes of them and maxPerfSyms symbols; longer lines
// are skipped. The symbols come sorted by start. cut reports whether
// anything was left out by the bounds.
func parsePerfMap(r io.Reader) (out []perfSym, cut bool) {
	lr := &io.LimitedReader{R: r, N: maxPerfMapBytes}
	br := bufio.NewReaderSize(lr, maxPerfLine)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			cut = true
			for err == bufio.ErrBufferFull { // skip the rest of it
				_, err = br.ReadSlice('\n')
			}
			continue
		}
		if len(line) > 0 {
			if len(out) == maxPerfSyms {
				cut = true
				break
			}
			if s, ok := parsePerfLine(strings.TrimSuffix(string(line), "\n")); ok {
				out = append(out, s)
			}
		}
		if err != nil {
			break
		}
	}
	if lr.N == 0 {
		// The cap was reached: more may follow (a FIFO fed forever, a
		// growing file); a last line cut in two is dropped.
		if n, _ := r.Read(make([]byte, 1)); n > 0 {
			cut = true
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out, cut
}

func parsePerfLine(line string) (perfSym, bool) {
	parts := strings.SplitN(line, " ", 3)
	if len(parts) != 3 {
		return perfSym{}, false
	}
	start, err1 := strconv.ParseUint(strings.TrimPrefix(parts[0], "0x"), 16, 64)
	size, err2 := strconv.ParseUint(strings.TrimPrefix(parts[1], "0x"), 16, 64)
	if err1 != nil || err2 != nil {
		return perfSym{}, false
	}
	return perfSym{start, size, parts[2]}, true
}
