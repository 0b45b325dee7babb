package privdir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// other is a uid that is neither root nor the tests' user.
const other = 65534

// tree builds directories and files under a fresh root-owned base by the
// steps of a case, and returns the base.
type step func(t *testing.T, base string)

func mkdir(rel string, mode os.FileMode, uid int) step {
	return func(t *testing.T, base string) {
		p := filepath.Join(base, rel)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
}

func file(rel string, mode os.FileMode, uid int) step {
	return func(t *testing.T, base string) {
		p := filepath.Join(base, rel)
		if err := os.WriteFile(p, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
}

func symlink(rel, target string) step {
	return func(t *testing.T, base string) {
		if !filepath.IsAbs(target) {
			target = filepath.Join(base, target)
		}
		if err := os.Symlink(target, filepath.Join(base, rel)); err != nil {
			t.Fatal(err)
		}
	}
}

// readOnlyMount bind-mounts rel read-only over itself until the test ends.
func readOnlyMount(rel string) step {
	return func(t *testing.T, base string) {
		p := filepath.Join(base, rel)
		if err := syscall.Mount(p, p, "", syscall.MS_BIND, ""); err != nil {
			t.Skipf("bind mount: %v", err)
		}
		t.Cleanup(func() { syscall.Unmount(p, syscall.MNT_DETACH) })
		if err := syscall.Mount("", p, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			t.Fatalf("remount read-only: %v", err)
		}
	}
}

func fifo(rel string) step {
	return func(t *testing.T, base string) {
		if err := syscall.Mkfifo(filepath.Join(base, rel), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func build(t *testing.T, steps []step) string {
	t.Helper()
	base := t.TempDir()
	for _, s := range steps {
		s(t, base)
	}
	return base
}

// want is "" for success, else a text the error holds.
func check(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("refused: %v", err)
	case want != "" && err == nil:
		t.Fatalf("accepted, want an error with %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q, want one with %q", err, want)
	}
}

func TestCheck(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name  string
		steps []step
		dir   string
		want  string
	}{
		{"private", []step{mkdir("c", 0o700, 0)}, "c", ""},
		{"readable by all", []step{mkdir("c", 0o755, 0)}, "c", ""},
		{"read only", []step{mkdir("c", 0o555, 0)}, "c", ""},
		{"owned by another user", []step{mkdir("c", 0o700, other)}, "c", "owned by uid 65534"},
		{"writable by all", []step{mkdir("c", 0o777, 0)}, "c", "writable by group or others"},
		{"writable by its group", []step{mkdir("c", 0o770, 0)}, "c", "writable by group or others"},
		{"sticky and writable by all itself", []step{mkdir("c", os.ModeSticky|0o777, 0)}, "c", "writable by group or others"},
		{"under a directory writable by all", []step{mkdir("p", 0o777, 0), mkdir("p/c", 0o700, 0)}, "p/c", "not sticky"},
		{"under a sticky root directory", []step{mkdir("p", os.ModeSticky|0o777, 0), mkdir("p/c", 0o700, 0)}, "p/c", ""},
		{"under a sticky directory of another user", []step{mkdir("p", os.ModeSticky|0o777, other), mkdir("p/c", 0o700, 0)}, "p/c", "owned by uid 65534"},
		{"sticky root directory, entry of another user", []step{mkdir("p", os.ModeSticky|0o777, 0), mkdir("p/c", 0o700, other)}, "p/c", "owned by uid 65534"},
		{"under a directory of another user", []step{mkdir("p", 0o755, other), mkdir("p/c", 0o700, 0)}, "p/c", "owned by uid 65534"},
		{"symlink to a private directory", []step{mkdir("c", 0o700, 0), symlink("l", "c")}, "l", ""},
		{"symlink to a directory of another user", []step{mkdir("c", 0o700, other), symlink("l", "c")}, "l", "owned by uid 65534"},
		{"symlink into a directory writable by all", []step{mkdir("p", 0o777, 0), mkdir("p/c", 0o700, 0), symlink("l", "p/c")}, "l", "not sticky"},
		{"a file", []step{file("c", 0o600, 0)}, "c", "not a directory"},
		{"missing", nil, "c", "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := build(t, c.steps)
			real, err := Check(filepath.Join(base, c.dir))
			check(t, err, c.want)
			if c.want != "" && c.want != "no such file" && !errors.Is(err, ErrNotPrivate) {
				t.Errorf("%v does not match ErrNotPrivate", err)
			}
			if err == nil {
				if fi, err := os.Lstat(real); err != nil || !fi.IsDir() {
					t.Errorf("resolved to %s, not a directory: %v", real, err)
				}
			}
		})
	}
}

func TestRefusalsAreNamed(t *testing.T) {
	requireRoot(t)
	base := build(t, []step{mkdir("c", 0o777, 0)})
	_, err := Check(filepath.Join(base, "c"))
	var e *Error
	if !errors.Is(err, ErrNotPrivate) || !errors.As(err, &e) || e.Path != filepath.Join(base, "c") {
		t.Fatalf("%v: not an *Error naming the directory", err)
	}
}

func TestMake(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name     string
		steps    []step
		dir      string
		want     string
		wantMode os.FileMode // of dir, when it is made or kept
	}{
		{"missing, with its parent", nil, "p/c", "", 0o700},
		{"existing private", []step{mkdir("c", 0o755, 0)}, "c", "", 0o755},
		{"empty and writable by all: closed", []step{mkdir("c", 0o777, 0)}, "c", "", 0o700},
		{"writable by all, with an entry", []step{mkdir("c", 0o777, 0), file("c/x.bpf.o", 0o644, other)}, "c", "holds 1 entries", 0o700},
		{"owned by another user: untouched", []step{mkdir("c", 0o777, other)}, "c", "owned by uid 65534", 0o777},
		{"under a sticky root directory", []step{mkdir("p", os.ModeSticky|0o777, 0)}, "p/c", "", 0o700},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := build(t, c.steps)
			dir := filepath.Join(base, c.dir)
			_, err := Make(dir)
			check(t, err, c.want)
			fi, err := os.Lstat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != c.wantMode {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), c.wantMode)
			}
		})
	}
}

