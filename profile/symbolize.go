package profile

import (
	"bufio"
	"debug/elf"
	"debug/gosym"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/procfs"
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
	gosym *gosym.Table
	// bytes estimates the memory the table holds.
	bytes int64
}

// Estimated sizes, for symbol tables' shares: a symbol's address and name
// header in a symtab.Table, and a function of a Go binary's table (its
// gosym.Func and gosym.Sym), besides the names.
const (
	symBytes    = 8 + 16
	goFuncBytes = 160
)

// symbolLimits bound the symbol tables held, in estimated bytes: 64 MiB a
// file, 256 MiB in all, users sharing it as shares.go says.
var symbolLimits = shareLimits(256<<20, 64<<20)

// addresses keeps what maps addresses (the loadable segments) without the
// names: the table of a file whose names do not fit.
func (t *symbolTable) addresses() *symbolTable { return &symbolTable{loads: t.loads} }

// loadSymbols reads .symtab, then .dynsym, and .gopclntab for stripped Go
// binaries.
func loadSymbols(path string) (*symbolTable, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &symbolTable{}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			t.loads = append(t.loads, p.ProgHeader)
		}
	}
	var syms []symtab.Symbol
	var names int64
	for _, get := range []func() ([]elf.Symbol, error){f.Symbols, f.DynamicSymbols} {
		ss, err := get()
		if err != nil {
			continue
		}
		for _, s := range ss {
			if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
				syms = append(syms, symtab.Symbol{Addr: s.Value, Name: s.Name})
				names += int64(len(s.Name))
			}
		}
		if len(syms) > 0 {
			break
		}
	}
	if len(syms) == 0 {
		if sec := f.Section(".gopclntab"); sec != nil {
			if data, err := sec.Data(); err == nil {
				text := f.Section(".text")
				if text != nil {
					if tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr)); err == nil {
						t.gosym = tab
						t.bytes += int64(len(data))
						for _, fn := range tab.Funcs {
							t.bytes += goFuncBytes + int64(len(fn.Name))
						}
					}
				}
			}
		}
	}
	t.syms = symtab.New(syms)
	t.bytes += int64(len(syms))*symBytes + names
	return t, nil
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
		if fn := t.gosym.PCToFunc(addr); fn != nil {
			return fn.Name, true
		}
	}
	return t.syms.Lookup(addr)
}

// symbolizer resolves user addresses, with one table per file (device,
// inode, modification time) shared by every process that maps it. A table
// is held from the first description of a process mapping the file until
// the drain after the last such process exited, then released.
type symbolizer struct {
	procRoot string
	logger   *slog.Logger

	mu     sync.Mutex
	byFile map[fileID]*symEntry
	refs   *holders
	shares *shares
	// paths are the files as reached through each process's root, and
	// when they were last stat'ed: at most once a second, not per frame.
	paths map[string]pathEntry
	// skipped counts files whose names were not loaded, by reason.
	skipped map[skipReason]uint64
	snap    atomic.Pointer[symbolStats]
}

// symEntry is a held file's table, who it is charged to, and why its
// names were not loaded (need: their estimated size, for retries).
type symEntry struct {
	t       *symbolTable
	uid     uint32
	charged int64
	need    int64
	skipped skipReason
}

type pathEntry struct {
	id      fileID
	checked time.Time
}

func newSymbolizer(procRoot string, logger *slog.Logger) *symbolizer {
	return &symbolizer{procRoot: procRoot, logger: logger, byFile: map[fileID]*symEntry{}, refs: newHolders(),
		shares: newShares(symbolLimits), paths: map[string]pathEntry{}, skipped: map[skipReason]uint64{}}
}

// symFile is a mapped file's identity and table (nil when it cannot be
// reached).
type symFile struct {
	id fileID
	t  *symbolTable
}

// hold makes the files at hosts (the mappings maps of pid, a process of
// uid) pid's, loading the tables not loaded yet; tables no process holds
// any more are released.
func (s *symbolizer) hold(pid int, uid uint32, hosts []string, maps []*procfs.Mapping) []symFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.publish()
	out := make([]symFile, len(hosts))
	ids := make([]fileID, 0, len(hosts))
	for i, host := range hosts {
		st, err := os.Stat(host)
		if err != nil {
			continue
		}
		id := idOf(st)
		s.paths[host] = pathEntry{id: id, checked: time.Now()}
		out[i] = symFile{id: id, t: s.load(id, host, maps[i].Path, uid)}
		ids = append(ids, id)
	}
	s.release(s.refs.set(pid, ids))
	return out
}

// load returns the table of file id, reading it for uid unless it is
// loaded, or its names were refused for a reason that may have gone.
func (s *symbolizer) load(id fileID, host, name string, uid uint32) *symbolTable {
	e := s.byFile[id]
	if e != nil && (e.skipped == "" || !e.skipped.retry() || s.shares.admit(uid, e.need) != "") {
		return e.t
	}
	first := e == nil
	t, err := loadSymbols(host)
	if err != nil {
		if first {
			s.skipped[skipUnreadable]++
			s.logger.Debug("profiler: no symbols for a file", "file", name, "err", err)
		}
		e = &symEntry{t: &symbolTable{}, skipped: skipUnreadable}
		s.byFile[id] = e
		return e.t
	}
	if why := s.shares.admit(uid, t.bytes); why != "" {
		if first {
			s.skipped[why]++
			s.logger.Warn("profiler: symbols of a file not loaded, its frames are file+offset",
				"file", name, "bytes", t.bytes, "uid", uid, "reason", string(why))
			e = &symEntry{}
			s.byFile[id] = e
		}
		e.t, e.need, e.skipped = t.addresses(), t.bytes, why
		return e.t
	}
	if e == nil {
		e = &symEntry{}
		s.byFile[id] = e
	}
	s.shares.charge(uid, t.bytes)
	e.t, e.uid, e.charged, e.need, e.skipped = t, uid, t.bytes, t.bytes, ""
	return e.t
}

