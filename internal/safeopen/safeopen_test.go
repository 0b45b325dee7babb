package safeopen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/procfs"
)

// tree makes a root directory holding what a hostile process could plant,
// and a secret beside it, outside the root.
func tree(t *testing.T) (root string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "root")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "tmp", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(base, "secret"), []byte("secret"), 0o600))
	must(os.WriteFile(filepath.Join(root, "tmp", "ok"), []byte("inside"), 0o644))
	must(os.WriteFile(filepath.Join(root, "tmp", "big"), make([]byte, 100), 0o644))
	must(os.WriteFile(filepath.Join(root, "tmp", "open"), []byte("x"), 0o644))
	must(os.Chmod(filepath.Join(root, "tmp", "open"), 0o666))
	must(os.Symlink(filepath.Join(base, "secret"), filepath.Join(root, "tmp", "abs-out")))
	must(os.Symlink("../../../secret", filepath.Join(root, "tmp", "rel-out")))
	must(os.Symlink("/tmp/ok", filepath.Join(root, "tmp", "abs-in")))
	must(os.Symlink("ok", filepath.Join(root, "tmp", "rel-in")))
	must(os.Symlink("../..", filepath.Join(root, "tmp", "up")))
	must(os.Symlink(base, filepath.Join(root, "tmp", "dir-out")))
	must(unix.Mkfifo(filepath.Join(root, "tmp", "fifo"), 0o666))
	must(unix.Mknod(filepath.Join(root, "tmp", "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	return root
}

func TestInRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod)")
	}
	root := tree(t)
	// A pipe this process holds: /proc/self/fd/N is a magic link to it.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	magic := "/proc/self/fd/" + strconv.Itoa(int(pr.Fd()))

	for _, tc := range []struct {
		name, root, path string
		rules            Rules
		want             string // content read, or
		reason           Reason // a refusal, or
		notExist         bool   // not found inside the root
		anyErr           bool   // refused one way or another
	}{
		{name: "regular", path: "/tmp/ok", want: "inside"},
		{name: "relative name", path: "tmp/ok", want: "inside"},
		{name: "dot dot clamped at the root", path: "/../../../tmp/ok", want: "inside"},
		{name: "dot dot to a secret outside", path: "/../secret", notExist: true},
		{name: "last symlink not followed", path: "/tmp/rel-in", reason: Symlink},
		{name: "last symlink followed inside", path: "/tmp/rel-in", rules: Rules{FollowLast: true}, want: "inside"},
		{name: "absolute symlink resolved in the root", path: "/tmp/abs-in", rules: Rules{FollowLast: true}, want: "inside"},
		{name: "absolute symlink out of the root", path: "/tmp/abs-out", rules: Rules{FollowLast: true}, notExist: true},
		{name: "relative symlink out of the root", path: "/tmp/rel-out", rules: Rules{FollowLast: true}, notExist: true},
		{name: "symlink out as a directory", path: "/tmp/dir-out/secret", notExist: true},
		{name: "symlink up as a directory", path: "/tmp/up/tmp/ok", want: "inside"},
		{name: "FIFO", path: "/tmp/fifo", reason: NotRegular},
		{name: "device", path: "/tmp/null", reason: NotRegular},
		{name: "directory", path: "/tmp/sub", reason: NotRegular},
		{name: "oversize", path: "/tmp/big", rules: Rules{MaxSize: 10}, reason: TooLarge},
		{name: "size within the cap", path: "/tmp/ok", rules: Rules{MaxSize: 6}, want: "inside"},
		{name: "wrong owner", path: "/tmp/ok", rules: Rules{Owners: []uint32{4242}}, reason: Owner},
		{name: "right owner", path: "/tmp/ok", rules: Rules{Owners: []uint32{4242, 0}}, want: "inside"},
		{name: "writable by others", path: "/tmp/open", rules: Rules{NotWritable: true}, reason: Writable},
		{name: "magic link", root: "/", path: magic, rules: Rules{FollowLast: true}, anyErr: true},
	} {
		for _, res := range []struct {
			name    string
			resolve func(int, string, bool) (int, error)
		}{{"openat2", openat2}, {"walk", walk}} {
			t.Run(tc.name+"/"+res.name, func(t *testing.T) {
				r := root
				if tc.root != "" {
					r = tc.root
				}
				f, err := inRoot(r, tc.path, tc.rules, res.resolve)
				switch {
				case tc.want != "":
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					got, err := io.ReadAll(f)
					if err != nil || string(got) != tc.want {
						t.Fatalf("read %q %v, want %q", got, err, tc.want)
					}
				case tc.reason != "":
					if ReasonOf(err) != tc.reason {
						t.Fatalf("got %v (reason %q), want reason %q", err, ReasonOf(err), tc.reason)
					}
				case tc.notExist:
					if !errors.Is(err, fs.ErrNotExist) {
						t.Fatalf("got %v, want not found inside the root", err)
					}
				case tc.anyErr:
					if err == nil {
						f.Close()
						t.Fatal("opened")
					}
				}
			})
		}
	}
}

