package profile

import (
	"bytes"
	"sort"
	"strings"
	"testing"
)

// FuzzParsePerfMap: any bytes a process writes to its perf map parse within
// bounds, sorted, without panicking.
func FuzzParsePerfMap(f *testing.F) {
	f.Add([]byte("7f0000001000 40 LazyCompile:~foo app.js:1\n0x10 0x8 bar\nbad line\n"))
	f.Add([]byte("ffffffffffffffff ffffffffffffffff wrap\n0 0 zero\n"))
	f.Add([]byte(strings.Repeat("x", maxPerfLine+10) + "\n10 1 after a long line\n"))
	f.Add([]byte("10 1 no newline at the end"))
	f.Add([]byte("\n\n\x00 \x00 \x00\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		syms, _ := parsePerfMap(bytes.NewReader(data))
		if len(syms) > maxPerfSyms {
			t.Fatalf("%d symbols", len(syms))
		}
		if !sort.SliceIsSorted(syms, func(i, j int) bool { return syms[i].start < syms[j].start }) {
			t.Fatal("not sorted")
		}
		for _, s := range syms {
			if len(s.name) > maxPerfLine {
				t.Fatalf("a name of %d bytes", len(s.name))
			}
		}
	})
}

// TestPerfMapBounds: a perf map past its bounds is cut, and says so; a
// line past maxPerfLine is skipped, the next one kept.
func TestPerfMapBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		syms int
		cut  bool
	}{
		{"within", "10 1 a\n20 1 b\n", 2, false},
		{"long line", strings.Repeat("y", 3*maxPerfLine) + "\n10 1 a\n", 1, true},
		{"too many symbols", strings.Repeat("10 1 a\n", maxPerfSyms+5), maxPerfSyms, true},
		{"too many bytes", strings.Repeat("10 1 "+strings.Repeat("n", 1000)+"\n", maxPerfMapBytes/1000), -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			syms, cut := parsePerfMap(strings.NewReader(tc.data))
			if (tc.syms >= 0 && len(syms) != tc.syms) || cut != tc.cut {
				t.Fatalf("%d symbols, cut %v; want %d, %v", len(syms), cut, tc.syms, tc.cut)
			}
		})
	}
}
