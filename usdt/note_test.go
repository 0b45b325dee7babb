package usdt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadNotesErrors checks that every failure names the file: a shell
// shim in front of the real binary used to give only "bad magic number".
func TestReadNotesErrors(t *testing.T) {
	dir := t.TempDir()
	shim := filepath.Join(dir, "python3")
	if err := os.WriteFile(shim, []byte("#!/usr/bin/env sh\nexec /usr/bin/python3 \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "truncated")
	if err := os.WriteFile(short, []byte("\x7fELF\x02\x01\x01"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"shell shim", shim, []string{"usdt: " + shim + " is not an ELF file", "bad magic number"}},
		{"truncated ELF", short, []string{"usdt: " + short + ": "}},
		{"missing", filepath.Join(dir, "nope"), []string{"usdt: open " + filepath.Join(dir, "nope") + ": no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadNotes(tc.path)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Count(err.Error(), tc.path) != 1 {
				t.Errorf("error %q should name %s once", err, tc.path)
			}
		})
	}
}
