package profile

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/internal/elfread"
	"github.com/probe-exporter/probe_exporter/internal/procfs"
	"github.com/probe-exporter/probe_exporter/internal/safeopen"
)

// CPython frames. The BPF program (bpf/python.bpf.h) walks the frame
// chain of the sampled thread with offsets this file gives it per process,
// after checking them against the running interpreter; the frames come
// back as tagged code object addresses, named here from the strings the
// BPF program read once per code object.

// pyTag marks a Python frame among a sample's user addresses.
const pyTag = 1 << 63

// Frame kinds of bpf/python.bpf.h.
const (
	pyFrames310 = 0 // PyFrameObject, one per call of the eval loop
	pyFrames311 = 1 // _PyInterpreterFrame, is_entry ends a call
	pyFrames312 = 2 // _PyInterpreterFrame, owner 3 is the C-stack shim
)

// pyLayout is where one CPython version keeps what the profiler reads:
// struct py_proc of the BPF program without its addresses.
type pyLayout struct {
	InterpHead, ThreadsHead     uint16
	TSNext, TSThreadID, TSFrame uint16
	CFrameFrame                 uint16 // 0xffff: TSFrame is the frame
	FCode, FPrevious, FOwner    uint16
	CoName, CoFile, CoLine      uint16
	StrState, StrLength         uint16
	StrASCII, StrCompact        uint16
	// TSInterp is checked at attach only.
	TSInterp uint16
	Kind     uint8
}

// pyProc is struct py_proc of the BPF program.
type pyProc struct {
	Runtime, CodeType, EvalStart, EvalEnd uint64
	InterpHead, ThreadsHead               uint16
	TSNext, TSThreadID, TSFrame           uint16
	CFrameFrame                           uint16
	FCode, FPrevious, FOwner              uint16
	CoName, CoFile, CoLine                uint16
	StrState, StrLength, StrASCII         uint16
	StrCompact                            uint16
	Kind                                  uint8
	_                                     [7]uint8
	StrType                               uint64
}

// pyLayoutOf gives the layout of CPython 3.minor for 3.10 to 3.12, from
// CPython's headers of those versions (Include/internal/pycore_*.h,
// Include/cpython/*.h) for x86-64 release builds. 3.13 publishes its own
// (_Py_DebugOffsets, read by pyDebugLayout).
func pyLayoutOf(minor int) (pyLayout, bool) {
	switch minor {
	case 10:
		return pyLayout{
			InterpHead: 32, ThreadsHead: 8, // _PyRuntime.interpreters.head, interp->tstate_head
			TSNext: 8, TSInterp: 16, TSThreadID: 176, TSFrame: 24, CFrameFrame: 0xffff,
			FCode: 32, FPrevious: 24, // PyFrameObject.f_code, f_back
			CoName: 112, CoFile: 104, CoLine: 40, // co_name: 3.10 has no co_qualname
			StrState: 32, StrLength: 16, StrASCII: 48, StrCompact: 72,
			Kind: pyFrames310,
		}, true
	case 11:
		return pyLayout{
			InterpHead: 40, ThreadsHead: 16,
			TSNext: 8, TSInterp: 16, TSThreadID: 152, TSFrame: 56, CFrameFrame: 8, // tstate->cframe->current_frame
			FCode: 32, FPrevious: 48, FOwner: 68, // is_entry
			CoName: 128, CoFile: 112, CoLine: 72,
			StrState: 32, StrLength: 16, StrASCII: 48, StrCompact: 72,
			Kind: pyFrames311,
		}, true
	case 12:
		return pyLayout{
			InterpHead: 40, ThreadsHead: 72,
			TSNext: 8, TSInterp: 16, TSThreadID: 136, TSFrame: 56, CFrameFrame: 0,
			FCode: 0, FPrevious: 8, FOwner: 70,
			CoName: 128, CoFile: 112, CoLine: 68,
			StrState: 32, StrLength: 16, StrASCII: 40, StrCompact: 56,
			Kind: pyFrames312,
		}, true
	}
	return pyLayout{}, false
}

// pyDebugOffsetsSize is sizeof(_Py_DebugOffsets) of CPython 3.13.
const pyDebugOffsetsSize = 584

