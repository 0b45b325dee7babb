package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/cgroupfs"
)

// compatProg counts the syscalls of threads named compat_* by cgroup and
// syscall number, as ebpf_exporter's cgroup and syscall examples do.
const compatProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct cg_sys { u64 cgroup; u64 nr; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct cg_sys);
	__type(value, u64);
} cgroup_syscalls_total SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int count(struct trace_event_raw_sys_enter *ctx) {
	char comm[16];
	bpf_get_current_comm(&comm, sizeof(comm));
	if (comm[0] != 'c' || comm[1] != 'o' || comm[2] != 'm' || comm[3] != 'p' ||
	    comm[4] != 'a' || comm[5] != 't' || comm[6] != '_')
		return 0;
	struct cg_sys k = { .cgroup = bpf_get_current_cgroup_id(), .nr = ctx->id };
	u64 one = 1, *v = bpf_map_lookup_elem(&cgroup_syscalls_total, &k);
	if (v) __sync_fetch_and_add(v, 1);
	else bpf_map_update_elem(&cgroup_syscalls_total, &k, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`

const compatYAML = `metrics:
  counters:
    - name: cgroup_syscalls_total
      help: syscalls by cgroup
      labels:
        - name: cgroup
          size: 8
          decoders:
            - name: uint
            - name: cgroup
        - name: syscall
          size: 8
          decoders:
            - name: uint
            - name: syscall
`

// testCgroup makes a cgroup under the cgroup2 mount and removes it when
// the test ends; it returns its path within the hierarchy and its full path.
func testCgroup(t *testing.T, name string) (string, string) {
	t.Helper()
	mount, err := cgroupfs.Mount("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no cgroup2 hierarchy: %v", err)
	}
	rel := fmt.Sprintf("/%s-%d", name, os.Getpid())
	full := filepath.Join(mount, rel)
	if err := os.Mkdir(full, 0o755); err != nil {
		t.Skipf("creating a cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(full); err != nil {
			t.Errorf("removing cgroup: %v", err)
		}
	})
	return rel, full
}

// workloadIn runs the workload (n getppid calls by a thread named comm)
// inside the cgroup at path.
func workloadIn(t *testing.T, path, comm string, n int) {
	t.Helper()
	dir, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PROBE_E2E_COMM="+comm, "PROBE_E2E_CALLS="+strconv.Itoa(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("workload: %v\n%s", err, out)
	}
}

// TestEbpfExporterNames runs a config written for ebpf_exporter with
// --metrics.prefix=ebpf_exporter and checks that every series a dashboard
// built on ebpf_exporter reads has ebpf_exporter's name, labels and values;
// without the flag, the same config gives probe_exporter's.
func TestEbpfExporterNames(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "compat", compatProg, compatYAML)
	rel, full := testCgroup(t, "probe-compat")
	const n = 321

	for _, tc := range []struct {
		name, prefix, cgroup string
		getppid, exit        string
	}{
		{name: "ebpf_exporter", prefix: "ebpf_exporter", cgroup: full, getppid: "getppid", exit: "exit"},
		{name: "probe_exporter", prefix: "probe_exporter", cgroup: rel, getppid: "getppid", exit: "exit_group"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := exporter(t, "--config.dir="+dir, "--config.names=compat", "--metrics.prefix="+tc.prefix)
			comm := "compat_" + tc.name[:4]
			workloadIn(t, full, comm, n)
			series := tc.prefix + `_cgroup_syscalls_total{cgroup="` + tc.cgroup + `",syscall="`
			// The workload's thread calls getppid n times, then exit_group
			// once (os.Exit): ebpf_exporter's table names it "exit".
			waitFor(t, addr, series, series+tc.getppid+`"} `+strconv.Itoa(n))
			waitFor(t, addr, series, series+tc.exit+`"} 1`)
		})
	}

	t.Run("own metrics", func(t *testing.T) {
		addr := exporter(t, "--config.dir="+dir, "--config.names=compat", "--metrics.prefix=ebpf_exporter")
		_, body := get(t, "http://"+addr+"/metrics")
		for _, want := range []string{
			`# HELP ebpf_exporter_enabled_configs The set of enabled configs`,
			`ebpf_exporter_enabled_configs{name="compat"} 1`,
			`# HELP ebpf_exporter_decoder_errors_total How many times has decoders encountered errors`,
			`ebpf_exporter_decoder_errors_total{config="compat"} 0`,
			`# HELP ebpf_exporter_ebpf_program_info Info about ebpf programs`,
			`# HELP ebpf_exporter_ebpf_program_attached Whether a program is attached`,
			`# HELP ebpf_exporter_build_info `,
		} {
			if !strings.Contains(body, want+"\n") && !strings.Contains(body, want) {
				t.Errorf("missing %q", want)
			}
		}
		info := regexp.MustCompile(`(?m)^ebpf_exporter_ebpf_program_info\{config="compat",id="(\d+)",program="count",tag="[0-9a-f]{16}"\} 1$`).FindStringSubmatch(body)
		if info == nil {
			t.Fatalf("no program info for count in\n%s", grep(body, "ebpf_exporter_ebpf_program"))
		}
		if want := `ebpf_exporter_ebpf_program_attached{id="` + info[1] + `"} 1`; !strings.Contains(body, want+"\n") {
			t.Errorf("missing %q in\n%s", want, grep(body, "ebpf_exporter_ebpf_program"))
		}
		for _, gone := range []string{"probe_exporter_build_info", "probe_exporter_program_attached", "probe_exporter_enabled_configs", "probe_exporter_decoder_errors_total", "probe_exporter_ebpf_program_info"} {
			if strings.Contains(body, gone) {
				t.Errorf("%s is still exported in ebpf_exporter mode", gone)
			}
		}
	})
}

// grep returns the lines of body containing s.
func grep(body, s string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestBTFPath: --btf.path names the kernel BTF used for CO-RE, as
// ebpf_exporter's flag does; an unreadable file stops the start.
func TestBTFPath(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "compat", compatProg, compatYAML)
	vmlinux, err := os.ReadFile("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Skipf("kernel BTF: %v", err)
	}
	copied := filepath.Join(dir, "vmlinux.btf")
	if err := os.WriteFile(copied, vmlinux, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{copied, 0},
		{filepath.Join(dir, "missing.btf"), 1},
		{filepath.Join(dir, "compat.yaml"), 1},
	} {
		args := []string{"--config.dir=" + dir, "--config.names=compat", "--config.check", "--log.level=error", "--btf.path=" + tc.path}
		if code := runBinary(t, args...); code != tc.code {
			t.Errorf("--btf.path=%s exited %d, want %d", tc.path, code, tc.code)
		}
	}
}
