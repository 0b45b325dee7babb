package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// makeIn runs make in the repository with args and returns its output.
func makeIn(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("make", append([]string{"-s", "-C", ".."}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestMakeInstallNeedsBuild: make install without a built binary says to
// run make build first (it does not build as root) and installs nothing.
func TestMakeInstallNeedsBuild(t *testing.T) {
	dest := t.TempDir()
	out, err := exec.Command("make", "-s", "-C", "..", "install", "DESTDIR="+dest, "BINARY=probe_exporter.absent").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "run make build first") {
		t.Fatalf("make install without a binary: %v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(dest); len(entries) != 0 {
		t.Errorf("installed %d entries anyway", len(entries))
	}
}

// releaseTarball runs `make release` for amd64 and returns the tarball's
// path and contents.
func releaseTarball(t *testing.T) (string, []byte) {
	t.Helper()
	out := makeIn(t, "release", "RELEASE_ARCHES=amd64")
	lines := strings.Fields(out)
	if len(lines) == 0 || !strings.HasSuffix(lines[len(lines)-1], ".linux-amd64.tar.gz") {
		t.Fatalf("make release names no tarball:\n%s", out)
	}
	path := filepath.Join("..", lines[len(lines)-1])
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

// unattachedC loads but cannot attach: its uprobe's file does not exist.
const unattachedC = `#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} unattached_total SEC(".maps");

SEC("uprobe//nonexistent/probe-exporter-release:main")
int never(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
`

const unattachedYAML = `metrics:
  counters:
    - name: unattached_total
      help: Never counted
      labels:
        - name: key
          size: 4
          decoders:
            - name: uint
`

// TestReleaseTarball builds the amd64 release tarball with the Makefile
// twice (the same bytes), checks its entries, and runs what it holds: the
// link ebpf_exporter answers as ebpf_exporter and checks configs as
// ebpf_exporter does, which the binary under its own name does not.
func TestReleaseTarball(t *testing.T) {
	path, data := releaseTarball(t)
	if _, again := releaseTarball(t); !bytes.Equal(data, again) {
		t.Errorf("make release twice: %x, then %x", sha256.Sum256(data), sha256.Sum256(again))
	}
	top := strings.TrimSuffix(filepath.Base(path), ".tar.gz")
	if !strings.HasPrefix(top, "probe_exporter-") {
		t.Fatalf("tarball %s", path)
	}
	// The Makefile's date: SOURCE_DATE_EPOCH when set, else the commit's.
	ct := []byte(os.Getenv("SOURCE_DATE_EPOCH"))
	if len(ct) == 0 {
		var err error
		if ct, err = exec.Command("git", "log", "-1", "--format=%ct").Output(); err != nil {
			t.Fatal(err)
		}
	}
	mtime, _ := strconv.ParseInt(strings.TrimSpace(string(ct)), 10, 64)

	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header names %q, time %v: not gzip -n", zr.Name, zr.ModTime)
	}
	type entry struct {
		mode fs.FileMode
		link string
	}
	want := map[string]entry{
		top + "/":                               {fs.ModeDir | 0o755, ""},
		top + "/probe_exporter":                 {0o755, ""},
		top + "/ebpf_exporter":                  {fs.ModeSymlink | 0o777, "probe_exporter"},
		top + "/README.md":                      {0o644, ""},
		top + "/systemd/":                       {fs.ModeDir | 0o755, ""},
		top + "/systemd/probe_exporter.service": {0o644, ""},
		top + "/systemd/probe_exporter.socket":  {0o644, ""},
		top + "/systemd/probe_exporter.default": {0o644, ""},
		top + "/systemd/ebpf_exporter.service":  {0o644, ""},
		top + "/systemd/ebpf_exporter.default":  {0o644, ""},
	}
	if _, err := os.Stat("../LICENSE"); err == nil {
		want[top+"/LICENSE"] = entry{0o644, ""}
	}
	// The pages README.md links to, so that its links resolve in the
	// unpacked tarball too.
	want[top+"/docs/"] = entry{fs.ModeDir | 0o755, ""}
	pages, _ := filepath.Glob("../docs/*.md")
	pictures, _ := filepath.Glob("../docs/*.png")
	if len(pages) == 0 {
		t.Fatal("no docs/*.md")
	}
	for _, p := range append(pages, pictures...) {
		want[top+"/docs/"+filepath.Base(p)] = entry{0o644, ""}
	}
	var names []string
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		w, ok := want[h.Name]
		if !ok {
			t.Errorf("unexpected entry %s", h.Name)
			continue
		}
		delete(want, h.Name)
		if got := h.FileInfo().Mode(); got != w.mode || h.Linkname != w.link {
			t.Errorf("%s: mode %v link %q, want %v %q", h.Name, got, h.Linkname, w.mode, w.link)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" && h.Uname != "" {
			t.Errorf("%s: owner %d:%d (%s), want root", h.Name, h.Uid, h.Gid, h.Uname)
		}
		if h.ModTime.Unix() != mtime {
			t.Errorf("%s: mtime %v, want the commit's %d", h.Name, h.ModTime, mtime)
		}
		if strings.HasPrefix(h.Name, top+"/systemd/") && h.Typeflag == tar.TypeReg {
			body, _ := io.ReadAll(tr)
			shipped, err := os.ReadFile(filepath.Join("systemd", filepath.Base(h.Name)))
			if err != nil || !bytes.Equal(body, shipped) {
				t.Errorf("%s differs from deploy/systemd's (%v)", h.Name, err)
			}
		}
	}
	for name := range want {
		t.Errorf("missing entry %s", name)
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("entries not sorted: %v", names)
	}

	if runtime.GOARCH != "amd64" {
		t.Skipf("the amd64 binary does not run on %s", runtime.GOARCH)
	}
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-C", dir, "-xzf", path).CombinedOutput(); err != nil {
		t.Fatalf("tar -xzf %s: %v\n%s", path, err, out)
	}
	link := filepath.Join(dir, top, "ebpf_exporter")
	bin := filepath.Join(dir, top, "probe_exporter")
	out, err := exec.Command(link, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ebpf_exporter, version ") {
		t.Errorf("%s --version: %v\n%s", link, err, out)
	}

	t.Run("config check as ebpf_exporter's", func(t *testing.T) {
		testkit.RequireRoot(t)
		configs := t.TempDir()
		testkit.CompileBPF(t, unattachedC, configs, "unattached")
		os.WriteFile(filepath.Join(configs, "unattached.yaml"), []byte(unattachedYAML), 0o644)
		// ebpf_exporter's plain check passes a config that loads though
		// its program does not attach; probe_exporter's fails it.
		for _, tc := range []struct {
			path string
			code int
		}{{link, 0}, {bin, 1}} {
			cmd := exec.Command(tc.path, "--config.dir="+configs, "--config.names=unattached", "--config.check")
			out, err := cmd.CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("%s --config.check: exit %d, want %d\n%s", filepath.Base(tc.path), code, tc.code, testkit.Tail(string(out), 20))
			}
		}
	})
}

