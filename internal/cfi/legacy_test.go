package cfi

// The parser as it was before it was bounded (commit fc4b1e3), kept by
// the tests only, to show that on real files the bounded one reads the
// very same rows.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// legacyCie is a common information entry.
type legacyCie struct {
	codeAlign   uint64
	dataAlign   int64
	ra          uint64
	fdeEncoding byte
	hasAug      bool
	initial     []byte
}

// legacyParse walks the entries of a .eh_frame (ehFrame) or .debug_frame section
// loaded at addr.
func legacyParse(data []byte, addr uint64, ehFrame bool) ([]Row, error) {
	cies := map[uint64]*legacyCie{}
	var rows []Row
	off := uint64(0)
	for off+4 <= uint64(len(data)) {
		start := off
		length := uint64(binary.LittleEndian.Uint32(data[off:]))
		off += 4
		is64 := false
		if length == 0xffffffff {
			if off+8 > uint64(len(data)) {
				return rows, errors.New("truncated 64-bit length")
			}
			length = binary.LittleEndian.Uint64(data[off:])
			off += 8
			is64 = true
		}
		if length == 0 {
			if ehFrame {
				break // terminator
			}
			continue
		}
		end := off + length
		if end > uint64(len(data)) || end < off {
			return rows, fmt.Errorf("entry at 0x%x runs past the section", start)
		}
		idOff := off
		var id uint64
		if is64 {
			id = binary.LittleEndian.Uint64(data[off:])
			off += 8
		} else {
			id = uint64(binary.LittleEndian.Uint32(data[off:]))
			off += 4
		}
		isCIE := (ehFrame && id == 0) || (!ehFrame && (id == 0xffffffff || (is64 && id == ^uint64(0))))
		body := &legacyReader{data: data[:end], off: off, base: addr}
		if isCIE {
			c, err := legacyParseCIE(body, ehFrame)
			if err != nil {
				return rows, fmt.Errorf("CIE at 0x%x: %w", start, err)
			}
			cies[start] = c
		} else {
			cieOff := id
			if ehFrame {
				cieOff = idOff - id // relative, backwards
			}
			c := cies[cieOff]
			if c == nil {
				var err error
				if c, err = legacyCieAt(data, cieOff, addr, ehFrame); err != nil {
					return rows, fmt.Errorf("FDE at 0x%x: %w", start, err)
				}
				cies[cieOff] = c
			}
			r, err := legacyParseFDE(body, c, ehFrame)
			if err != nil {
				return rows, fmt.Errorf("FDE at 0x%x: %w", start, err)
			}
			rows = append(rows, r...)
		}
		off = end
	}
	return rows, nil
}

// legacyCieAt parses the CIE at off (for FDEs that precede their CIE).
func legacyCieAt(data []byte, off, addr uint64, ehFrame bool) (*legacyCie, error) {
	if off+4 > uint64(len(data)) {
		return nil, fmt.Errorf("CIE offset 0x%x out of the section", off)
	}
	length := uint64(binary.LittleEndian.Uint32(data[off:]))
	p := off + 4
	idSize := uint64(4)
	if length == 0xffffffff {
		length = binary.LittleEndian.Uint64(data[p:])
		p += 8
		idSize = 8
	}
	end := p + length
	if end > uint64(len(data)) {
		return nil, fmt.Errorf("CIE at 0x%x runs past the section", off)
	}
	return legacyParseCIE(&legacyReader{data: data[:end], off: p + idSize, base: addr}, ehFrame)
}

