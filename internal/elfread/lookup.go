package elfread

import (
	"debug/elf"
	"fmt"
)

// Sym is a defined symbol found by Lookup.
type Sym struct {
	Value, Size uint64
}

// Lookup finds the defined symbols (of any type) named in names in the
// file's symbol table of type typ (SHT_SYMTAB or SHT_DYNSYM), within the
// same bounds as Functions. Names not found are absent from the result.
func (f *File) Lookup(typ elf.SectionType, names ...string) (map[string]Sym, error) {
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
	if f.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("section %s: symbols of a %s file are not looked up", sec.Name, f.Class)
	}
	data, err := f.Data(sec, MaxSymbolTable)
	if err != nil {
		return nil, err
	}
	if uint64(sec.Link) >= uint64(len(f.Sections)) || f.Sections[sec.Link].Type != elf.SHT_STRTAB {
		return nil, fmt.Errorf("section %s: no string table at index %d", sec.Name, sec.Link)
	}
	strData, err := f.Data(&f.Sections[sec.Link], MaxSymbolTable)
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	strs := string(strData)
	out := map[string]Sym{}
	for off := uint64(elf.Sym64Size); off+elf.Sym64Size <= uint64(len(data)); off += elf.Sym64Size {
		b := data[off : off+elf.Sym64Size]
		shndx := f.ByteOrder.Uint16(b[6:])
		if shndx == uint16(elf.SHN_UNDEF) {
			continue
		}
		name, ok := cstring(strs, f.ByteOrder.Uint32(b))
		if !ok || !want[name] {
			continue
		}
		if _, dup := out[name]; !dup {
			out[name] = Sym{Value: f.ByteOrder.Uint64(b[8:]), Size: f.ByteOrder.Uint64(b[16:])}
		}
	}
	return out, nil
}