// installed lists a tree as path -> mode and link target.
func installed(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if info.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			v += " -> " + target
		}
		out[strings.TrimPrefix(p, root)] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMakeInstall installs into a DESTDIR: the binary, the units naming
// it, /etc/default/probe_exporter only where there was none; with
// EBPF_EXPORTER=1 also the link and ebpf_exporter.service, whose
// ExecStart is the link; an administrator's ebpf_exporter.service is kept.
func TestMakeInstall(t *testing.T) {
	makeIn(t, "build") // install installs what make build made
	t.Run("EBPF_EXPORTER=1", func(t *testing.T) {
		dest := t.TempDir()
		os.MkdirAll(filepath.Join(dest, "etc/default"), 0o755)
		mine := []byte("ARGS=\"--config.dir=/srv/mine\"\n")
		os.WriteFile(filepath.Join(dest, "etc/default/probe_exporter"), mine, 0o644)
		makeIn(t, "install", "DESTDIR="+dest, "EBPF_EXPORTER=1")
		got := installed(t, dest)
		want := map[string]string{
			"/etc":                        "drwxr-xr-x",
			"/etc/default":                "drwxr-xr-x",
			"/etc/default/probe_exporter": "-rw-r--r--",
			"/etc/default/ebpf_exporter":  "-rw-r--r--",
			"/etc/systemd":                "drwxr-xr-x",
			"/etc/systemd/system":         "drwxr-xr-x",
			"/etc/systemd/system/probe_exporter.service": "-rw-r--r--",
			"/etc/systemd/system/probe_exporter.socket":  "-rw-r--r--",
			"/etc/systemd/system/ebpf_exporter.service":  "-rw-r--r--",
			"/usr":                          "drwxr-xr-x",
			"/usr/local":                    "drwxr-xr-x",
			"/usr/local/bin":                "drwxr-xr-x",
			"/usr/local/bin/probe_exporter": "-rwxr-xr-x",
			"/usr/local/bin/ebpf_exporter":  "Lrwxrwxrwx -> probe_exporter",
		}
		compareTree(t, got, want)
		if b, _ := os.ReadFile(filepath.Join(dest, "etc/default/probe_exporter")); !bytes.Equal(b, mine) {
			t.Errorf("/etc/default/probe_exporter was overwritten:\n%s", b)
		}
		// Under PREFIX=/usr/local the units are deploy/systemd's as they are.
		for _, f := range []string{"probe_exporter.service", "probe_exporter.socket", "ebpf_exporter.service"} {
			sameFile(t, filepath.Join(dest, "etc/systemd/system", f), filepath.Join("systemd", f))
		}
		sameFile(t, filepath.Join(dest, "etc/default/ebpf_exporter"), "systemd/ebpf_exporter.default")
		u := unit(t, filepath.Join(dest, "etc/systemd/system/ebpf_exporter.service"))
		exe := strings.Fields(u["ExecStart"])[0]
		if exe != "/usr/local/bin/ebpf_exporter" {
			t.Errorf("ebpf_exporter.service: ExecStart=%s", u["ExecStart"])
		}
		out, err := exec.Command(filepath.Join(dest, exe), "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "ebpf_exporter, version ") {
			t.Errorf("%s --version: %v\n%s", exe, err, out)
		}

		// Again, over an administrator's ebpf_exporter.service: kept.
		theirs := []byte("[Service]\nExecStart=/usr/local/bin/ebpf_exporter --config.dir=/etc/ebpf_exporter\n")
		os.WriteFile(filepath.Join(dest, "etc/systemd/system/ebpf_exporter.service"), theirs, 0o644)
		makeIn(t, "install", "DESTDIR="+dest, "EBPF_EXPORTER=1")
		if b, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/ebpf_exporter.service")); !bytes.Equal(b, theirs) {
			t.Errorf("the node's ebpf_exporter.service was overwritten:\n%s", b)
		}
	})
	t.Run("PREFIX=/usr", func(t *testing.T) {
		dest := t.TempDir()
		makeIn(t, "install", "DESTDIR="+dest, "PREFIX=/usr")
		got := installed(t, dest)
		for _, p := range []string{"/usr/bin/ebpf_exporter", "/etc/systemd/system/ebpf_exporter.service", "/etc/default/ebpf_exporter"} {
			if _, ok := got[p]; ok {
				t.Errorf("%s installed without EBPF_EXPORTER=1", p)
			}
		}
		if got["/usr/bin/probe_exporter"] != "-rwxr-xr-x" {
			t.Errorf("/usr/bin/probe_exporter: %q", got["/usr/bin/probe_exporter"])
		}
		u := unit(t, filepath.Join(dest, "etc/systemd/system/probe_exporter.service"))
		if u["ExecStart"] != "/usr/bin/probe_exporter $ARGS" {
			t.Errorf("probe_exporter.service: ExecStart=%s", u["ExecStart"])
		}
	})
}

func compareTree(t *testing.T, got, want map[string]string) {
	t.Helper()
	for p, w := range want {
		if g, ok := got[p]; !ok {
			t.Errorf("%s not installed", p)
		} else if g != w {
			t.Errorf("%s: %s, want %s", p, g, w)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s (%s) installed too", p, g)
		}
	}
}

func sameFile(t *testing.T, got, want string) {
	t.Helper()
	a, err1 := os.ReadFile(got)
	b, err2 := os.ReadFile(want)
	if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		t.Errorf("%s differs from %s (%v %v)", got, want, err1, err2)
	}
}
