package cfi

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// TestSameAsLegacy: on real files (libc, python3.11, the go tool, a gcc
// program with a zlib-compressed .debug_frame) the bounded parser reads
// exactly the rows the parser before it read, through debug/elf.
func TestSameAsLegacy(t *testing.T) {
	files := []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/python3.11"}
	if p, err := exec.LookPath("go"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			files = append(files, p)
		}
	}
	if _, err := exec.LookPath("gcc"); err == nil {
		const src = "__attribute__((noinline)) long leaf(long n) { long s = 0; for (long i = 0; i < n; i++) s += i * i; return s; }\nint main(int argc, char **argv) { return (int)leaf(argc); }\n"
		files = append(files, testkit.BuildC(t, "debugframe", src, "-O2", "-g", "-gz=zlib", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"))
	}
	if _, err := exec.LookPath("go"); err == nil {
		// A Go program: its .debug_frame is zlib-compressed by the Go
		// linker.
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644)
		cmd := exec.Command("go", "build", "-o", "hello", ".")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		files = append(files, filepath.Join(dir, "hello"))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if _, err := os.Stat(file); err != nil {
				t.Skip(err)
			}
			got, gerr := Load(file)
			want, werr := legacyLoad(file)
			if (gerr == nil) != (werr == nil) {
				t.Fatalf("error %v, before %v", gerr, werr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%d rows, %d before", len(got), len(want))
			}
			t.Logf("%d rows, as before (%v)", len(got), gerr)
		})
	}
}

// legacyLoad is Load as it was: debug/elf and the unbounded parser.
func legacyLoad(path string) ([]Row, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []Row
	found := false
	for _, name := range []string{".eh_frame", ".debug_frame"} {
		s := f.Section(name)
		if s == nil || s.Type == elf.SHT_NOBITS {
			continue
		}
		data, err := s.Data()
		if err != nil {
			return nil, err
		}
		r, err := legacyParse(data, s.Addr, name == ".eh_frame")
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
		found = true
		if len(r) > 0 {
			break
		}
	}
	if !found {
		return nil, ErrNoCFI
	}
	return compact(rows), nil
}

// hostile are sections that crashed or stalled the parser, with what
// the error must say.
var hostile = []struct {
	name    string
	data    []byte
	ehFrame bool
	want    string
}{
	{"5-byte entry", []byte{0x01, 0, 0, 0, 0}, true, "no room for its 4-byte id"},
	{"CIE pointer below the section", le32(12, 0x100, 0, 0), true, "points before the section"},
	{"CIE pointer wraps", append(le32(12, 0x10, 0, 0), le32(8, 0xfffffffe, 0)...), false, "CIE"},
	{"64-bit length at the end", []byte{0xff, 0xff, 0xff, 0xff, 1, 2}, true, "truncated 64-bit length"},
	{"FDE to a 64-bit length at the end", append(le32(12, 16, 0, 0), 0xff, 0xff, 0xff, 0xff, 1), false, "truncated 64-bit length"},
	{"entry past the end", le32(0x7fffffff, 0), true, "run past the section"},
	{"64-bit length wraps", []byte{0xff, 0xff, 0xff, 0xff, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, true, "run past the section"},
	{"unterminated augmentation", append(le32(20, 0), append([]byte{1}, []byte(strings.Repeat("z", 15))...)...), true, "augmentation string unterminated"},
	{"remember_state without end", cieFDE(nil, append([]byte{0x01}, repeat(0x0a, 100)...)), true, "remember_state nested deeper"},
	{"skip wraps backwards", cieFDE(nil, []byte{0x0f, 0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), true, "truncated entry"},
	{"rows past the cap", cieFDE(nil, repeat(0x41, 1<<22)), true, "more than 2097152 unwind rows"},
	{"long CIE shared by many FDEs", cieFDEs(repeat(0, 64<<10), nil, 100), true, "run past four times"},
}

func le32(v ...uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}

func repeat(b byte, n int) []byte { return []byte(strings.Repeat(string([]byte{b}), n)) }

// cieFDE is a .eh_frame of one CIE (augmentation "zR", pcrel sdata4
// pointers) and one FDE of 0x100 bytes with the given instructions.
func cieFDE(cieInsns, fdeInsns []byte) []byte { return cieFDEs(cieInsns, fdeInsns, 1) }

// cieFDEs is a .eh_frame of one CIE and n FDEs.
func cieFDEs(cieInsns, fdeInsns []byte, n int) []byte {
	cie := append([]byte{0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 16, 1, 0x1b}, cieInsns...)
	out := append(le32(uint32(len(cie))), cie...)
	for range n {
		fdeStart := len(out)
		fde := append(le32(uint32(fdeStart+4), 0, 0x100), 0)
		fde = append(fde, fdeInsns...)
		out = append(out, le32(uint32(len(fde)))...)
		out = append(out, fde...)
	}
	return out
}

// TestHostile: each hostile section is an error saying why.
func TestHostile(t *testing.T) {
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.data, 0x1000, tc.ehFrame)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	// A well-formed section still parses.
	rows, err := Parse(cieFDE([]byte{0x0c, 7, 8}, []byte{0x41, 0x0e, 16}), 0x1000, true)
	if err != nil || len(rows) != 3 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
}

// FuzzParse: no section panics the parser or makes it yield more than
// MaxRows rows.
func FuzzParse(f *testing.F) {
	for _, tc := range hostile {
		if len(tc.data) < 1<<16 {
			f.Add(tc.data, tc.ehFrame)
		}
	}
	f.Add(cieFDE([]byte{0x0c, 7, 8, 0x90, 1}, []byte{0x41, 0x0e, 16, 0x86, 2, 0x43, 0x0d, 6, 0x0a, 0x41, 0x0b}), true)
	f.Fuzz(func(t *testing.T, data []byte, ehFrame bool) {
		rows, err := Parse(data, 0x1000, ehFrame)
		if len(rows) > MaxRows {
			t.Fatalf("%d rows (%v)", len(rows), err)
		}
		compact(rows)
	})
}
