// Package cfi turns the call frame information of an x86-64 ELF file
// (.eh_frame, else .debug_frame) into compact unwind rows: for each address
// range, where the canonical frame address (CFA) is (the stack or frame
// pointer plus an offset) and where the caller's frame pointer was saved.
// The return address is at CFA-8, as the x86-64 ABI fixes it. The profiler
// loads these rows into BPF maps and walks stacks with them in the kernel,
// as Parca Agent and the OpenTelemetry eBPF profiler do for native code.
package cfi

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/probe-exporter/probe_exporter/internal/elfread"
)

// CFA registers of a Row.
const (
	// RegNone marks a range without unwind information (the gap after a
	// function, or a rule this format cannot express): the unwinder falls
	// back to frame pointers there.
	RegNone uint8 = 0
	RegSP   uint8 = 1
	RegBP   uint8 = 2
)

// Row is the unwind rule from PC up to the next row's PC.
type Row struct {
	PC uint64
	// CFA = (SP or BP) + CFAOffset.
	CFAReg    uint8
	CFAOffset int32
	// BPSaved is set when the caller's frame pointer is at CFA+BPOffset;
	// otherwise it is unchanged.
	BPSaved  bool
	BPOffset int16

	end bool // the end of a function's range
}

// x86-64 DWARF register numbers.
const (
	dwarfBP = 6
	dwarfSP = 7
	dwarfRA = 16
)

// Bounds on what one file's call frame information may cost: the files
// are any local user's binaries.
const (
	// MaxSectionSize caps .eh_frame and .debug_frame, decompressed (a
	// 100 MB C++ binary has about 10 MiB of .eh_frame).
	MaxSectionSize = 32 << 20
	// MaxRows caps the rows one file yields before merging (24 bytes
	// each, 48 MiB): twice what the profiler's kernel map holds for all
	// files together.
	MaxRows = 1 << 21
	// MaxCIEs caps the distinct CIEs of a section (linkers merge equal
	// ones; one per compilation unit is the most real files have).
	MaxCIEs = 1 << 16
	// maxStateDepth caps nested DW_CFA_remember_state (compilers nest
	// one or two).
	maxStateDepth = 64
	// maxAugmentation is the longest CIE augmentation string read
	// ("zPLR" and the like are a few bytes).
	maxAugmentation = 64
)

// ErrNoCFI is returned for files without .eh_frame or .debug_frame.
var ErrNoCFI = errors.New("no .eh_frame or .debug_frame")

// Load reads the rows of an ELF file, sorted by PC, with identical
// neighbours merged. Errors name the file.
func Load(path string) ([]Row, error) {
	f, err := elfread.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := FromELF(f)
	if err != nil && !errors.Is(err, ErrNoCFI) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, err
}

// FromELF reads the rows of an open ELF file.
func FromELF(f *elfread.File) ([]Row, error) {
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("unwind rows for %s are not supported (x86-64 only)", f.Machine)
	}
	var rows []Row
	found := false
	for _, name := range []string{".eh_frame", ".debug_frame"} {
		s := f.Section(name)
		if s == nil || s.Type == elf.SHT_NOBITS {
			continue
		}
		data, err := f.Data(s, MaxSectionSize)
		if err != nil {
			return nil, err
		}
		r, err := Parse(data, s.Addr, name == ".eh_frame")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, r...)
		found = true
		if len(r) > 0 {
			break // .eh_frame is enough when it has entries
		}
	}
	if !found {
		return nil, ErrNoCFI
	}
	return compact(rows), nil
}

// compact sorts rows and drops those that repeat their predecessor's rule
// (an end marker followed by the next function's start keeps the start).
func compact(rows []Row) []Row {
	// At equal PCs a function's start sorts after another's end, so it
	// wins below.
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].PC != rows[j].PC {
			return rows[i].PC < rows[j].PC
		}
		return rows[i].end && !rows[j].end
	})
	out := rows[:0]
	for i, r := range rows {
		if i+1 < len(rows) && rows[i+1].PC == r.PC {
			continue // a later rule for the same PC wins (a start over an end)
		}
		if n := len(out); n > 0 && sameRule(out[n-1], r) {
			continue
		}
		r.end = false
		out = append(out, r)
	}
	return out
}

func sameRule(a, b Row) bool {
	return a.CFAReg == b.CFAReg && a.CFAOffset == b.CFAOffset && a.BPSaved == b.BPSaved && a.BPOffset == b.BPOffset
}

