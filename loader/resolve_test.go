package loader

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveRelative(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "app"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, tc := range []struct {
		name, root, want, wantErr string
	}{
		{name: "bin/app", want: filepath.Join(dir, "bin", "app")},
		{name: "./bin/app", want: filepath.Join(dir, "bin", "app")},
		{name: "bin/missing", wantErr: "binary bin/missing (relative to the working directory): stat " + filepath.Join(dir, "bin", "missing") + ": no such file or directory"},
		{name: "bin/app", root: "/proc/1/root", wantErr: "name it by its absolute path"},
		{name: "no-such-program-xyz", wantErr: `binary "no-such-program-xyz" not found in PATH`},
	} {
		t.Run(tc.name+tc.root, func(t *testing.T) {
			got, err := ResolveBinary(tc.name, tc.root)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ResolveBinary(%q) = %q, %v; want error %q", tc.name, got, err, tc.wantErr)
				}
				if strings.Contains(tc.name, "/") && strings.Contains(err.Error(), "PATH") {
					t.Errorf("a relative path is reported as a PATH lookup: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ResolveBinary(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
			}
		})
	}
}
