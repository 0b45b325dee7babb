package elfread

import (
	"bytes"
	"debug/elf"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit/elfgen"
)

// FuzzNewFile: any bytes are a File or an error, never a panic, and
// reading every section and symbol table stays within the caps.
func FuzzNewFile(f *testing.F) {
	text := elfgen.Section{Name: ".text", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Addr: 0x1000, Data: []byte{0xc3}}
	f.Add(elfgen.Build(text))
	f.Add(elfgen.Build(text, elfgen.Section{Name: ".debug_frame", Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED, Data: elfgen.Compressed([]byte("frames"), 6)}))
	f.Add(elfgen.Build(text, elfgen.Section{Name: ".debug_frame", Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED, Data: elfgen.Compressed(nil, 1500<<20)}))
	syms := make([]byte, 48)
	syms[24+4] = byte(elf.ST_INFO(elf.STB_GLOBAL, elf.STT_FUNC))
	syms[24+8] = 0x10
	f.Add(elfgen.Build(text,
		elfgen.Section{Name: ".symtab", Type: elf.SHT_SYMTAB, Link: 3, Entsize: 24, Data: syms},
		elfgen.Section{Name: ".strtab", Type: elf.SHT_STRTAB, Data: []byte("\x00f\x00")}))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := NewFile(bytes.NewReader(data), uint64(len(data)))
		if err != nil {
			return
		}
		for i := range file.Sections {
			if b, err := file.Data(&file.Sections[i], 1<<20); err == nil && len(b) > 1<<20 {
				t.Fatalf("section %d: %d bytes past the cap", i, len(b))
			}
		}
		for _, typ := range []elf.SectionType{elf.SHT_SYMTAB, elf.SHT_DYNSYM} {
			file.Functions(typ)
		}
	})
}