// cie is a common information entry.
type cie struct {
	codeAlign   uint64
	dataAlign   int64
	ra          uint64
	fdeEncoding byte
	hasAug      bool
	initial     []byte
}

// Parse reads the rows of a .eh_frame (ehFrame) or .debug_frame section
// loaded at addr, unsorted and unmerged; FromELF sorts and merges them.
// Every read is checked against the section, the rows are capped at
// MaxRows and the call frame instructions run (a CIE's once per FDE)
// at four times the section's size: a malformed section is an error
// saying where, never a panic or an endless walk.
func Parse(data []byte, addr uint64, ehFrame bool) ([]Row, error) {
	p := &parser{
		data: data, addr: addr, ehFrame: ehFrame,
		cies:   map[uint64]*cie{},
		budget: 4*len(data) + 1<<20,
	}
	return p.parse()
}

// parser is the walk of one section.
type parser struct {
	data    []byte
	addr    uint64
	ehFrame bool
	cies    map[uint64]*cie
	rows    []Row
	// budget is how many more bytes of call frame instructions may run.
	budget int
}

// entry is the extent of a CIE or FDE: its body (after the length)
// ends at end; the CIE pointer or id is at idOff, of idSize bytes.
type entry struct {
	idOff, idSize, end uint64
	terminator         bool
}

// entryAt reads the length of the entry at off.
func (p *parser) entryAt(off uint64) (entry, error) {
	n := uint64(len(p.data))
	if off > n || n-off < 4 {
		return entry{}, fmt.Errorf("entry at 0x%x: no room for its length", off)
	}
	length := uint64(binary.LittleEndian.Uint32(p.data[off:]))
	at := off + 4
	e := entry{idSize: 4}
	if length == 0xffffffff {
		if n-at < 8 {
			return entry{}, fmt.Errorf("entry at 0x%x: truncated 64-bit length", off)
		}
		length = binary.LittleEndian.Uint64(p.data[at:])
		at += 8
		e.idSize = 8
	}
	if length == 0 {
		e.terminator, e.end = true, at
		return e, nil
	}
	if length > n-at {
		return entry{}, fmt.Errorf("entry at 0x%x: %d bytes run past the section (%d bytes)", off, length, n)
	}
	if length < e.idSize {
		return entry{}, fmt.Errorf("entry at 0x%x: %d bytes, no room for its %d-byte id", off, length, e.idSize)
	}
	e.idOff, e.end = at, at+length
	return e, nil
}

func (e entry) id(data []byte) uint64 {
	if e.idSize == 8 {
		return binary.LittleEndian.Uint64(data[e.idOff:])
	}
	return uint64(binary.LittleEndian.Uint32(data[e.idOff:]))
}

func (p *parser) parse() ([]Row, error) {
	off := uint64(0)
	for off+4 <= uint64(len(p.data)) {
		start := off
		e, err := p.entryAt(off)
		if err != nil {
			return p.rows, err
		}
		if e.terminator {
			if p.ehFrame {
				break
			}
			off = e.end
			continue
		}
		id := e.id(p.data)
		isCIE := (p.ehFrame && id == 0) || (!p.ehFrame && (id == 0xffffffff || (e.idSize == 8 && id == ^uint64(0))))
		body := &reader{data: p.data[:e.end], off: e.idOff + e.idSize, base: p.addr}
		if isCIE {
			if _, err := p.cie(start, body); err != nil {
				return p.rows, fmt.Errorf("CIE at 0x%x: %w", start, err)
			}
		} else {
			cieOff := id
			if p.ehFrame {
				// Relative, backwards from the pointer itself.
				if id > e.idOff {
					return p.rows, fmt.Errorf("FDE at 0x%x: CIE pointer 0x%x points before the section", start, id)
				}
				cieOff = e.idOff - id
			}
			c, err := p.cieAt(cieOff)
			if err != nil {
				return p.rows, fmt.Errorf("FDE at 0x%x: %w", start, err)
			}
			if err := p.fde(body, c); err != nil {
				return p.rows, fmt.Errorf("FDE at 0x%x: %w", start, err)
			}
		}
		off = e.end
	}
	return p.rows, nil
}

