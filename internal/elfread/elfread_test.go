package elfread

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
	"github.com/probe-exporter/probe_exporter/internal/testkit/elfgen"
)

// realFiles are Debian's binaries the exporter reads every day, and a
// program built with compressed debug sections when gcc is there.
func realFiles(t *testing.T) []string {
	files := []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/python3.11"}
	if goTool, err := exec.LookPath("go"); err == nil {
		if p, err := filepath.EvalSymlinks(goTool); err == nil {
			files = append(files, p)
		}
	}
	if _, err := exec.LookPath("gcc"); err == nil {
		const src = "int f(int x) { return x * 3; }\nint main(int argc, char **argv) { return f(argc); }\n"
		files = append(files, testkit.BuildC(t, "gz", src, "-g", "-gz=zlib"))
	}
	var out []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			out = append(out, f)
		}
	}
	return out
}

// TestSameAsDebugELF: on real files, the headers, every section's data
// (decompressed ones too) and the function symbols are what Go's
// debug/elf reads.
func TestSameAsDebugELF(t *testing.T) {
	for _, path := range realFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer want.Close()
			got, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if got.Class != want.Class || got.Machine != want.Machine || got.Type != want.Type || got.ByteOrder != want.ByteOrder {
				t.Fatalf("header %v %v %v, debug/elf %v %v %v", got.Class, got.Machine, got.Type, want.Class, want.Machine, want.Type)
			}
			if len(got.Progs) != len(want.Progs) {
				t.Fatalf("%d program headers, debug/elf %d", len(got.Progs), len(want.Progs))
			}
			for i, p := range want.Progs {
				if got.Progs[i] != p.ProgHeader {
					t.Errorf("program header %d: %+v, debug/elf %+v", i, got.Progs[i], p.ProgHeader)
				}
			}
			if len(got.Sections) != len(want.Sections) {
				t.Fatalf("%d sections, debug/elf %d", len(got.Sections), len(want.Sections))
			}
			compressed := 0
			for i, ws := range want.Sections {
				gs := &got.Sections[i]
				if gs.SectionHeader != ws.SectionHeader {
					t.Errorf("section %d: %+v, debug/elf %+v", i, gs.SectionHeader, ws.SectionHeader)
					continue
				}
				if ws.Type == elf.SHT_NOBITS {
					continue
				}
				wd, werr := ws.Data()
				gd, gerr := got.Data(gs, 1<<30)
				if (werr == nil) != (gerr == nil) || !bytes.Equal(wd, gd) {
					t.Errorf("section %s: %d bytes (%v), debug/elf %d (%v)", ws.Name, len(gd), gerr, len(wd), werr)
				}
				if ws.Flags&elf.SHF_COMPRESSED != 0 {
					compressed++
				}
			}
			for _, typ := range []elf.SectionType{elf.SHT_SYMTAB, elf.SHT_DYNSYM} {
				read := want.Symbols
				if typ == elf.SHT_DYNSYM {
					read = want.DynamicSymbols
				}
				ws, werr := read()
				gs, gerr := got.Functions(typ)
				if errors.Is(werr, elf.ErrNoSymbols) != errors.Is(gerr, ErrNoSymbols) {
					t.Fatalf("%s: %v, debug/elf %v", typ, gerr, werr)
				}
				i := 0
				for _, s := range ws {
					if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 {
						continue
					}
					if i >= len(gs) || gs[i].Addr != s.Value || gs[i].Name != s.Name {
						t.Fatalf("%s: function %d differs from debug/elf's %s at 0x%x", typ, i, s.Name, s.Value)
					}
					i++
				}
				if i != len(gs) {
					t.Fatalf("%s: %d functions, debug/elf %d", typ, len(gs), i)
				}
				t.Logf("%s: %d functions as debug/elf reads them", typ, i)
			}
			t.Logf("%d sections (%d compressed) as debug/elf reads them", len(got.Sections), compressed)
		})
	}
}

