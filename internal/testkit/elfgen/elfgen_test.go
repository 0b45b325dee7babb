package elfgen

import (
	"bytes"
	"compress/zlib"
	"debug/elf"
	"io"
	"testing"
)

// TestZlibBomb: the bomb inflates to exactly the size it claims, as
// zlib (checksum included) reads it.
func TestZlibBomb(t *testing.T) {
	for _, size := range []uint64{1000, 5 << 20} {
		b := ZlibBomb(size)
		r, err := zlib.NewReader(bytes.NewReader(b[24:]))
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		if err != nil || uint64(n) != size {
			t.Fatalf("%d bytes (%v), want %d", n, err, size)
		}
	}
}

// TestBuild: debug/elf reads what Build writes.
func TestBuild(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(Build(Section{Name: ".text", Type: elf.SHT_PROGBITS, Addr: 0x1000, Data: []byte{0xc3}})))
	if err != nil {
		t.Fatal(err)
	}
	if s := f.Section(".text"); s == nil || s.Addr != 0x1000 || s.Size != 1 {
		t.Fatalf("%+v", f.Sections)
	}
}
