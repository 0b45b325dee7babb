package ingest

import "testing"

// FuzzFolded: folded bodies never panic.
func FuzzFolded(f *testing.F) {
	for _, s := range []string{"a;b;c 10\n", "a 1\nb 2", "bad", "a;b notanumber", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeFolded(data)
		decodeLines(data)
	})
}

// FuzzPprof: pprof bodies never panic.
func FuzzPprof(f *testing.F) {
	f.Add([]byte("not a profile"))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		decodePprof("", data, 100)
	})
}
