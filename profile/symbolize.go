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

// MaxSymbolMemory caps what the symbol tables of all files kept by one
// profiler take together (a Go binary of 100 MB takes about 20 MiB):
// the files of the profiled programs are anyone's, as many as they like.
// Past it, new files' frames are named module+0xoffset.
const MaxSymbolMemory = 256 << 20

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
// drain (see unwinder.load); symbolizing only looks them up.
type symbolizer struct {
	log    *slog.Logger
	mu     sync.Mutex
	byFile map[fileID]*symbolTable
	// size is what the tables of byFile take, up to MaxSymbolMemory.
	size int
}

func newSymbolizer(log *slog.Logger) *symbolizer {
	return &symbolizer{log: log, byFile: map[fileID]*symbolTable{}}
}

// table is the symbol table of m's file, nil until it is loaded.
func (s *symbolizer) table(m *procfs.Mapping) *symbolTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byFile[idOf(m)]
}

// has reports whether m's file was loaded (or tried).
func (s *symbolizer) has(id fileID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byFile[id]
	return ok
}

// store keeps the table of file id (named name in logs), within
// MaxSymbolMemory: past it, only the file's load segments are kept and
// its frames are named file+offset.
func (s *symbolizer) store(id fileID, name string, t *symbolTable) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byFile[id]; ok {
		return
	}
	if s.size+t.size > MaxSymbolMemory {
		s.log.Warn("profiler: symbol tables take their whole budget; this file's frames are named file+offset", "file", name, "budget_bytes", MaxSymbolMemory)
		t = &symbolTable{loads: t.loads}
	}
	s.size += t.size
	s.byFile[id] = t
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
