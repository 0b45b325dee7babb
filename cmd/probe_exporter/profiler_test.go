package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// TestProfilerRules: the built-in profiler feeds export rules; CPU seconds
// of a busy program appear at /exported-metrics under main;slowFunction.
// The program runs until the test has seen what it waits for (a machine
// under load, or a guest under emulation, may select and sample it late),
// and what is asserted does not depend on how many samples were taken:
// most of its profiled time is in main;slowFunction, and none of it is
// more than the CPU time it used.
func TestProfilerRules(t *testing.T) {
	dir := t.TempDir()
	name := "prof" + strconv.Itoa(os.Getpid()%100000)
	bin := testkit.BuildC(t, name, `__attribute__((noinline)) void slowFunction(void) { volatile long x = 0; for (long i = 0; i < 3000000; i++) x += i; }
int main(void) { for (;;) slowFunction(); }
`, "-O0", "-fno-omit-frame-pointer")
	testkit.SkipIfPreparing(t)
	os.WriteFile(filepath.Join(dir, "targets.yaml"), []byte("targets:\n  - app: busy\n    tags: {env: prod}\n    comm: "+name+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(`metrics-export-rules:
  busy_slow_seconds:
    expr: 'busy.cpu{env="prod"}'
    node: 'main;slowFunction'
    group_by: [env]
  busy_seconds:
    expr: 'busy.cpu{env="prod"}'
    group_by: [env]
`), 0o644)
	addr := exporter(t, "--profile.config="+filepath.Join(dir, "targets.yaml"), "--rules.file="+filepath.Join(dir, "rules.yaml"), "--profile.interval=500ms")
	// The processes a target selects are on /metrics, 0 before and after.
	processes := func() float64 {
		_, body := get(t, "http://"+addr+"/metrics")
		return expoValue(body, `probe_exporter_profiler_processes{app="busy"}`)
	}
	if n := processes(); n != 0 {
		t.Fatalf(`probe_exporter_profiler_processes{app="busy"} %v before the process runs, want 0`, n)
	}
	cmd := exec.Command(bin)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	testkit.Eventually(t, "the process counted as profiled", func() bool { return processes() == 1 })
	// The landing page shows the target and its process.
	if _, page := get(t, "http://"+addr+"/"); !strings.Contains(page, "<h2>Profiler</h2>") ||
		!strings.Contains(page, "<td>busy</td><td>comm="+name+"</td><td>no</td><td class=\"n\">1</td>") {
		t.Errorf("the landing page does not show the target busy selecting 1 process:\n%s", page)
	}
	var slow, total float64
	var body string
	if !testkit.Poll(testkit.WaitLimit, func() bool {
		_, body = get(t, "http://"+addr+"/exported-metrics")
		slow, total = expoValue(body, `busy_slow_seconds{env="prod"}`), expoValue(body, `busy_seconds{env="prod"}`)
		return slow >= 1
	}) {
		t.Fatalf("no second of profile under main;slowFunction:\n%s", body)
	}
	cmd.Process.Kill()
	cmd.Wait()
	testkit.Eventually(t, "the exited process no longer counted", func() bool { return processes() == 0 })
	used := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	t.Logf("profiled %.2fs in main;slowFunction of %.2fs profiled, %.2fs of CPU used", slow, total, used)
	if slow < 0.8*total {
		t.Errorf("main;slowFunction has %.2fs of the %.2fs profiled, want most of it: its frames are not named", slow, total)
	}
	// A sample is 10 ms of CPU at the default 100 Hz: the profile holds
	// no more than the process used, within the difference between the
	// sampling clock and the kernel's accounting of its CPU time (a few
	// percent under load).
	if total > 1.1*used+0.05 {
		t.Errorf("profiled %.2fs, more than the %.2fs of CPU the process used", total, used)
	}
}
