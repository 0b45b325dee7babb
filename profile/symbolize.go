package profile

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/elfread"
	"github.com/probe-exporter/probe_exporter/internal/gopclntab"
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
	gosym *gopclntab.Table
	// size is about what the table keeps in memory, in bytes.
	size int
}

// MaxSymbolMemory caps what the symbol tables of all files kept by one
// profiler take together (a Go binary of 100 MB takes about 20 MiB):
// the files of the profiled programs are anyone's, as many as they like.
// Past it, new files' frames are named module+0xoffset.
const MaxSymbolMemory = 256 << 20

// loadSymbols reads .symtab, then .dynsym, and .gopclntab for stripped Go
// binaries, within the bounds of internal/elfread and internal/gopclntab.
// A table that cannot be read is an error naming the file, and the
// tables that could be read are returned with it.
func loadSymbols(path string) (*symbolTable, error) {
	f, err := elfread.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
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
	if err := errors.Join(errs...); err != nil {
		return t, fmt.Errorf("%s: %w", path, err)
	}
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
		if name, ok := t.gosym.Lookup(addr); ok {
			return name, true
		}
	}
	return t.syms.Lookup(addr)
}

// symbolizer resolves user addresses, caching ELF files by
// path and modification time.
type symbolizer struct {
	procRoot string
	log      *slog.Logger

	mu sync.Mutex
	// byFile holds one table per file (device, inode, modification
	// time), shared by every process that maps it.
	byFile map[fileID]*symbolTable
	// paths are the files as reached through each process's root, and
	// when they were last stat'ed: at most once a second, not per frame.
	paths map[string]pathEntry
	// size is what the tables of byFile take, up to MaxSymbolMemory.
	size int
}

type pathEntry struct {
	id      fileID
	checked time.Time
}

func newSymbolizer(procRoot string, log *slog.Logger) *symbolizer {
	return &symbolizer{procRoot: procRoot, log: log, byFile: map[fileID]*symbolTable{}, paths: map[string]pathEntry{}}
}

func (s *symbolizer) table(path string) *symbolTable {
	s.mu.Lock()
	e, known := s.paths[path]
	if known && time.Since(e.checked) < time.Second {
		t := s.byFile[e.id]
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
			return s.byFile[e.id]
		}
		return nil
	}
	id := idOf(st)
	s.paths[path] = pathEntry{id: id, checked: time.Now()}
	if t, ok := s.byFile[id]; ok {
		return t
	}
	t, err := loadSymbols(path)
	if err != nil {
		// Once per file: its table, empty or partial, is kept.
		s.log.Warn("profiler: cannot read the symbols of a mapped file; its frames are named file+offset", "file", path, "err", err)
		if t == nil {
			t = &symbolTable{}
		}
	}
	if s.size+t.size > MaxSymbolMemory {
		s.log.Warn("profiler: symbol tables take their whole budget; this file's frames are named file+offset", "file", path, "budget_bytes", MaxSymbolMemory)
		t = &symbolTable{loads: t.loads}
	}
	s.size += t.size
	s.byFile[id] = t
	return t
}

// forget drops the paths of an exited process (its files' tables stay,
// for the processes that share them).
func (s *symbolizer) forget(pid int) {
	prefix := procfs.Dir(s.procRoot, pid) + "/"
	s.mu.Lock()
	defer s.mu.Unlock()
	for path := range s.paths {
		if strings.HasPrefix(path, prefix) {
			delete(s.paths, path)
		}
	}
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