// cie parses and remembers the CIE at off, whose body r reads.
func (p *parser) cie(off uint64, r *reader) (*cie, error) {
	if c, ok := p.cies[off]; ok {
		return c, nil
	}
	if len(p.cies) >= MaxCIEs {
		return nil, fmt.Errorf("more than %d CIEs", MaxCIEs)
	}
	c, err := parseCIE(r, p.ehFrame)
	if err != nil {
		return nil, err
	}
	p.cies[off] = c
	return c, nil
}

// cieAt is the CIE at off, for FDEs (which may precede their CIE).
func (p *parser) cieAt(off uint64) (*cie, error) {
	if c, ok := p.cies[off]; ok {
		return c, nil
	}
	e, err := p.entryAt(off)
	if err != nil {
		return nil, fmt.Errorf("CIE: %w", err)
	}
	if e.terminator {
		return nil, fmt.Errorf("CIE at 0x%x is a terminator", off)
	}
	c, err := p.cie(off, &reader{data: p.data[:e.end], off: e.idOff + e.idSize, base: p.addr})
	if err != nil {
		return nil, fmt.Errorf("CIE at 0x%x: %w", off, err)
	}
	return c, nil
}

func parseCIE(r *reader, ehFrame bool) (*cie, error) {
	version := r.u8()
	aug := r.cstring(maxAugmentation)
	c := &cie{fdeEncoding: 0}
	if bytes.Contains(aug, []byte("eh")) {
		r.skip(8)
	}
	if !ehFrame && version >= 4 {
		r.u8() // address size
		r.u8() // segment size
	}
	c.codeAlign = r.uleb()
	c.dataAlign = r.sleb()
	if version == 1 {
		c.ra = uint64(r.u8())
	} else {
		c.ra = r.uleb()
	}
	if len(aug) > 0 && aug[0] == 'z' {
		c.hasAug = true
		n := r.uleb()
		if !r.need(n) {
			return nil, r.err
		}
		augEnd := r.off + n
		for _, ch := range aug[1:] {
			switch ch {
			case 'R':
				c.fdeEncoding = r.u8()
			case 'P':
				enc := r.u8()
				r.pointer(enc)
			case 'L':
				r.u8()
			case 'S', 'B':
			default:
				// Unknown augmentation: its data length lets us skip it.
			}
		}
		r.off = augEnd
	}
	if r.err != nil {
		return nil, r.err
	}
	c.initial = r.rest()
	return c, nil
}

// fde adds the rows of the FDE whose body r reads.
func (p *parser) fde(r *reader, c *cie) error {
	var begin, size uint64
	if p.ehFrame {
		begin = r.pointer(c.fdeEncoding)
		size = r.pointer(c.fdeEncoding & 0x0f)
	} else {
		begin = r.u64()
		size = r.u64()
	}
	if c.hasAug {
		n := r.uleb()
		r.skip(n)
	}
	if r.err != nil {
		return r.err
	}
	if size == 0 {
		return nil
	}
	m := &machine{cie: c, loc: begin, p: p}
	// The CIE's initial instructions set the rules every row starts from.
	if err := m.run(c.initial, false); err != nil {
		return fmt.Errorf("CIE instructions: %w", err)
	}
	m.initial = m.state
	if err := m.run(r.rest(), true); err != nil {
		return err
	}
	if err := m.emit(); err != nil {
		return err
	}
	// Past the function: no information until the next one.
	return p.add(Row{PC: begin + size, CFAReg: RegNone, end: true})
}

// add appends a row, up to MaxRows.
func (p *parser) add(r Row) error {
	if len(p.rows) >= MaxRows {
		return fmt.Errorf("more than %d unwind rows", MaxRows)
	}
	p.rows = append(p.rows, r)
	return nil
}

// state is the rule set at one location.
type state struct {
	cfaReg    uint64
	cfaOffset int64
	cfaExpr   bool
	bp        regRule
}

type regRule struct {
	saved  bool
	offset int64
}

type machine struct {
	p       *parser
	cie     *cie
	loc     uint64
	state   state
	initial state
	stack   []state
}

