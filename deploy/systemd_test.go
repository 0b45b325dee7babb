package deploy

import (
	"bufio"
	"fmt"
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