// release drops the tables of files no process holds any more.
func (s *symbolizer) release(ids []fileID) {
	for _, id := range ids {
		if e := s.byFile[id]; e != nil {
			s.shares.refund(e.uid, e.charged)
			delete(s.byFile, id)
		}
	}
}

// table is the loaded table of the file at path, if any: drains look
// tables up, only descriptions load them.
func (s *symbolizer) table(path string) *symbolTable {
	s.mu.Lock()
	e, known := s.paths[path]
	if known && time.Since(e.checked) < time.Second {
		t := s.tableOf(e.id)
		s.mu.Unlock()
		return t
	}
	s.mu.Unlock()
	st, err := os.Stat(path)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// The process is gone: what was loaded while it ran still serves.
		if known {
			return s.tableOf(e.id)
		}
		return nil
	}
	id := idOf(st)
	s.paths[path] = pathEntry{id: id, checked: time.Now()}
	return s.tableOf(id)
}

func (s *symbolizer) tableOf(id fileID) *symbolTable {
	if e := s.byFile[id]; e != nil {
		return e.t
	}
	return nil
}

// forget drops an exited process after its last drain: its paths, and the
// tables of files no other process holds.
func (s *symbolizer) forget(pid int) {
	prefix := procfs.Dir(s.procRoot, pid) + "/"
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.publish()
	for path := range s.paths {
		if strings.HasPrefix(path, prefix) {
			delete(s.paths, path)
		}
	}
	s.release(s.refs.drop(pid))
}

// pids lists the processes holding tables.
func (s *symbolizer) pids() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refs.pids()
}

// symbolStats is what the symbolizer holds now.
type symbolStats struct {
	bytes   int64
	files   int
	skipped map[skipReason]uint64
}

// stats is what the symbolizer held after its last change, without
// waiting for a load in progress.
func (s *symbolizer) stats() symbolStats {
	if st := s.snap.Load(); st != nil {
		return *st
	}
	return symbolStats{}
}

// publish makes the current state what stats returns; s.mu is held.
func (s *symbolizer) publish() {
	st := symbolStats{bytes: s.shares.all, files: len(s.byFile), skipped: map[skipReason]uint64{}}
	for r, n := range s.skipped {
		st.skipped[r] = n
	}
	s.snap.Store(&st)
}

// hostPath is the path of m's file from the host: through the process's
// root, so files of containers are found.
func (s *symbolizer) hostPath(pid int, m *procfs.Mapping) string {
	return procfs.MapFile(s.procRoot, pid, *m)
}

// user symbolizes a user address of pid with its mappings; JIT code comes
// from /tmp/perf-PID.map; unknown frames are module+0xoffset.
func (s *symbolizer) user(pid int, maps []procfs.Mapping, perfMap func() []perfSym, addr uint64) string {
	for i := range maps {
		m := &maps[i]
		if addr < m.Start || addr >= m.End {
			continue
		}
		off := addr - m.Start + m.Offset
		if m.Path == "" || strings.HasPrefix(m.Path, "[") {
			break
		}
		if t := s.table(s.hostPath(pid, m)); t != nil {
			if va, ok := t.vaddr(off); ok {
				if name, ok := t.lookup(va); ok {
					return name
				}
			}
		}
		return fmt.Sprintf("%s+0x%x", filepath.Base(m.Path), off)
	}
	if perfMap != nil {
		for _, p := range perfMap() {
			if addr >= p.start && addr < p.start+p.size {
				return p.name
			}
		}
	}
	return fmt.Sprintf("[unknown]+0x%x", addr)
}

// perfSym is one line of a JIT's /tmp/perf-PID.map.
type perfSym struct {
	start, size uint64
	name        string
}

// readPerfMap reads the JIT symbols a process wrote to /tmp/perf-PID.map
// (the perf convention that V8, the JVM's perf-map-agent, LuaJIT and
// CPython 3.12's perf trampolines follow), in the process's own file
// system and under its own pid, for processes in containers.
func readPerfMap(procRoot string, pid int) ([]perfSym, bool) {
	names := []int{pid}
	if ns := procfs.NSPID(procRoot, pid); ns > 0 && ns != pid {
		names = append([]int{ns}, names...)
	}
	for _, n := range names {
		f, err := os.Open(procfs.HostPath(procRoot, pid, fmt.Sprintf("/tmp/perf-%d.map", n)))
		if err != nil {
			continue
		}
		defer f.Close()
		return parsePerfMap(f), true
	}
	return nil, false
}

// parsePerfMap parses "START SIZE name" lines (hex, with or without 0x).
func parsePerfMap(r io.Reader) []perfSym {
	var out []perfSym
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 3)
		if len(parts) != 3 {
			continue
		}
		start, err1 := strconv.ParseUint(strings.TrimPrefix(parts[0], "0x"), 16, 64)
		size, err2 := strconv.ParseUint(strings.TrimPrefix(parts[1], "0x"), 16, 64)
		if err1 == nil && err2 == nil {
			out = append(out, perfSym{start, size, parts[2]})
		}
	}
	return out
}