// row is the current state as a Row at the current location.
func (m *machine) row() Row {
	r := Row{PC: m.loc}
	switch {
	case m.state.cfaExpr:
		// Expressions appear in PLT stubs: CFA is rsp+8 except for a few
		// bytes, close enough for a profiler.
		r.CFAReg, r.CFAOffset = RegSP, 8
	case m.state.cfaReg == dwarfSP:
		r.CFAReg, r.CFAOffset = RegSP, int32(m.state.cfaOffset)
	case m.state.cfaReg == dwarfBP:
		r.CFAReg, r.CFAOffset = RegBP, int32(m.state.cfaOffset)
	default:
		r.CFAReg = RegNone
	}
	if m.state.bp.saved && m.state.bp.offset >= -32768 && m.state.bp.offset <= 32767 {
		r.BPSaved, r.BPOffset = true, int16(m.state.bp.offset)
	}
	return r
}

// emit adds the current row.
func (m *machine) emit() error { return m.p.add(m.row()) }

// run executes call frame instructions; with emit set, every advance of
// the location emits the row that held before it.
func (m *machine) run(insns []byte, emit bool) error {
	if m.p.budget -= len(insns); m.p.budget < 0 {
		return errors.New("call frame instructions run past four times the section's size")
	}
	r := &reader{data: insns}
	var err error
	advance := func(delta uint64) {
		if emit && err == nil {
			err = m.emit()
		}
		m.loc += delta * m.cie.codeAlign
	}
	setReg := func(reg uint64, rule regRule) {
		if reg == dwarfBP {
			m.state.bp = rule
		}
	}
	restore := func(reg uint64) {
		if reg == dwarfBP {
			m.state.bp = m.initial.bp
		}
	}
	for r.off < uint64(len(r.data)) && r.err == nil && err == nil {
		op := r.u8()
		switch op >> 6 {
		case 1: // DW_CFA_advance_loc
			advance(uint64(op & 0x3f))
			continue
		case 2: // DW_CFA_offset
			setReg(uint64(op&0x3f), regRule{saved: true, offset: int64(r.uleb()) * m.cie.dataAlign})
			continue
		case 3: // DW_CFA_restore
			restore(uint64(op & 0x3f))
			continue
		}
		switch op {
		case 0x00: // nop
		case 0x01: // set_loc
			loc := r.pointer(m.cie.fdeEncoding)
			if emit && err == nil {
				err = m.emit()
			}
			m.loc = loc
		case 0x02:
			advance(uint64(r.u8()))
		case 0x03:
			advance(uint64(r.u16()))
		case 0x04:
			advance(uint64(r.u32()))
		case 0x05: // offset_extended
			reg := r.uleb()
			setReg(reg, regRule{saved: true, offset: int64(r.uleb()) * m.cie.dataAlign})
		case 0x06: // restore_extended
			restore(r.uleb())
		case 0x07, 0x08: // undefined, same_value
			setReg(r.uleb(), regRule{})
		case 0x09: // register
			reg := r.uleb()
			r.uleb()
			setReg(reg, regRule{})
		case 0x0a: // remember_state
			if len(m.stack) >= maxStateDepth {
				return fmt.Errorf("remember_state nested deeper than %d", maxStateDepth)
			}
			m.stack = append(m.stack, m.state)
		case 0x0b: // restore_state
			if n := len(m.stack); n > 0 {
				m.state = m.stack[n-1]
				m.stack = m.stack[:n-1]
			}
		case 0x0c: // def_cfa
			m.state.cfaReg = r.uleb()
			m.state.cfaOffset = int64(r.uleb())
			m.state.cfaExpr = false
		case 0x0d: // def_cfa_register
			m.state.cfaReg = r.uleb()
			m.state.cfaExpr = false
		case 0x0e: // def_cfa_offset
			m.state.cfaOffset = int64(r.uleb())
		case 0x0f: // def_cfa_expression
			r.skip(r.uleb())
			m.state.cfaExpr = true
		case 0x10: // expression
			reg := r.uleb()
			r.skip(r.uleb())
			setReg(reg, regRule{})
		case 0x11: // offset_extended_sf
			reg := r.uleb()
			setReg(reg, regRule{saved: true, offset: r.sleb() * m.cie.dataAlign})
		case 0x12: // def_cfa_sf
			m.state.cfaReg = r.uleb()
			m.state.cfaOffset = r.sleb() * m.cie.dataAlign
			m.state.cfaExpr = false
		case 0x13: // def_cfa_offset_sf
			m.state.cfaOffset = r.sleb() * m.cie.dataAlign
		case 0x14: // val_offset
			reg := r.uleb()
			r.uleb()
			setReg(reg, regRule{})
		case 0x15: // val_offset_sf
			reg := r.uleb()
			r.sleb()
			setReg(reg, regRule{})
		case 0x16: // val_expression
			reg := r.uleb()
			r.skip(r.uleb())
			setReg(reg, regRule{})
		case 0x2e: // GNU_args_size
			r.uleb()
		case 0x2f: // GNU_negative_offset_extended
			reg := r.uleb()
			setReg(reg, regRule{saved: true, offset: -int64(r.uleb()) * m.cie.dataAlign})
		default:
			return fmt.Errorf("unknown call frame instruction 0x%02x", op)
		}
	}
	if err != nil {
		return err
	}
	return r.err
}