// pyDebugLayout reads the layout from 3.13's _Py_DebugOffsets, which opens
// _PyRuntime: cookie "xdebugpy", then the version (as Py_Version) and
// whether the build is free-threaded, then offsets as uint64.
func pyDebugLayout(b []byte, version uint32) (pyLayout, error) {
	if len(b) < pyDebugOffsetsSize {
		return pyLayout{}, fmt.Errorf("_Py_DebugOffsets: %d bytes, want %d", len(b), pyDebugOffsetsSize)
	}
	if string(b[:8]) != "xdebugpy" {
		return pyLayout{}, errors.New("_PyRuntime does not start with the _Py_DebugOffsets cookie")
	}
	le := binary.LittleEndian
	if v := le.Uint64(b[8:]); v != uint64(version) {
		return pyLayout{}, fmt.Errorf("_Py_DebugOffsets is of version %#x, Py_Version says %#x", v, version)
	}
	if le.Uint64(b[16:]) != 0 {
		return pyLayout{}, errors.New("free-threaded build")
	}
	var err error
	off := func(at int, limitAt int) uint16 {
		v := le.Uint64(b[at:])
		limit := le.Uint64(b[limitAt:]) // the size of the struct the offset is in
		// Within its struct, and small enough for the BPF program's u16.
		if v >= 1<<16 || v+8 > limit {
			if err == nil {
				err = fmt.Errorf("_Py_DebugOffsets: offset %d at byte %d is outside its struct of %d bytes", v, at, limit)
			}
			return 0
		}
		return uint16(v)
	}
	// Byte positions of the fields, from the 3.13 header
	// (Include/internal/pycore_runtime.h).
	const (
		runtimeSize, interpSize, tsSize, frameSize, codeSize, objSize, strSize = 24, 48, 152, 224, 272, 352, 536
	)
	l := pyLayout{
		InterpHead:  off(40, runtimeSize),
		ThreadsHead: off(72, interpSize),
		TSNext:      off(168, tsSize), TSInterp: off(176, tsSize), TSFrame: off(184, tsSize), TSThreadID: off(192, tsSize),
		CFrameFrame: 0xffff,
		FPrevious:   off(232, frameSize), FCode: off(240, frameSize), FOwner: off(264, frameSize),
		CoFile: off(280, codeSize), CoName: off(296, codeSize), CoLine: off(312, codeSize),
		StrState: off(544, strSize), StrLength: off(552, strSize),
		Kind: pyFrames312,
	}
	if t := le.Uint64(b[360:]); t != 8 {
		return pyLayout{}, fmt.Errorf("_Py_DebugOffsets: ob_type at %d, not 8", t)
	}
	ascii := le.Uint64(b[560:])
	if ascii == 0 || ascii > 256 {
		return pyLayout{}, fmt.Errorf("_Py_DebugOffsets: sizeof(PyASCIIObject) %d", ascii)
	}
	// PyCompactUnicodeObject adds utf8_length and utf8 to PyASCIIObject.
	l.StrASCII, l.StrCompact = uint16(ascii), uint16(ascii+16)
	return l, err
}

// pyFileName is how an interpreter's file is named: python3.11 (the
// interpreter in the executable) or libpython3.12.so.1.0.
var pyFileName = regexp.MustCompile(`^(?:lib)?python3\.(\d+)`)

// pyState is what the profiler knows of a process's interpreter: how
// many times it was found not ready, or pySettled.
type pyState int

const (
	// pyAttempts is how many refreshes (about 70 in a process's first 5
	// seconds, then one every 5 seconds) an interpreter may take to
	// look initialized before it counts as a mismatch.
	pyAttempts = 100
	pySettled  = pyState(1 << 30) // named, not supported, or a mismatch
)

// pyNameKey is struct py_name_key of the BPF program.
type pyNameKey struct {
	PID    uint32
	_      uint32
	Tagged uint64
}

// pyName is struct py_name of the BPF program.
type pyName struct {
	Line                 uint32
	NameKind, FileKind   uint8
	_                    uint16
	NameBytes, FileBytes uint32
	Name                 [128]byte
	File                 [256]byte
}

// maxPyNames bounds the frame names kept in userspace (the BPF map holds
// 16384).
const maxPyNames = 16384

// pyTracker finds the interpreters of profiled processes, checks their
// layout and names their frames.
type pyTracker struct {
	procs, names *ebpf.Map
	sym          *symbolizer
	procRoot     string

	mu    sync.Mutex
	state map[int]pyState
	// named caches frame names by (pid, tagged code object).
	named map[pyNameKey]string
	// files are the interpreter symbols of files named like CPython's.
	files map[fileID]map[string]elfread.Sym

	interpreters *prometheus.CounterVec
}