// TestFIFODoesNotBlock: a FIFO with no writer is refused at once, for
// every way in (a blocking open would hang the test).
func TestFIFODoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(dir, "f"), 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := InRoot(dir, "f", Rules{FollowLast: true}); ReasonOf(err) != NotRegular {
		t.Fatalf("%v", err)
	}
}

func TestMapped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mapped")
	if err := os.WriteFile(path, []byte("mapped content"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, 14, unix.PROT_READ, unix.MAP_SHARED)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	addr := uint64(uintptr(unsafe.Pointer(&b[0])))
	maps, err := procfs.ReadMaps("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var m procfs.Mapping
	for _, mm := range maps {
		if addr >= mm.Start && addr < mm.End {
			m = mm
		}
	}
	if m.Path != path {
		t.Fatalf("mapping %+v", m)
	}
	mf, err := Mapped("/proc", os.Getpid(), m, Rules{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(mf)
	mf.Close()
	if string(got) != "mapped content" {
		t.Fatalf("read %q", got)
	}

	// Swapped under the mapping's name: the path now holds another
	// file; map_files still reaches the mapped one, and by path the
	// other inode is refused.
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	if mf, err := Mapped("/proc", os.Getpid(), m, Rules{}); err == nil {
		got, _ := io.ReadAll(mf)
		mf.Close()
		if string(got) != "mapped content" {
			t.Fatalf("read %q through map_files", got)
		}
	}
	if _, err := InRoot("/", path, Rules{}); err != nil {
		t.Fatal(err)
	}
	other := m
	other.Inode++
	if _, err := Mapped("/proc", os.Getpid(), other, Rules{}); ReasonOf(err) != Changed {
		t.Fatalf("a mapping of another inode: %v", err)
	}
}

func TestExe(t *testing.T) {
	f, err := Exe("/proc", os.Getpid(), Rules{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	exe, _ := os.Executable()
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil || st.Ino != f.Stat.Ino {
		t.Fatalf("%v: inode %d, want %d", err, f.Stat.Ino, st.Ino)
	}
	// ProcPath re-opens the very file.
	if err := unix.Stat(f.ProcPath(), &st); err != nil || st.Ino != f.Stat.Ino {
		t.Fatalf("%s: %v", f.ProcPath(), err)
	}
	err = f.Named(errors.New("reading " + f.ProcPath() + ": bad"))
	if err.Error() != "reading "+f.Name()+": bad" {
		t.Fatal(err)
	}
}

func TestRunner(t *testing.T) {
	r := NewRunner(1, 50*time.Millisecond)
	if err := r.Do(context.Background(), "f", func() error { return io.EOF }); err != io.EOF {
		t.Fatalf("%v", err)
	}
	if err := r.Do(context.Background(), "f", func() error { panic("boom") }); err == nil {
		t.Fatal("panic not returned")
	}
	// A read that blocks until released: timeout, then the only slot is
	// held and the next read is refused at once.
	release := make(chan struct{})
	if err := r.Do(context.Background(), "f", func() error { <-release; return nil }); ReasonOf(err) != Timeout {
		t.Fatalf("%v", err)
	}
	if err := r.Do(context.Background(), "f", func() error { return nil }); ReasonOf(err) != Busy {
		t.Fatalf("%v", err)
	}
	close(release)
	for {
		if err := r.Do(context.Background(), "f", func() error { return nil }); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	block := make(chan struct{})
	defer close(block)
	if err := NewRunner(1, time.Hour).Do(ctx, "f", func() error { <-block; return nil }); ReasonOf(err) != Timeout {
		t.Fatalf("%v", err)
	}
}

func TestOpenat2(t *testing.T) {
	if !Openat2() {
		t.Log("this kernel has no openat2: every open walks")
	}
}

// A config may name a host file through a process's root (/proc/1/root/...,
// as a DaemonSet does): resolved inside that root, not refused as a magic
// link; a symlink there still cannot leave it.
func TestConfiguredThroughProcRoot(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "bin")
	if err := os.WriteFile(target, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{target, "/proc/self/root" + target, fmt.Sprintf("/proc/%d/root%s", os.Getpid(), target)} {
		f, err := Configured(path, Rules{})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		f.Close()
	}
	if _, err := Configured("/proc/self/root/proc/self/root"+target, Rules{}); err == nil {
		t.Error("a magic link inside the root was followed")
	}
}