// TestMakeCreatesNothingUnderOthers: a missing directory below one that is
// not private is refused before anything is made.
func TestMakeCreatesNothingUnderOthers(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name  string
		steps []step
		want  string
	}{
		{"writable by all", []step{mkdir("p", 0o777, 0)}, "not sticky"},
		{"another user's", []step{mkdir("p", 0o755, other)}, "owned by uid 65534"},
		{"sticky, another user's", []step{mkdir("p", os.ModeSticky|0o777, other)}, "owned by uid 65534"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := build(t, c.steps)
			_, err := Make(filepath.Join(base, "p", "a", "c"))
			check(t, err, c.want)
			if entries, _ := os.ReadDir(filepath.Join(base, "p")); len(entries) != 0 {
				t.Errorf("made %v", entries)
			}
		})
	}
}

func TestTemp(t *testing.T) {
	dir, err := Temp("privdir-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%v %v", fi, err)
	}
}

func TestOpen(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name  string
		steps []step
		want  string
	}{
		{"regular, root's", []step{file("f", 0o600, 0)}, ""},
		{"readable by all", []step{file("f", 0o644, 0)}, ""},
		{"owned by another user", []step{file("f", 0o600, other)}, "owned by uid 65534"},
		{"writable by all", []step{file("f", 0o666, 0)}, "writable by group or others"},
		{"writable by its group", []step{file("f", 0o620, 0)}, "writable by group or others"},
		{"symlink to a root file", []step{file("g", 0o600, 0), symlink("f", "g")}, "a symbolic link"},
		{"FIFO", []step{fifo("f")}, "not a regular file"},
		{"directory", []step{mkdir("f", 0o700, 0)}, "not a regular file"},
		{"missing", nil, "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := build(t, c.steps)
			f, err := Open(filepath.Join(base, "f"))
			check(t, err, c.want)
			if err == nil {
				f.Close()
			}
		})
	}
	if _, err := Open("/dev/null"); err == nil || !errors.Is(err, ErrNotPrivate) {
		t.Errorf("a device opened: %v", err)
	}
	if _, err := Open("/nonexistent"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	base := build(t, []step{file("f", 0o600, 0)})
	if _, err := ReadFile(filepath.Join(base, "f"), 3); err == nil || !strings.Contains(err.Error(), "over 3 bytes") {
		t.Errorf("oversize: %v", err)
	}
	if b, err := ReadFile(filepath.Join(base, "f"), 4); err != nil || string(b) != "data" {
		t.Errorf("ReadFile: %q %v", b, err)
	}
}

// TestCheckFile: a file root runs or loads by path passes only when no
// one but root could change it or what leads to it; a symlink is judged
// by what it resolves to.
func TestCheckFile(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name  string
		steps []step
		path  string
		want  string
	}{
		{"root's, executable", []step{file("f", 0o755, 0)}, "f", ""},
		{"writable by all", []step{file("f", 0o777, 0)}, "f", "writable by group or others (mode 0777)"},
		{"writable by its group", []step{file("f", 0o775, 0)}, "f", "writable by group or others"},
		{"owned by another user", []step{file("f", 0o755, other)}, "f", "owned by uid 65534"},
		{"in a directory writable by all", []step{mkdir("d", 0o777, 0), file("d/f", 0o755, 0)}, "d/f", "writable by group or others"},
		{"in a sticky directory writable by all", []step{mkdir("d", os.ModeSticky|0o777, 0), file("d/f", 0o755, 0)}, "d/f", "writable by group or others"},
		{"in a directory of another user", []step{mkdir("d", 0o755, other), file("d/f", 0o755, 0)}, "d/f", "owned by uid 65534"},
		{"symlink to a root file", []step{file("g", 0o755, 0), symlink("f", "g")}, "f", ""},
		{"symlink to a file of another user", []step{file("g", 0o755, other), symlink("f", "g")}, "f", "owned by uid 65534"},
		{"FIFO", []step{fifo("f")}, "f", "not a regular file"},
		{"missing", nil, "f", "no such file"},
		// A Kubernetes ConfigMap volume: a read-only mount of mode 0777.
		{"in a read-only directory writable by all", []step{mkdir("d", 0o777, 0), file("d/f", 0o777, 0), readOnlyMount("d")}, "d/f", ""},
		{"read-only, of another user", []step{mkdir("d", 0o755, 0), file("d/f", 0o755, other), readOnlyMount("d")}, "d/f", "owned by uid 65534"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := build(t, c.steps)
			err := CheckFile(filepath.Join(base, c.path))
			check(t, err, c.want)
			if c.want != "" && c.want != "no such file" && !errors.Is(err, ErrNotPrivate) {
				t.Errorf("%v does not match ErrNotPrivate", err)
			}
		})
	}
}

