package profile

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzPyString: whatever bytes, kind and length a process's str object
// shows, the frame name is valid UTF-8 without the frame separator or line
// breaks, and never longer than what was read.
func FuzzPyString(f *testing.F) {
	f.Add([]byte("slow_function\x00"), uint8(1), uint32(13))
	f.Add([]byte("a;b\nc"), uint8(1), uint32(5))
	f.Add([]byte{0xff, 0xd8, 0, 0, 0x3b, 0, 0, 0}, uint8(4), uint32(8))
	f.Add([]byte{0x00, 0xd8, 0x3b, 0x00}, uint8(2), uint32(1<<31))
	f.Add([]byte{}, uint8(4), uint32(0xffffffff))
	f.Add([]byte("x"), uint8(3), uint32(1))
	f.Fuzz(func(t *testing.T, buf []byte, kind uint8, total uint32) {
		s := pyString(buf, kind, total)
		if !utf8.ValidString(s) || strings.ContainsAny(s, ";\n\r") {
			t.Fatalf("pyString(%q, %d, %d) = %q", buf, kind, total, s)
		}
		if utf8.RuneCountInString(s) > len(buf)+3 {
			t.Fatalf("pyString(%q, %d, %d) = %q: longer than read", buf, kind, total, s)
		}
	})
}

// FuzzPyDebugOffsets: a process's _PyRuntime, whatever it holds, gives a
// layout whose offsets fit the structs it names, or an error; never a
// panic.
func FuzzPyDebugOffsets(f *testing.F) {
	good := make([]byte, pyDebugOffsetsSize)
	copy(good, "xdebugpy")
	f.Add(good, uint32(0x030d00f0))
	f.Add([]byte("xdebugpy"), uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, version uint32) {
		l, err := pyDebugLayout(b, version)
		if err == nil && (l.StrASCII == 0 || l.StrCompact < l.StrASCII) {
			t.Fatalf("layout %+v without error", l)
		}
	})
}
