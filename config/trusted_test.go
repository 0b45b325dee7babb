package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadRefusesUntrusted: a config file that a user other than root
// could change is refused with its path and the reason; one of root's
// beside it loads.
func TestLoadRefusesUntrusted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: files of other users are made with chown")
	}
	const yaml = "metrics:\n  counters:\n    - name: c_total\n      help: c\n"
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, dir, path string)
		reason string
	}{
		{"root's", func(t *testing.T, dir, path string) {}, ""},
		{"writable by all", func(t *testing.T, dir, path string) { os.Chmod(path, 0o666) }, "writable by group or others"},
		{"writable by its group", func(t *testing.T, dir, path string) { os.Chmod(path, 0o664) }, "writable by group or others"},
		{"another user's", func(t *testing.T, dir, path string) { os.Chown(path, 65534, 65534) }, "owned by uid 65534"},
		{"in a directory writable by all", func(t *testing.T, dir, path string) { os.Chmod(dir, 0o777) }, "writable by group or others"},
		{"in another user's directory", func(t *testing.T, dir, path string) { os.Chown(dir, 65534, 65534) }, "owned by uid 65534"},
		{"a link to another user's file", func(t *testing.T, dir, path string) {
			other := filepath.Join(t.TempDir(), "other.yaml")
			os.WriteFile(other, []byte(yaml), 0o644)
			os.Chown(other, 65534, 65534)
			os.Remove(path)
			os.Symlink(other, path)
		}, "owned by uid 65534"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "configs")
			os.Mkdir(dir, 0o755)
			path := filepath.Join(dir, "c.yaml")
			if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, dir, path)
			cfgs, errs := Load(dir, []string{"c"})
			if tc.reason == "" {
				if len(errs) != 0 || len(cfgs) != 1 {
					t.Fatalf("got %d configs, errors %v; want the config", len(cfgs), errs)
				}
				return
			}
			if len(cfgs) != 0 || len(errs) != 1 {
				t.Fatalf("got %d configs, errors %v; want it refused", len(cfgs), errs)
			}
			if msg := errs[0].Error(); !strings.Contains(msg, "refused") || !strings.Contains(msg, tc.reason) || !strings.Contains(msg, "c.yaml") && !strings.Contains(msg, "configs") {
				t.Errorf("error %q does not name the file and %q", msg, tc.reason)
			}
		})
	}
}
