package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// gcConfig is ebpf-userspace-exporter's gunicorn GC example, for python3.11, in libbpf
// style: counts gc__start by pid and generation.
const gcConfig = `programs:
  - name: gc_total
    metrics:
      counters:
        - name: gc_total
          help: Total number of gc events
          table: gc_counts
          labels:
            - name: pid
              size: 4
              decoders:
                - name: pid
            - name: gen
              size: 4
              decoders:
                - name: uint
    usdt:
      gc__start: trace_gc__start
    attachments:
      binary_name: "%s"
    code: |
      #include "vmlinux.h"
      #include <bpf/bpf_helpers.h>
      #include <bpf/usdt.bpf.h>

      struct gc_event_t {
          u32 pid;
          u32 gen;
      };

      struct {
          __uint(type, BPF_MAP_TYPE_HASH);
          __uint(max_entries, 1024);
          __type(key, struct gc_event_t);
          __type(value, u64);
      } gc_counts SEC(".maps");

      SEC("usdt")
      int BPF_USDT(trace_gc__start, int gen)
      {
          struct gc_event_t e = { .pid = bpf_get_current_pid_tgid() >> 32, .gen = gen };
          u64 one = 1, *count = bpf_map_lookup_elem(&gc_counts, &e);
          if (count)
              __sync_fetch_and_add(count, 1);
          else
              bpf_map_update_elem(&gc_counts, &e, &one, BPF_NOEXIST);
          return 0;
      }

      char LICENSE[] SEC("license") = "GPL";
`

// gcScript disables automatic collection, then on each line of input runs
// the collections it names and acknowledges.
const gcScript = `import gc, sys
gc.disable()
print("ready", flush=True)
for line in sys.stdin:
    gen, n = map(int, line.split())
    for _ in range(n):
        gc.collect(gen)
    print("done", flush=True)
`

// gcCollect has the Python of gcScript run n collections of generation
// gen and waits until it did.
func gcCollect(t *testing.T, py *testkit.Worker, gen, n int) {
	t.Helper()
	if reply := py.Send(t, fmt.Sprintf("%d %d", gen, n)); reply != "done" {
		t.Fatalf("python said %q, want done", reply)
	}
}

// TestPythonGC is ebpf-userspace-exporter's example on Debian's python3.11, whose USDT
// probes have semaphores: Python started after the exporter is found,
// attached and counted exactly by generation with its pid; a restarted
// Python is counted under its new pid and the old one's series go away.
func TestPythonGC(t *testing.T) {
	const python = "/usr/bin/python3.11"
	if _, err := os.Stat(python); err != nil {
		t.Skip("Debian's python3.11 is not installed")
	}
	testkit.RequireTools(t, "clang")
	dir := t.TempDir()
	// A copy with a name of its own, so that only the test's Pythons match.
	bin := filepath.Join(dir, "pygc"+strconv.Itoa(os.Getpid()%10000))
	data, _ := os.ReadFile(python)
	os.WriteFile(bin, data, 0o755)
	comm := filepath.Base(bin)
	os.WriteFile(filepath.Join(dir, "gc.yaml"), []byte(fmt.Sprintf(gcConfig, comm)), 0o644)
	script := filepath.Join(dir, "gc.py")
	os.WriteFile(script, []byte(gcScript), 0o644)

	addr := exporter(t, "--config.dir="+dir, "--config.names=gc", "--config.strict")

	for round := 0; round < 2; round++ {
		py := testkit.StartWorker(t, bin, "-S", script)
		pid := strconv.Itoa(py.Pid())
		enabled := `probe_exporter_enabled_programs{config="gc_total",pid="` + pid + `",program="trace_gc__start"} 1`
		waitFor(t, addr, "probe_exporter_enabled_programs", enabled)
		value := func(gen int) float64 {
			prefix := `probe_exporter_gc_total{gen="` + strconv.Itoa(gen) + `",pid="` + pid + `"} `
			for _, l := range series(t, addr, prefix) {
				v, _ := strconv.ParseFloat(strings.TrimPrefix(l, prefix), 64)
				return v
			}
			return 0
		}
		before0, before2 := value(0), value(2)
		gcCollect(t, py, 2, 7)
		gcCollect(t, py, 0, 5)
		if got := value(2) - before2; got != 7 {
			t.Errorf("round %d: gen 2 collections counted %v, want 7", round, got)
		}
		if got := value(0) - before0; got != 5 {
			t.Errorf("round %d: gen 0 collections counted %v, want 5", round, got)
		}
		py.Stop()
		// Its attachment and series go away.
		deadline := time.Now().Add(10 * time.Second)
		for len(series(t, addr, `probe_exporter_gc_total{gen="2",pid="`+pid+`"}`)) > 0 || len(series(t, addr, enabled)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: exited pid %s still has series", round, pid)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// waitFor polls /metrics until want appears among the lines with prefix.
func waitFor(t *testing.T, addr, prefix, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		lines := series(t, addr, prefix)
		if hasLine(lines, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %q; have:\n%s", want, strings.Join(lines, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