func newPyTracker(procs, names *ebpf.Map, sym *symbolizer, procRoot string) *pyTracker {
	return &pyTracker{
		procs: procs, names: names, sym: sym, procRoot: procRoot,
		state: map[int]pyState{}, named: map[pyNameKey]string{}, files: map[fileID]map[string]elfread.Sym{},
		interpreters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "probe_exporter", Subsystem: "profiler", Name: "python_processes_total",
			Help: "Profiled CPython processes by version and result: named (Python frames in stacks), unsupported (version outside 3.10-3.13, or an architecture other than x86-64), mismatch (the interpreter's layout is not the one expected: its stacks stay native)."},
			[]string{"version", "result"}),
	}
}

// errPythonArch is why an interpreter is unsupported on an architecture
// whose threads the program cannot match (pythonFrames).
var errPythonArch = errors.New("Python frames are read on x86-64 only")

// check looks for an interpreter in pid's mappings, once it is
// initialized, and tells the BPF program its layout when it matches.
func (t *pyTracker) check(pid int, maps []procfs.Mapping) {
	t.mu.Lock()
	st, seen := t.state[pid]
	t.mu.Unlock()
	if seen && st == pySettled {
		return
	}
	result, version, err := t.attach(pid, maps)
	if result == "" || result == "none" {
		// Not initialized, or libpython not mapped yet: checked again
		// at the next refresh of the process's mappings, up to
		// pyAttempts times for an interpreter that never looks right.
		t.mu.Lock()
		t.state[pid]++
		n := t.state[pid]
		t.mu.Unlock()
		if result == "none" || n < pyAttempts {
			return
		}
		result = "mismatch"
	}
	t.mu.Lock()
	t.state[pid] = pySettled
	t.mu.Unlock()
	t.interpreters.WithLabelValues(version, result).Inc()
	switch result {
	case "unsupported":
		if err != nil {
			t.sym.log.Warn("profiler: Python frames not read; its stacks stay native", "pid", pid, "version", version, "reason", err)
			break
		}
		t.sym.log.Warn("profiler: Python version not supported (3.10 to 3.13 are); its stacks stay native", "pid", pid, "version", version)
	case "mismatch":
		t.sym.log.Warn("profiler: Python interpreter does not have the layout of its version; its stacks stay native", "pid", pid, "version", version, "err", err)
	}
}

// attach returns "" to try again later, "none" for no interpreter, or the
// result counted in python_processes_total.
func (t *pyTracker) attach(pid int, maps []procfs.Mapping) (result, version string, err error) {
	for i := range maps {
		m := &maps[i]
		if !m.IsFile() {
			continue
		}
		sub := pyFileName.FindStringSubmatch(filepath.Base(m.Path))
		if sub == nil {
			continue
		}
		minor, _ := strconv.Atoi(sub[1])
		syms, err := t.symbols(pid, m)
		if err != nil || syms["_PyRuntime"].Value == 0 {
			continue // python3.X linked to libpython3.X.so: the interpreter is there
		}
		table := t.sym.table(m)
		if table == nil {
			continue
		}
		bias, ok := table.bias(m.Start, m.Offset)
		if !ok {
			continue
		}
		mem, err := os.Open(filepath.Join(procfs.Dir(t.procRoot, pid), "mem"))
		if err != nil {
			return "", "", nil
		}
		defer mem.Close()
		res, ver, err := t.layout(pid, mem, minor, syms, bias)
		return res, ver, err
	}
	return "none", "", nil
}

// symbols reads the interpreter symbols of m's file once per file (by
// device and inode, as the mapping names it; at most 64 files kept). The
// file is the process's, opened as every mapped file is (internal/safeopen:
// inside its root, regular, never blocking) and read within elfread's
// bounds.
func (t *pyTracker) symbols(pid int, m *procfs.Mapping) (map[string]elfread.Sym, error) {
	id := idOf(m)
	t.mu.Lock()
	syms, ok := t.files[id]
	t.mu.Unlock()
	if ok {
		return syms, nil
	}
	f, err := safeopen.Mapped(t.procRoot, pid, *m, safeopen.Rules{MaxSize: maxELFSize})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ef, err := elfread.NewFile(f, uint64(f.Stat.Size))
	if err == nil {
		syms, err = pySymbols(ef)
	}
	if err != nil {
		syms = nil
	}
	t.mu.Lock()
	if len(t.files) >= 64 {
		clear(t.files)
	}
	t.files[id] = syms
	t.mu.Unlock()
	return syms, err
}