// reader decodes the little-endian, LEB128 and pointer encodings of call
// frame information; base is the section's address, for pc-relative
// pointers.
type reader struct {
	data []byte
	off  uint64
	base uint64
	err  error
}

func (r *reader) need(n uint64) bool {
	if r.err != nil {
		return false
	}
	if r.off+n > uint64(len(r.data)) || r.off+n < r.off {
		r.err = errors.New("truncated entry")
		return false
	}
	return true
}

// skip moves past n bytes, which must be there.
func (r *reader) skip(n uint64) {
	if r.need(n) {
		r.off += n
	}
}

func (r *reader) u8() byte {
	if !r.need(1) {
		return 0
	}
	v := r.data[r.off]
	r.off++
	return v
}

func (r *reader) u16() uint16 {
	if !r.need(2) {
		return 0
	}
	v := binary.LittleEndian.Uint16(r.data[r.off:])
	r.off += 2
	return v
}

func (r *reader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(r.data[r.off:])
	r.off += 4
	return v
}

func (r *reader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(r.data[r.off:])
	r.off += 8
	return v
}

func (r *reader) uleb() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		b := r.u8()
		if r.err != nil {
			return 0
		}
		if shift < 64 {
			v |= uint64(b&0x7f) << shift
		}
		if b&0x80 == 0 {
			return v
		}
	}
}

func (r *reader) sleb() int64 {
	var v int64
	var shift uint
	var b byte
	for {
		b = r.u8()
		if r.err != nil {
			return 0
		}
		if shift < 64 {
			v |= int64(b&0x7f) << shift
		}
		shift += 7
		if b&0x80 == 0 {
			break
		}
	}
	if shift < 64 && b&0x40 != 0 {
		v |= -1 << shift
	}
	return v
}

// cstring reads a NUL-terminated string of at most max bytes.
func (r *reader) cstring(max int) []byte {
	if r.err != nil {
		return nil
	}
	if r.off > uint64(len(r.data)) {
		r.err = errors.New("truncated entry")
		return nil
	}
	rest := r.data[r.off:]
	if len(rest) > max+1 {
		rest = rest[:max+1]
	}
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		r.err = fmt.Errorf("augmentation string unterminated within %d bytes", max)
		return nil
	}
	s := r.data[r.off : r.off+uint64(i)]
	r.off += uint64(i) + 1
	return s
}

func (r *reader) rest() []byte {
	if r.err != nil || r.off > uint64(len(r.data)) {
		return nil
	}
	return r.data[r.off:]
}

// pointer decodes a DW_EH_PE-encoded pointer.
func (r *reader) pointer(enc byte) uint64 {
	if enc == 0xff { // omit
		return 0
	}
	at := r.base + r.off
	var v uint64
	switch enc & 0x0f {
	case 0x00:
		v = r.u64()
	case 0x01:
		v = r.uleb()
	case 0x02:
		v = uint64(r.u16())
	case 0x03:
		v = uint64(r.u32())
	case 0x04:
		v = r.u64()
	case 0x09:
		v = uint64(r.sleb())
	case 0x0a:
		v = uint64(int64(int16(r.u16())))
	case 0x0b:
		v = uint64(int64(int32(r.u32())))
	case 0x0c:
		v = r.u64()
	default:
		r.err = fmt.Errorf("unknown pointer encoding 0x%02x", enc)
		return 0
	}
	switch enc & 0x70 {
	case 0x10: // pcrel
		v += at
	}
	return v
}

// Find is the row that covers pc in sorted rows.
func Find(rows []Row, pc uint64) (Row, bool) {
	i := sort.Search(len(rows), func(i int) bool { return rows[i].PC > pc })
	if i == 0 {
		return Row{}, false
	}
	return rows[i-1], true
}
