package elfread

import (
	"debug/elf"
	"errors"
	"fmt"

	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// ErrNoSymbols is returned by Functions for a file without a symbol table
// of the asked type.
var ErrNoSymbols = errors.New("no symbol table")

// Functions lists the defined function symbols (STT_FUNC with a non-zero
// value) of the file's symbol table of type typ (SHT_SYMTAB or
// SHT_DYNSYM), in table order. Names share one copy of the string table,
// so a table whose entries all point at one long name costs no more than
// the table itself; both tables are capped at MaxSymbolTable bytes.
func (f *File) Functions(typ elf.SectionType) ([]symtab.Symbol, error) {
	var sec *Section
	for i := range f.Sections {
		if f.Sections[i].Type == typ {
			sec = &f.Sections[i]
			break
		}
	}
	if sec == nil {
		return nil, ErrNoSymbols
	}
	entSize := uint64(elf.Sym64Size)
	if f.Class == elf.ELFCLASS32 {
		entSize = elf.Sym32Size
	}
	data, err := f.Data(sec, MaxSymbolTable)
	if err != nil {
		return nil, err
	}
	if uint64(len(data))%entSize != 0 {
		return nil, fmt.Errorf("section %s: %d bytes, not a whole number of %d-byte symbols", sec.Name, len(data), entSize)
	}
	if uint64(sec.Link) >= uint64(len(f.Sections)) {
		return nil, fmt.Errorf("section %s: string table index %d of %d sections", sec.Name, sec.Link, len(f.Sections))
	}
	strSec := &f.Sections[sec.Link]
	if strSec.Type != elf.SHT_STRTAB {
		return nil, fmt.Errorf("section %s: its string table (section %d) is of type %s", sec.Name, sec.Link, strSec.Type)
	}
	strData, err := f.Data(strSec, MaxSymbolTable)
	if err != nil {
		return nil, err
	}
	strs := string(strData)
	bo := f.ByteOrder
	var out []symtab.Symbol
	// The first entry is the undefined symbol.
	for off := entSize; off+entSize <= uint64(len(data)); off += entSize {
		b := data[off : off+entSize]
		var name uint32
		var info byte
		var value uint64
		if f.Class == elf.ELFCLASS32 {
			name, value, info = bo.Uint32(b), uint64(bo.Uint32(b[4:])), b[12]
		} else {
			name, info, value = bo.Uint32(b), b[4], bo.Uint64(b[8:])
		}
		if elf.ST_TYPE(info) != elf.STT_FUNC || value == 0 {
			continue
		}
		// As debug/elf does, a name that cannot be read is empty.
		s, _ := cstring(strs, name)
		out = append(out, symtab.Symbol{Addr: value, Name: s})
	}
	return out, nil
}
