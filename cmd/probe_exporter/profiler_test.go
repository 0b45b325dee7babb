package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// TestProfilerRules: the built-in profiler feeds export rules; CPU seconds
// of a busy program appear at /exported-metrics.
func TestProfilerRules(t *testing.T) {
	dir := t.TempDir()
	name := "prof" + strconv.Itoa(os.Getpid()%100000)
	bin := testkit.BuildC(t, name, `#include <time.h>
__attribute__((noinline)) void slowFunction(void) { volatile long x = 0; for (long i = 0; i < 3000000; i++) x += i; }
int main(void) { time_t end = time(0) + 2; while (time(0) < end) slowFunction(); return 0; }
`, "-O0", "-fno-omit-frame-pointer")
	testkit.SkipIfPreparing(t)
	os.WriteFile(filepath.Join(dir, "targets.yaml"), []byte("targets:\n  - app: busy\n    tags: {env: prod}\n    comm: "+name+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte("metrics-export-rules:\n  busy_slow_seconds:\n    expr: 'busy.cpu{env=\"prod\"}'\n    node: 'main;slowFunction'\n    group_by: [env]\n"), 0o644)
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
	testkit.Eventually(t, "the process counted as profiled", func() bool { return processes() == 1 })
	// The landing page shows the target and its process.
	if _, page := get(t, "http://"+addr+"/"); !strings.Contains(page, "<h2>Profiler</h2>") ||
		!strings.Contains(page, "<td>busy</td><td>comm="+name+"</td><td>no</td><td class=\"n\">1</td>") {
		t.Errorf("the landing page does not show the target busy selecting 1 process:\n%s", page)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the exited process no longer counted", func() bool { return processes() == 0 })
	used := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := get(t, "http://"+addr+"/exported-metrics")
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, `busy_slow_seconds{env="prod"} `); ok {
				f, _ := strconv.ParseFloat(v, 64)
				if f > 0.5*used {
					t.Logf("profiled %.2fs in main;slowFunction of %.2fs CPU", f, used)
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no profile seconds:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
