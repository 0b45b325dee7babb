package profile

import (
	"bufio"
	"debug/elf"
	"debug/gosym"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// mapping is one executable mapping of a process.
type mapping struct {
	start, end, offset uint64
	path               string // as the process sees it
}

// readMaps reads the executable mappings of /proc/PID/maps.
func readMaps(procRoot string, pid int) ([]mapping, error) {
	f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "maps"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || !strings.Contains(fields[1], "x") {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		start, _ := strconv.ParseUint(lo, 16, 64)
		end, _ := strconv.ParseUint(hi, 16, 64)
		off, _ := strconv.ParseUint(fields[2], 16, 64)
		m := mapping{start: start, end: end, offset: off}
		if len(fields) >= 6 {
			m.path = strings.Join(fields[5:], " ")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// symbolTable resolves file virtual addresses of one ELF file.
type symbolTable struct {
	syms *symtab.Table
	// loads maps file offsets to virtual addresses.
	loads []elf.ProgHeader
	gosym *gosym.Table
}

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
	for _, get := range []func() ([]elf.Symbol, error){f.Symbols, f.DynamicSymbols} {
		ss, err := get()
		if err != nil {
			continue
		}
		for _, s := range ss {
			if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
				syms = append(syms, symtab.Symbol{Addr: s.Value, Name: s.Name})
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
					}
				}
			}
		}
	}
	t.syms = symtab.New(syms)
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

// symbolizer resolves user addresses, caching ELF files by
// path and modification time.
type symbolizer struct {
	procRoot string

	mu sync.Mutex
	// byFile holds one table per file (device, inode, modification
	// time), shared by every process that maps it.
	byFile map[fileID]*symbolTable
	// paths are the files as reached through each process's root, and
	// when they were last stat'ed: at most once a second, not per frame.
	paths map[string]pathEntry
}

type pathEntry struct {
	id      fileID
	checked time.Time
}

func newSymbolizer(procRoot string) *symbolizer {
	return &symbolizer{procRoot: procRoot, byFile: map[fileID]*symbolTable{}, paths: map[string]pathEntry{}}
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
		t = &symbolTable{}
	}
	s.byFile[id] = t
	return t
}

// forget drops the paths of an exited process (its files' tables stay,
// for the processes that share them).
func (s *symbolizer) forget(pid int) {
	prefix := filepath.Join(s.procRoot, strconv.Itoa(pid)) + "/"
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
func (s *symbolizer) hostPath(pid int, m *mapping) string {
	return filepath.Join(s.procRoot, strconv.Itoa(pid), "root", m.path)
}

// user symbolizes a user address of pid with its mappings; JIT code comes
// from /tmp/perf-PID.map; unknown frames are module+0xoffset.
func (s *symbolizer) user(pid int, maps []mapping, perfMap func() []perfSym, addr uint64) string {
	for i := range maps {
		m := &maps[i]
		if addr < m.start || addr >= m.end {
			continue
		}
		off := addr - m.start + m.offset
		if m.path == "" || strings.HasPrefix(m.path, "[") {
			break
		}
		if t := s.table(s.hostPath(pid, m)); t != nil {
			if va, ok := t.vaddr(off); ok {
				if name, ok := t.lookup(va); ok {
					return name
				}
			}
		}
		return fmt.Sprintf("%s+0x%x", filepath.Base(m.path), off)
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
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	names := []int{pid}
	if ns := nsPID(filepath.Join(dir, "status")); ns > 0 && ns != pid {
		names = append([]int{ns}, names...)
	}
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, "root", "tmp", fmt.Sprintf("perf-%d.map", n)))
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

// nsPID is the innermost pid of a process (the last NSpid field of its
// status), 0 if unknown.
func nsPID(status string) int {
	data, err := os.ReadFile(status)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}