// pySymbols reads the symbols the profiler needs from an interpreter file.
func pySymbols(f *elfread.File) (map[string]elfread.Sym, error) {
	names := []string{"_PyRuntime", "PyCode_Type", "PyUnicode_Type", "_PyEval_EvalFrameDefault", "Py_Version"}
	syms, err := f.Lookup(elf.SHT_DYNSYM, names...)
	if err != nil || len(syms) < len(names)-1 {
		if all, err2 := f.Lookup(elf.SHT_SYMTAB, names...); err2 == nil && len(all) > len(syms) {
			return all, nil
		}
	}
	return syms, err
}

// layout checks the interpreter of one process and describes it to the
// BPF program.
func (t *pyTracker) layout(pid int, mem *os.File, nameMinor int, syms map[string]elfread.Sym, bias uint64) (result, version string, err error) {
	read := func(addr uint64, n int) ([]byte, error) {
		b := make([]byte, n)
		if _, err := mem.ReadAt(b, int64(addr)); err != nil {
			return nil, fmt.Errorf("reading %d bytes at %#x: %w", n, addr, err)
		}
		return b, nil
	}
	ptr := func(addr uint64) uint64 {
		b, err := read(addr, 8)
		if err != nil {
			return 0
		}
		return binary.LittleEndian.Uint64(b)
	}
	minor := nameMinor
	version = fmt.Sprintf("3.%d", minor)
	var hexVersion uint32
	if s, ok := syms["Py_Version"]; ok {
		b, err := read(s.Value+bias, 4)
		if err != nil {
			return "", version, nil
		}
		hexVersion = binary.LittleEndian.Uint32(b)
		if hexVersion>>24 != 3 {
			return "mismatch", version, fmt.Errorf("Py_Version %#x", hexVersion)
		}
		minor = int(hexVersion >> 16 & 0xff)
		version = fmt.Sprintf("3.%d", minor)
		if minor != nameMinor {
			return "mismatch", version, fmt.Errorf("file named for 3.%d holds %s", nameMinor, version)
		}
	}
	if minor < 10 || minor > 13 {
		return "unsupported", version, nil
	}
	if !pythonFrames {
		return "unsupported", version, errPythonArch
	}
	for _, s := range []string{"PyCode_Type", "PyUnicode_Type", "_PyEval_EvalFrameDefault"} {
		if syms[s].Value == 0 {
			return "mismatch", version, fmt.Errorf("no symbol %s", s)
		}
	}
	runtime := syms["_PyRuntime"].Value + bias
	var l pyLayout
	if minor == 13 {
		b, err := read(runtime, pyDebugOffsetsSize)
		if err != nil {
			return "", version, nil
		}
		if l, err = pyDebugLayout(b, hexVersion); err != nil {
			return "mismatch", version, err
		}
	} else {
		l, _ = pyLayoutOf(minor)
	}
	codeType, strType := syms["PyCode_Type"].Value+bias, syms["PyUnicode_Type"].Value+bias
	// Initialized: the runtime has an interpreter with a thread that
	// runs code.
	interp := ptr(runtime + uint64(l.InterpHead))
	if interp == 0 {
		return "", version, nil
	}
	ts := ptr(interp + uint64(l.ThreadsHead))
	if ts == 0 {
		return "", version, nil
	}
	if back := ptr(ts + uint64(l.TSInterp)); back != interp {
		return "mismatch", version, fmt.Errorf("thread state %#x points to interpreter %#x, not %#x", ts, back, interp)
	}
	frame := ptr(ts + uint64(l.TSFrame))
	if frame != 0 && l.CFrameFrame != 0xffff {
		frame = ptr(frame + uint64(l.CFrameFrame))
	}
	if frame == 0 {
		return "", version, nil
	}
	// Some frame of the chain runs a code object whose name is a str.
	found := false
	for i := 0; i < 32 && frame != 0 && !found; i++ {
		code := ptr(frame + uint64(l.FCode))
		if code != 0 && ptr(code+8) == codeType {
			name := ptr(code + uint64(l.CoName))
			if ptr(name+8) != strType {
				return "mismatch", version, fmt.Errorf("code object %#x: its name is not a str", code)
			}
			found = true
		}
		frame = ptr(frame + uint64(l.FPrevious))
	}
	if !found {
		// While it starts, the main thread may run no code object yet.
		return "", version, errors.New("no frame of the main thread runs a code object")
	}
	eval := syms["_PyEval_EvalFrameDefault"]
	p := pyProc{
		Runtime: runtime, CodeType: codeType, EvalStart: eval.Value + bias, EvalEnd: eval.Value + bias + eval.Size,
		InterpHead: l.InterpHead, ThreadsHead: l.ThreadsHead, TSNext: l.TSNext, TSThreadID: l.TSThreadID, TSFrame: l.TSFrame,
		CFrameFrame: l.CFrameFrame, FCode: l.FCode, FPrevious: l.FPrevious, FOwner: l.FOwner,
		CoName: l.CoName, CoFile: l.CoFile, CoLine: l.CoLine,
		StrState: l.StrState, StrLength: l.StrLength, StrASCII: l.StrASCII, StrCompact: l.StrCompact, Kind: l.Kind,
		StrType: strType,
	}
	if err := t.procs.Put(uint32(pid), &p); err != nil {
		return "", version, nil
	}
	return "named", version, nil
}

