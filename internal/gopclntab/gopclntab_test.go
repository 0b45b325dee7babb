package gopclntab

import (
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// goBinaries are Go programs of this machine: the go tool, and the test
// binary itself.
func goBinaries(t *testing.T) []string {
	var out []string
	if p, err := exec.LookPath("go"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			out = append(out, p)
		}
	}
	if p, err := os.Executable(); err == nil {
		out = append(out, p)
	}
	return out
}

// TestSameAsGosym: every function debug/gosym reads from a real Go
// binary's table is named the same here, at its entry and its last byte.
func TestSameAsGosym(t *testing.T) {
	for _, path := range goBinaries(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sec, text := f.Section(".gopclntab"), f.Section(".text")
			if sec == nil || text == nil {
				t.Skip("no .gopclntab")
			}
			data, err := sec.Data()
			if err != nil {
				t.Fatal(err)
			}
			want, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(data, text.Addr)
			if err != nil {
				t.Fatal(err)
			}
			if got.Len() != len(want.Funcs) {
				t.Fatalf("%d functions, debug/gosym %d", got.Len(), len(want.Funcs))
			}
			for _, fn := range want.Funcs {
				for _, pc := range []uint64{fn.Entry, fn.End - 1} {
					if name, ok := got.Lookup(pc); !ok || name != fn.Name {
						t.Fatalf("0x%x: %q %v, debug/gosym %q", pc, name, ok, fn.Name)
					}
				}
			}
			if _, ok := got.Lookup(want.Funcs[len(want.Funcs)-1].End); ok {
				t.Error("an address past the last function is named")
			}
			t.Logf("%d functions named as debug/gosym names them", got.Len())
		})
	}
}

// hostile are tables that crashed or exhausted debug/gosym, or would
// have here, with what the error must say.
var hostile = []struct {
	name string
	data []byte
	want string
}{
	// 16 bytes claiming 0x30303030 functions: debug/gosym allocated a
	// record for each and ran out of memory.
	{"16-byte table, 800M functions", hexBytes("f1ffffff000001083030303000000000"), "header word"},
	{"function count past the section", header(ver120, 8, 0x30303030, 0, 0, 64, 64, 64, 64, 64, 64), "functions do not fit"},
	{"offset past the section", header(ver120, 8, 1, 0, 0, 1<<40, 64, 64, 64, 64, 64), "function name table offset"},
	{"function record past the section", append(header(ver120, 8, 1, 0, 0, 80, 80, 80, 80, 80, 80), le32(0, 0xffff0000, 0x10)...), "runs past the section"},
	{"bad quantum", header(0xfffffff1, 3, 1), "quantum"},
	{"bad pointer size", append([]byte{0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 7}, make([]byte, 16)...), "pointer size 7"},
	{"unknown magic", append([]byte{1, 2, 3, 4, 0, 0, 1, 8}, make([]byte, 16)...), "unknown magic"},
	{"go1.2 count past the section", header(ver12, 8, 1<<40), "functions do not fit"},
}

func hexBytes(s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v = v<<4 | byte(strings.IndexRune("0123456789abcdef", c))
		}
		b[i] = v
	}
	return b
}

// header is a pcHeader of magic with the given pointer size (a quantum
// of 3 when ptr is 3, to test it) and pointer-sized words.
func header(magic uint32, ptr int, words ...uint64) []byte {
	b := le32(magic)
	q, p := byte(1), byte(ptr)
	if ptr == 3 {
		q, p = 3, 8
	}
	b = append(b, 0, 0, q, p)
	for _, w := range words {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b
}

func le32(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return b
}

// table is a Go 1.20 table of two functions, "main.a" at text+0x10 and
// "main.b" at text+0x20, ending at text+0x30.
func table() []byte {
	const hdr = 8 + 8*8
	names := []byte("main.a\x00main.b\x00")
	functab := hdr + len(names)
	// functab: (entry, funcoff) x2, end; then two _func records.
	ft := le32(0x10, 20, 0x20, 28, 0x30)
	ft = append(ft, le32(0x10, 0, 0x20, 7)...)
	return append(append(header(ver120, 8, 2, 0, 0, hdr, 0, 0, 0, uint64(functab)), names...), ft...)
}

func TestHostile(t *testing.T) {
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.data, 0x401000)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	tab, err := Parse(table(), 0x401000)
	if err != nil {
		t.Fatal(err)
	}
	for pc, want := range map[uint64]string{0x401010: "main.a", 0x40101f: "main.a", 0x401020: "main.b", 0x40102f: "main.b", 0x401030: "", 0x401000: ""} {
		if got, _ := tab.Lookup(pc); got != want {
			t.Errorf("0x%x: %q, want %q", pc, got, want)
		}
	}
}

// FuzzParse: no table panics Parse or Lookup, nor keeps more than three
// times its size.
func FuzzParse(f *testing.F) {
	for _, tc := range hostile {
		f.Add(tc.data, uint64(0x401000))
	}
	f.Add(table(), uint64(0x401000))
	f.Fuzz(func(t *testing.T, data []byte, text uint64) {
		tab, err := Parse(data, text)
		if err != nil {
			return
		}
		if kept := 12*tab.Len() + len(tab.names); kept > 3*len(data)+64 {
			t.Fatalf("keeps %d bytes of a %d-byte table", kept, len(data))
		}
		for _, pc := range tab.entries {
			tab.Lookup(pc)
			tab.Lookup(pc - 1)
		}
	})
}
