package decoder

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

func TestCgroup(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "system.slice", "ssh.service")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	env := &Env{Cgroups: NewCgroupPaths(root)}
	runDecodeCases(t, config.Decoder{Name: "cgroup"}, env, []decodeCase{
		{name: "known", in: []byte(strconv.FormatUint(st.Ino, 10)), want: "/system.slice/ssh.service"},
		{name: "unknown", in: []byte("1"), want: "unknown_cgroup_id:1"},
	})
}
