package scripts

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// The BPF runtime's output lies under /var/tmp, where every user can
// create names: another user's directory, a link or a FIFO there is
// refused, never read or waited on.
func TestReadPrivateRefusesOthersFiles(t *testing.T) {
	a := testkit.NewAttacker(t)
	secret, marker := testkit.Secret(t)
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, dir string) string // returns the output path
		want  string                                // in the error; "" for success
	}{
		{"root's own", func(t *testing.T, dir string) string {
			mod := filepath.Join(dir, "systemtap-root", "m")
			os.MkdirAll(mod, 0o755)
			os.WriteFile(filepath.Join(mod, "__prometheus"), []byte("x 1\n"), 0o644)
			return filepath.Join(mod, "__prometheus")
		}, ""},
		{"directory another user made", func(t *testing.T, dir string) string {
			mod := filepath.Join(dir, "systemtap-root", "m")
			a.Run(t, "mkdir -p "+mod+" && printf 'x 1\\n' > "+mod+"/__prometheus")
			return filepath.Join(mod, "__prometheus")
		}, "not private"},
		{"a link to a secret", func(t *testing.T, dir string) string {
			mod := filepath.Join(dir, "systemtap-root", "m")
			os.MkdirAll(mod, 0o755)
			os.Symlink(secret, filepath.Join(mod, "__prometheus"))
			return filepath.Join(mod, "__prometheus")
		}, "symbolic link"},
		{"a FIFO", func(t *testing.T, dir string) string {
			mod := filepath.Join(dir, "systemtap-root", "m")
			os.MkdirAll(mod, 0o755)
			syscall.Mkfifo(filepath.Join(mod, "__prometheus"), 0o644)
			return filepath.Join(mod, "__prometheus")
		}, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A sticky directory everyone can write, as /var/tmp.
			base := t.TempDir()
			dir := filepath.Join(base, "vartmp")
			if err := os.Mkdir(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{filepath.Dir(base), base} {
				os.Chmod(d, 0o755)
			}
			if err := syscall.Chmod(dir, 0o1777); err != nil {
				t.Fatal(err)
			}
			path := tc.plant(t, dir)
			data, err := readPrivate(path, 1<<20)
			if tc.want == "" {
				if err != nil || string(data) != "x 1\n" {
					t.Fatalf("got %q, %v", data, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, %v; want an error with %q", data, err, tc.want)
			}
			if strings.Contains(string(data)+err.Error(), marker) {
				t.Fatal("the secret leaked")
			}
		})
	}
}
