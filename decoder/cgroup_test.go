package decoder

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/cgroupfs"
)

func TestCgroup(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "system.slice", "ssh.service")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ino := func(p string) []byte {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return []byte(strconv.FormatUint(st.Ino, 10))
	}
	t.Run("hierarchy paths", func(t *testing.T) {
		env := &Env{Cgroups: NewCgroupPaths(root)}
		runDecodeCases(t, config.Decoder{Name: "cgroup"}, env, []decodeCase{
			{name: "known", in: ino(dir), want: "/system.slice/ssh.service"},
			{name: "root", in: ino(root), want: "/"},
			{name: "unknown", in: []byte("1"), want: "unknown_cgroup_id:1"},
		})
	})
	t.Run("ebpf_exporter keeps the mount point", func(t *testing.T) {
		env := &Env{Cgroups: NewCgroupPaths(root), EbpfExporter: true}
		runDecodeCases(t, config.Decoder{Name: "cgroup"}, env, []decodeCase{
			{name: "known", in: ino(dir), want: root + "/system.slice/ssh.service"},
			{name: "root", in: ino(root), want: root},
			{name: "unknown", in: []byte("1"), want: "unknown_cgroup_id:1"},
		})
	})
}

// TestCgroupNew: a cgroup created right after a walk resolves at once
// (the collector caches what a key decodes to, so "unknown" would stick).
// It needs the real cgroup2 hierarchy, whose ids only grow.
func TestCgroupNew(t *testing.T) {
	mount, err := cgroupfs.Mount("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no cgroup2 hierarchy: %v", err)
	}
	base := filepath.Join(mount, "probe-decoder-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Skipf("creating a cgroup: %v", err)
	}
	var made []string
	defer func() {
		for i := len(made) - 1; i >= 0; i-- {
			_ = os.Remove(made[i])
		}
		_ = os.Remove(base)
	}()
	env := &Env{Cgroups: NewCgroupPaths(mount)}
	d, err := New(config.Decoder{Name: "cgroup"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Decode([]byte("1")); string(got) != "/" {
		t.Fatalf("root cgroup: %q", got)
	}
	rel := strings.TrimPrefix(base, mount)
	for i := range 5 {
		dir := filepath.Join(base, "new"+strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		made = append(made, dir)
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		got, err := d.Decode([]byte(strconv.FormatUint(st.Ino, 10)))
		if want := rel + "/new" + strconv.Itoa(i); err != nil || string(got) != want {
			t.Fatalf("new cgroup %d: %q, %v; want %q", i, got, err, want)
		}
	}
}