// allocated is how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestMalformed: hostile files are errors that say why, without
// allocating what they claim.
func TestMalformed(t *testing.T) {
	small := []byte("hello, world\n")
	text := elfgen.Section{Name: ".text", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Data: small}
	withSection := func(s elfgen.Section) []byte { return elfgen.Build(text, s) }
	// Many symbols pointing at one long name: debug/elf copies the name
	// once per symbol.
	longName := bytes.Repeat([]byte("n"), 8<<10)
	strtab := append(append([]byte{0}, longName...), 0)
	syms := make([]byte, 24*4097)
	for i := 1; i < 4097; i++ {
		e := syms[24*i:]
		binary.LittleEndian.PutUint32(e, 1)
		e[4] = byte(elf.ST_INFO(elf.STB_GLOBAL, elf.STT_FUNC))
		binary.LittleEndian.PutUint64(e[8:], uint64(0x1000+i))
	}
	sharedNames := elfgen.Build(text,
		elfgen.Section{Name: ".symtab", Type: elf.SHT_SYMTAB, Link: 3, Entsize: 24, Data: syms},
		elfgen.Section{Name: ".strtab", Type: elf.SHT_STRTAB, Data: strtab})

	for _, tc := range []struct {
		name    string
		file    []byte
		section string
		want    string
		// maxAlloc bounds what reading the section may allocate.
		maxAlloc uint64
	}{
		{"script", []byte("#!/bin/sh\necho hi\n"), "", "bad magic number", 0},
		{"truncated header", []byte("\x7fELF\x02\x01\x01"), "", "too short", 0},
		{"claims 1.5 GB", withSection(elfgen.Section{Name: ".debug_frame", Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED, Data: elfgen.Compressed(small, 1500<<20)}),
			".debug_frame", "more than the 1048576 read", 1 << 20},
		{"inflates past its claim", withSection(elfgen.Section{Name: ".debug_frame", Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED, Data: elfgen.ZlibBomb(64 << 20)}),
			".debug_frame", "more than the 1048576 read", 1 << 20},
		{"lies about its size", withSection(elfgen.Section{Name: ".debug_frame", Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED, Data: func() []byte {
			b := elfgen.ZlibBomb(64 << 20)
			binary.LittleEndian.PutUint64(b[8:], 4096) // claims 4 KiB
			return b
		}()}), ".debug_frame", "more than the 4096 bytes its header claims", 1 << 20},
		{"ends early", withSection(elfgen.Section{Name: ".debug_frame", Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED, Data: elfgen.Compressed(small, 1000)}),
			".debug_frame", "unexpected EOF", 1 << 20},
		{"compressed and loaded", withSection(elfgen.Section{Name: ".eh_frame", Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED | elf.SHF_ALLOC, Data: elfgen.Compressed(small, uint64(len(small)))}),
			".eh_frame", "SHF_COMPRESSED applies only", 1 << 20},
		{"unknown compression", withSection(elfgen.Section{Name: ".debug_frame", Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED, Data: func() []byte {
			b := elfgen.Compressed(small, uint64(len(small)))
			b[0] = 9
			return b
		}()}), ".debug_frame", "unknown compression type 9", 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() {
				var f *File
				f, err = NewFile(bytes.NewReader(tc.file), uint64(len(tc.file)))
				if err != nil || tc.section == "" {
					return
				}
				s := f.Section(tc.section)
				if s == nil {
					t.Fatalf("no section %s", tc.section)
				}
				_, err = f.Data(s, 1<<20)
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if tc.maxAlloc > 0 && n > 2*tc.maxAlloc {
				t.Errorf("allocated %d bytes, more than twice %d", n, tc.maxAlloc)
			}
		})
	}

	t.Run("shared names", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "shared")
		os.WriteFile(path, sharedNames, 0o644)
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var fns []string
		n := allocated(func() {
			syms, err := f.Functions(elf.SHT_SYMTAB)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range syms {
				fns = append(fns, s.Name)
			}
		})
		if len(fns) != 4096 || fns[0] != string(longName) {
			t.Fatalf("%d functions", len(fns))
		}
		// debug/elf allocates 4096 copies of the 8 KiB name: 32 MiB.
		if n > 1<<20 {
			t.Errorf("4096 symbols sharing one 8 KiB name allocated %d bytes", n)
		}
	})
}
