package deploy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// unit reads the [Service] settings of a systemd unit the test
// reproduces.
func unit(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

// TestSystemdUnit runs the binary on the host as deploy/systemd's unit
// does: root, the unit's CapabilityBoundingSet exactly, no_new_privs, the
// ARGS of probe_exporter.default. The defaults serve, a uprobe counts a
// host process exactly, a bpftrace script runs. (ProtectSystem and the
// other sandboxing settings are systemd's and not reproduced.)
func TestSystemdUnit(t *testing.T) {
	testkit.RequireRoot(t)
	u := unit(t, "systemd/probe_exporter.service")
	if u["User"] != "" {
		t.Fatalf("the unit runs as %s: the exporter starts as root", u["User"])
	}
	if a := u["AmbientCapabilities"]; a != "" {
		t.Fatalf("AmbientCapabilities=%s: not needed by root, and not reproduced", a)
	}
	c := Container{Caps: strings.Fields(u["CapabilityBoundingSet"]), NoNewPrivs: u["NoNewPrivileges"] == "yes", HostPID: true}
	if len(c.Caps) == 0 || len(capList(capMask(c.Caps...))) != len(c.Caps) {
		t.Fatalf("CapabilityBoundingSet=%q", u["CapabilityBoundingSet"])
	}
	def := unit(t, "systemd/probe_exporter.default")
	args, ok := strings.CutPrefix(def["ARGS"], `"`)
	if !ok {
		t.Fatalf("probe_exporter.default: ARGS=%s", def["ARGS"])
	}
	c.Args = strings.Fields(strings.TrimSuffix(args, `"`))
	bin := "host:" + filepath.Join(rootfsMinimal(t), "usr/bin/probe_exporter")
	held := statusCaps(t, os.Getpid(), "CapBnd")
	granted := capMask(c.Caps...) & held
	base := capMask("CAP_BPF", "CAP_PERFMON", "CAP_SYS_RESOURCE") & granted
	all := base | capMask("CAP_SYSLOG", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_SYS_ADMIN", "CAP_KILL")&granted

	t.Run("embedded defaults", func(t *testing.T) {
		p := runPod(t, c, bin, nil)
		if got := p.waitDropped(t); got != base {
			t.Errorf("kept %v, want %v", capList(got), capList(base))
		}
		p.metric(t, `probe_exporter_syscalls_total\{syscall="read"\}`, func(v float64) bool { return v > 0 })
	})
	t.Run("uprobe and bpftrace script", func(t *testing.T) {
		target := testkit.BuildWorker(t, "probe_target")
		h := testkit.StartWorker(t, target)
		configs := t.TempDir()
		os.WriteFile(filepath.Join(configs, "demo.yaml"), []byte(demoConfig), 0o644)
		os.WriteFile(filepath.Join(configs, "demo.bpf.o"), buildProbe(t, target), 0o644)
		scripts := t.TempDir()
		os.WriteFile(filepath.Join(scripts, "wake.bt"), []byte("tracepoint:sched:sched_wakeup { @wakeups_total[args->pid > 0] = count(); }\n"), 0o644)
		p := runPod(t, c, bin, nil, "--config.dir="+configs, "--scripts.dir="+scripts)
		if got := p.waitDropped(t); got != all {
			t.Errorf("kept %v, want %v", capList(got), capList(all))
		}
		const calls = 777
		h.Call(t, calls)
		p.metric(t, fmt.Sprintf(`probe_exporter_demo_calls\{pid="%d"\}`, h.Pid()), func(v float64) bool { return v == calls })
		waitScript(t, p.addr, "wake.bt", func(code int, body string) bool {
			return code == 200 && strings.Contains(body, `wakeups_total{key="1"} `)
		})
	})
}

// TestEbpfExporterUnit: ebpf_exporter.service is probe_exporter.service
// (the same hardening and capability set, every setting) but for its
// description, its defaults file and ExecStart, which runs the link
// ebpf_exporter `make install EBPF_EXPORTER=1` makes. Run as the unit
// runs it (root, exactly its bounding set, no_new_privs, the ARGS of
// ebpf_exporter.default), through that link, the binary serves
// ebpf_exporter's names, and with no --web.listen-address on :9435.
func TestEbpfExporterUnit(t *testing.T) {
	pe := unit(t, "systemd/probe_exporter.service")
	u := unit(t, "systemd/ebpf_exporter.service")
	differ := map[string]bool{"Description": true, "EnvironmentFile": true, "ExecStart": true}
	for k, v := range pe {
		if !differ[k] && u[k] != v {
			t.Errorf("ebpf_exporter.service: %s=%s, probe_exporter.service has %s", k, u[k], v)
		}
	}
	for k, v := range u {
		if _, ok := pe[k]; !ok {
			t.Errorf("ebpf_exporter.service: %s=%s, which probe_exporter.service lacks", k, v)
		}
	}
	if u["EnvironmentFile"] != "-/etc/default/ebpf_exporter" {
		t.Errorf("EnvironmentFile=%s", u["EnvironmentFile"])
	}
	start := strings.Fields(u["ExecStart"])
	if len(start) != 2 || start[0] != "/usr/local/bin/ebpf_exporter" || start[1] != "$ARGS" {
		t.Fatalf("ExecStart=%s, want the link /usr/local/bin/ebpf_exporter $ARGS", u["ExecStart"])
	}
	def := unit(t, "systemd/ebpf_exporter.default")
	args, ok := strings.CutPrefix(def["ARGS"], `"`)
	if !ok {
		t.Fatalf("ebpf_exporter.default: ARGS=%s", def["ARGS"])
	}
	defArgs := strings.Fields(strings.TrimSuffix(args, `"`))
	for _, a := range defArgs {
		if strings.HasPrefix(a, "--web.listen-address") {
			t.Fatalf("ebpf_exporter.default sets %s: the name alone should give :9435", a)
		}
	}

	testkit.RequireRoot(t)
	dest := t.TempDir()
	makeIn(t, "build")
	makeIn(t, "install", "DESTDIR="+dest, "EBPF_EXPORTER=1")
	link := filepath.Join(dest, start[0])
	if target, err := os.Readlink(link); err != nil || target != "probe_exporter" {
		t.Fatalf("%s: a link to %q (%v), want probe_exporter", start[0], target, err)
	}
	c := Container{Caps: strings.Fields(u["CapabilityBoundingSet"]), NoNewPrivs: u["NoNewPrivileges"] == "yes", HostPID: true}
	held := statusCaps(t, os.Getpid(), "CapBnd")
	base := capMask("CAP_BPF", "CAP_PERFMON", "CAP_SYS_RESOURCE") & capMask(c.Caps...) & held
	serves := func(t *testing.T, p *pod) {
		t.Helper()
		if got := p.waitDropped(t); got != base {
			t.Errorf("kept %v, want %v", capList(got), capList(base))
		}
		p.metric(t, `ebpf_exporter_syscalls_total\{syscall="read"\}`, func(v float64) bool { return v > 0 })
		p.metric(t, `ebpf_exporter_enabled_configs\{name="syscalls"\}`, func(v float64) bool { return v == 1 })
		p.metric(t, `ebpf_exporter_build_info\{.*\}`, func(v float64) bool { return v == 1 })
	}
	t.Run("listen address by flag", func(t *testing.T) {
		// runPod puts a free port in place of this placeholder.
		f := c
		f.Args = append([]string{"--web.listen-address=free"}, defArgs...)
		serves(t, runPod(t, f, "host:"+link, nil))
	})
	t.Run("default port 9435", func(t *testing.T) {
		l, err := net.Listen("tcp", ":9435")
		if err != nil {
			t.Skipf("ebpf_exporter's port 9435 is taken on this machine, its default cannot be shown: %v", err)
		}
		l.Close()
		d := c
		d.Args = defArgs
		serves(t, runPodAt(t, d, "host:"+link, "127.0.0.1:9435", nil))
	})
}