func legacyParseCIE(r *legacyReader, ehFrame bool) (*legacyCie, error) {
	version := r.u8()
	aug := r.cstring()
	c := &legacyCie{fdeEncoding: 0}
	if bytes.Contains(aug, []byte("eh")) {
		r.off += 8
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

func legacyParseFDE(r *legacyReader, c *legacyCie, ehFrame bool) ([]Row, error) {
	var begin, size uint64
	if ehFrame {
		begin = r.pointer(c.fdeEncoding)
		size = r.pointer(c.fdeEncoding & 0x0f)
	} else {
		begin = r.u64()
		size = r.u64()
	}
	if c.hasAug {
		n := r.uleb()
		r.off += n
	}
	if r.err != nil {
		return nil, r.err
	}
	if size == 0 {
		return nil, nil
	}
	m := &legacyMachine{legacyCie: c, loc: begin}
	// The CIE's initial instructions set the rules every row starts from.
	if err := m.run(c.initial, nil); err != nil {
		return nil, err
	}
	m.initial = m.state
	var rows []Row
	if err := m.run(r.rest(), &rows); err != nil {
		return nil, err
	}
	rows = append(rows, m.row())
	// Past the function: no information until the next one.
	rows = append(rows, Row{PC: begin + size, CFAReg: RegNone, end: true})
	return rows, nil
}

// legacyState is the rule set at one location.
type legacyState struct {
	cfaReg    uint64
	cfaOffset int64
	cfaExpr   bool
	bp        legacyRegRule
}

type legacyRegRule struct {
	saved  bool
	offset int64
}

type legacyMachine struct {
	legacyCie *legacyCie
	loc       uint64
	state     legacyState
	initial   legacyState
	stack     []legacyState
}

// row is the current legacyState as a Row at the current location.
func (m *legacyMachine) row() Row {
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

// run executes call frame instructions; with rows set, every advance of
// the location emits the row that held before it.
func (m *legacyMachine) run(insns []byte, rows *[]Row) error {
	r := &legacyReader{data: insns}
	advance := func(delta uint64) {
		if rows != nil {
			*rows = append(*rows, m.row())
		}
		m.loc += delta * m.legacyCie.codeAlign
	}
	setReg := func(reg uint64, rule legacyRegRule) {
		if reg == dwarfBP {
			m.state.bp = rule
		}
	}
	restore := func(reg uint64) {
		if reg == dwarfBP {
			m.state.bp = m.initial.bp
		}
	}
	for r.off < uint64(len(r.data)) && r.err == nil {
		op := r.u8()
		switch op >> 6 {
		case 1: // DW_CFA_advance_loc
			advance(uint64(op & 0x3f))
			continue
		case 2: // DW_CFA_offset
			setReg(uint64(op&0x3f), legacyRegRule{saved: true, offset: int64(r.uleb()) * m.legacyCie.dataAlign})
			continue
		case 3: // DW_CFA_restore
			restore(uint64(op & 0x3f))
			continue
		}
		switch op {
		case 0x00: // nop
		case 0x01: // set_loc
			loc := r.pointer(m.legacyCie.fdeEncoding)
			if rows != nil {
				*rows = append(*rows, m.row())
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
			setReg(reg, legacyRegRule{saved: true, offset: int64(r.uleb()) * m.legacyCie.dataAlign})
		case 0x06: // restore_extended
			restore(r.uleb())
		case 0x07, 0x08: // undefined, same_value
			setReg(r.uleb(), legacyRegRule{})
		case 0x09: // register
			reg := r.uleb()
			r.uleb()
			setReg(reg, legacyRegRule{})
		case 0x0a: // remember_state
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
			r.off += r.uleb()
			m.state.cfaExpr = true
		case 0x10: // expression
			reg := r.uleb()
			r.off += r.uleb()
			setReg(reg, legacyRegRule{})
		case 0x11: // offset_extended_sf
			reg := r.uleb()
			setReg(reg, legacyRegRule{saved: true, offset: r.sleb() * m.legacyCie.dataAlign})
		case 0x12: // def_cfa_sf
			m.state.cfaReg = r.uleb()
			m.state.cfaOffset = r.sleb() * m.legacyCie.dataAlign
			m.state.cfaExpr = false
		case 0x13: // def_cfa_offset_sf
			m.state.cfaOffset = r.sleb() * m.legacyCie.dataAlign
		case 0x14: // val_offset
			reg := r.uleb()
			r.uleb()
			setReg(reg, legacyRegRule{})
		case 0x15: // val_offset_sf
			reg := r.uleb()
			r.sleb()
			setReg(reg, legacyRegRule{})
		case 0x16: // val_expression
			reg := r.uleb()
			r.off += r.uleb()
			setReg(reg, legacyRegRule{})
		case 0x2e: // GNU_args_size
			r.uleb()
		case 0x2f: // GNU_negative_offset_extended
			reg := r.uleb()
			setReg(reg, legacyRegRule{saved: true, offset: -int64(r.uleb()) * m.legacyCie.dataAlign})
		default:
			return fmt.Errorf("unknown call frame instruction 0x%02x", op)
		}
	}
	return r.err
}

// legacyReader decodes the little-endian, LEB128 and pointer encodings of call
// frame information; base is the section's address, for pc-relative
// pointers.
type legacyReader struct {
	data []byte
	off  uint64
	base uint64
	err  error
}

func (r *legacyReader) need(n uint64) bool {
	if r.err != nil {
		return false
	}
	if r.off+n > uint64(len(r.data)) || r.off+n < r.off {
		r.err = errors.New("truncated entry")
		return false
	}
	return true
}

func (r *legacyReader) u8() byte {
	if !r.need(1) {
		return 0
	}
	v := r.data[r.off]
	r.off++
	return v
}

func (r *legacyReader) u16() uint16 {
	if !r.need(2) {
		return 0
	}
	v := binary.LittleEndian.Uint16(r.data[r.off:])
	r.off += 2
	return v
}

func (r *legacyReader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(r.data[r.off:])
	r.off += 4
	return v
}

func (r *legacyReader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(r.data[r.off:])
	r.off += 8
	return v
}

func (r *legacyReader) uleb() uint64 {
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

func (r *legacyReader) sleb() int64 {
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

func (r *legacyReader) cstring() []byte {
	if r.err != nil {
		return nil
	}
	i := bytes.IndexByte(r.data[r.off:], 0)
	if i < 0 {
		r.err = errors.New("unterminated augmentation string")
		return nil
	}
	s := r.data[r.off : r.off+uint64(i)]
	r.off += uint64(i) + 1
	return s
}

func (r *legacyReader) rest() []byte {
	if r.err != nil || r.off > uint64(len(r.data)) {
		return nil
	}
	return r.data[r.off:]
}

// pointer decodes a DW_EH_PE-encoded pointer.
func (r *legacyReader) pointer(enc byte) uint64 {
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