// TestWriteFileReplacesPlantedNames: what is at the name, a symlink to a
// file of root's or another file, is replaced, never written through; the
// new file is root's, 0600.
func TestWriteFileReplacesPlantedNames(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"nothing", nil},
		{"symlink to a secret", []step{file("secret", 0o600, 0), symlink("f", "secret")}},
		{"dangling symlink", []step{symlink("f", "made-through-it")}},
		{"a file of another user", []step{file("f", 0o666, other)}},
		{"symlinks at old temporary names", []step{file("secret", 0o600, 0), symlink("f.tmp", "secret"), symlink(".f.tmp", "secret")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := build(t, c.steps)
			if err := WriteFile(filepath.Join(base, "f"), []byte("new")); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(base, "secret")); err == nil && string(b) != "data" {
				t.Errorf("the secret became %q", b)
			}
			if _, err := os.Lstat(filepath.Join(base, "made-through-it")); err == nil {
				t.Error("a file was made through a dangling symlink")
			}
			b, err := ReadFile(filepath.Join(base, "f"), 10)
			if err != nil || string(b) != "new" {
				t.Errorf("read back %q, %v", b, err)
			}
			entries, _ := os.ReadDir(base)
			for _, e := range entries {
				if strings.Contains(e.Name(), ".tmp-") {
					t.Errorf("temporary %s left", e.Name())
				}
			}
		})
	}
}

func TestEntry(t *testing.T) {
	requireRoot(t)
	for _, c := range []struct {
		name    string
		alter   func(t *testing.T, path string)
		key     string
		want    string
		notHere bool
	}{
		{"as written", nil, "k1", "", false},
		{"another key", nil, "k2", "made for key", false},
		{"content altered", func(t *testing.T, p string) { os.WriteFile(p, []byte("evil"), 0o600) }, "k1", "not what was recorded", false},
		{"content cut", func(t *testing.T, p string) { os.Truncate(p, 2) }, "k1", "not what was recorded", false},
		{"no record", func(t *testing.T, p string) { os.Remove(p + ".sum") }, "k1", "no such file", true},
		{"no content", func(t *testing.T, p string) { os.Remove(p) }, "k1", "no such file", true},
		{"content of another user", func(t *testing.T, p string) { os.Chown(p, other, other) }, "k1", "owned by uid", false},
		{"record of another user", func(t *testing.T, p string) { os.Chown(p+".sum", other, other) }, "k1", "owned by uid", false},
		{"content a symlink", func(t *testing.T, p string) {
			os.Rename(p, p+".real")
			os.Symlink(p+".real", p)
		}, "k1", "symbolic link", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.bpf.o")
			if err := WriteEntry(p, "k1", []byte("object")); err != nil {
				t.Fatal(err)
			}
			if c.alter != nil {
				c.alter(t, p)
			}
			data, err := ReadEntry(p, c.key, 100)
			check(t, err, c.want)
			if err == nil && string(data) != "object" {
				t.Errorf("read %q", data)
			}
			if verr := VerifyEntry(p, c.key); (verr == nil) != (err == nil) {
				t.Errorf("VerifyEntry %v, ReadEntry %v", verr, err)
			}
			if err != nil && errors.Is(err, fs.ErrNotExist) != c.notHere {
				t.Errorf("%v: a miss is %v, want %v", err, !c.notHere, c.notHere)
			}
		})
	}
}

func TestPublishEntry(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "build.o")
	if err := os.WriteFile(tmp, []byte("object"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "x.bpf.o")
	if err := PublishEntry(tmp, p, "k"); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadEntry(p, "k", 100); err != nil || string(b) != "object" {
		t.Fatalf("%q %v", b, err)
	}
}

// requireRoot skips a test that needs root. It is testkit.RequireRoot's
// one copy: testkit builds BPF objects with internal/clang, which keeps
// its cache through this package, so these tests cannot import it.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}