// forget drops an exited process.
func (t *pyTracker) forget(pid int) {
	_ = t.procs.Delete(uint32(pid))
	t.mu.Lock()
	delete(t.state, pid)
	t.mu.Unlock()
}

// drop removes the names of exited processes, after a drain.
func (t *pyTracker) drop(gone map[int]bool) {
	if len(gone) == 0 {
		return
	}
	t.mu.Lock()
	for k := range t.named {
		if gone[int(k.PID)] {
			delete(t.named, k)
		}
	}
	t.mu.Unlock()
	var k pyNameKey
	var del []pyNameKey
	it := t.names.Iterate()
	var v pyName
	for it.Next(&k, &v) {
		if gone[int(k.PID)] {
			del = append(del, k)
		}
	}
	for _, k := range del {
		_ = t.names.Delete(k)
	}
}

// name names a Python frame of pid: "qualname (file:line)".
func (t *pyTracker) name(pid int, tagged uint64) string {
	k := pyNameKey{PID: uint32(pid), Tagged: tagged}
	t.mu.Lock()
	s, ok := t.named[k]
	t.mu.Unlock()
	if ok {
		return s
	}
	var v pyName
	if err := t.names.Lookup(k, &v); err != nil {
		return "[python]"
	}
	s = pyFrameName(&v)
	t.mu.Lock()
	if len(t.named) >= maxPyNames {
		clear(t.named)
	}
	t.named[k] = s
	t.mu.Unlock()
	return s
}

// pyFrameName formats what the BPF program read of a code object.
func pyFrameName(v *pyName) string {
	name := pyString(v.Name[:], v.NameKind, v.NameBytes)
	file := pyString(v.File[:], v.FileKind, v.FileBytes)
	if name == "" {
		name = "[python]"
	}
	if file == "" {
		return name
	}
	return fmt.Sprintf("%s (%s:%d)", name, file, v.Line)
}

// pyString decodes the text of a str object as py_read_str stored it: the
// last len(buf)-1 bytes of total, in characters of kind bytes (1: Latin-1,
// 2: UCS-2, 4: UCS-4). Characters that would change a stack's shape (the
// frame separator ';', line breaks, other controls) become '?'; a cut
// string starts with "...".
func pyString(buf []byte, kind uint8, total uint32) string {
	k := uint32(kind)
	if k != 1 && k != 2 && k != 4 || len(buf) < 2 {
		return ""
	}
	room := uint32(len(buf) - 1)
	n, cut := total, false
	if n > room {
		skip := n - room
		skip += (k - skip%k) % k
		n, cut = total-skip, true
	}
	if n > room { // a total near 2^32: the skip wrapped
		n, cut = 0, true
	}
	n -= n % k
	var out bytes.Buffer
	if cut {
		out.WriteString("...")
	}
	for i := uint32(0); i+k <= n; i += k {
		var r rune
		switch k {
		case 1:
			r = rune(buf[i])
		case 2:
			r = rune(binary.LittleEndian.Uint16(buf[i:]))
		case 4:
			r = rune(binary.LittleEndian.Uint32(buf[i:]))
		}
		switch {
		case r == ';' || r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			r = '?'
		case r > 0x10ffff || r >= 0xd800 && r < 0xe000:
			r = 0xfffd
		}
		out.WriteRune(r)
	}
	return out.String()
}
