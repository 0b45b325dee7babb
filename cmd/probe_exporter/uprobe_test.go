package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// The test program: work(i) is called n times and returns 2i; a USDT
// probe with a semaphore (demo:tick, arg i) fires only while someone
// attaches to it, and one without (demo:plain, args i and -i) always.
const demoMain = `#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <stdlib.h>
#include <sys/sdt.h>
unsigned short demo_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));
void plain(int i);
__attribute__((noinline)) int work(int i) { asm volatile(""); return 2 * i; }
int main(int argc, char **argv) {
	char line[64];
	int n = atoi(argv[1]), fired = 0;
	printf("ready\n"); fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		for (int i = 0; i < n; i++) {
			work(i);
			if (demo_tick_semaphore) { fired++; STAP_PROBE1(demo, tick, i); }
			plain(i);
		}
		printf("done %d\n", fired); fflush(stdout);
	}
	return 0;
}
`

const demoPlain = `#include <sys/sdt.h>
__attribute__((noinline)) void plain(int i) { long neg = -i; STAP_PROBE2(demo, plain, i, neg); }
`

const demoConfig = `programs:
  - name: demo
    metrics:
      counters:
        - name: demo_work_calls_total
          help: work() calls by pid
          table: calls
          labels:
            - name: pid
              size: 4
              decoders:
                - name: pid
        - name: demo_usdt_total
          help: USDT probe firings and argument sums
          table: usdt_events
          labels:
            - name: what
              size: 4
              decoders:
                - name: uint
                - name: static_map
                  static_map:
                    1: tick_count
                    2: tick_arg_sum
                    3: plain_count
                    4: plain_neg_sum
      histograms:
        - name: demo_work_return
          help: work() return values, linear buckets of 4
          table: returns
          bucket_type: linear
          bucket_min: 0
          bucket_max: 5
          bucket_multiplier: 4
          labels:
            - name: bucket
              size: 4
              decoders:
                - name: uint
    uprobes:
      work: on_work
    uretprobes:
      work: on_work_return
    usdt:
      demo:tick: on_tick
      demo:plain: on_plain
    attachments:
      binary_name: "%s"
`

// demoBPF is demo's program, compiled ahead of time into demo.bpf.o
// beside the config (v1 layout without code:), as a node without clang
// runs it.
const demoBPF = `#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64); __type(key, u32); __type(value, u64); } calls SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 8); __type(key, u32); __type(value, u64); } usdt_events SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 8); __type(key, u32); __type(value, u64); } returns SEC(".maps");

static void add(void *map, u32 key, u64 v) {
    u64 *p = bpf_map_lookup_elem(map, &key);
    if (p) __sync_fetch_and_add(p, v);
}

SEC("uprobe")
int on_work(struct pt_regs *ctx) {
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    u64 one = 1, *p = bpf_map_lookup_elem(&calls, &pid);
    if (p) __sync_fetch_and_add(p, 1);
    else bpf_map_update_elem(&calls, &pid, &one, BPF_NOEXIST);
    return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(on_work_return, int ret) {
    u32 b = (u32)ret / 4;
    if (b > 5) b = 5;
    add(&returns, b, 1);
    add(&returns, 6, ret); /* sum key: bucket_max + 1 */
    return 0;
}

SEC("usdt")
int BPF_USDT(on_tick, int i) { add(&usdt_events, 1, 1); add(&usdt_events, 2, i); return 0; }

SEC("usdt")
int BPF_USDT(on_plain, int i, long neg) { add(&usdt_events, 3, 1); add(&usdt_events, 4, -neg); return 0; }

char LICENSE[] SEC("license") = "GPL";
`

// demoRound has the demo make its n calls and returns how many times its
// semaphore-guarded probe fired so far.
func demoRound(t *testing.T, d *testkit.Worker) int {
	t.Helper()
	reply := d.Send(t, "go")
	fired, ok := strings.CutPrefix(reply, "done ")
	n, err := strconv.Atoi(fired)
	if !ok || err != nil {
		t.Fatalf("demo said %q", reply)
	}
	return n
}

func demoValue(t *testing.T, addr, line string) float64 {
	i := strings.LastIndex(line, " ")
	for _, l := range series(t, addr, line[:i+1]) {
		v, _ := strconv.ParseFloat(strings.TrimPrefix(l, line[:i+1]), 64)
		return v
	}
	return -1
}

// TestUserspaceProbes: uprobe call counts, a uretprobe histogram of return
// values and USDT probes with and without a semaphore, on a program
// started after the exporter, then on a copy of it in a mount namespace of
// its own, at a path that exists only there.
func TestUserspaceProbes(t *testing.T) {
	dir := t.TempDir()
	name := "demo" + strconv.Itoa(os.Getpid()%100000)
	testkit.RequireCHeader(t, "sys/sdt.h", "systemtap-sdt-dev")
	bin := filepath.Join(t.TempDir(), name)
	testkit.BuildCAt(t, bin, []string{demoMain, demoPlain}, "-O1")
	testkit.CompileBPF(t, demoBPF, dir, "demo")
	testkit.SkipIfPreparing(t)
	os.WriteFile(filepath.Join(dir, "demo.yaml"), []byte(fmt.Sprintf(demoConfig, name)), 0o644)
	addr := exporter(t, "--config.dir="+dir, "--config.names=demo", "--config.strict")

	const n = 10
	check := func(d *testkit.Worker, label string) {
		t.Helper()
		pid := strconv.Itoa(d.Pid())
		waitFor(t, addr, "probe_exporter_enabled_programs", `probe_exporter_enabled_programs{config="demo",pid="`+pid+`",program="on_tick"} 1`)
		before := map[string]float64{}
		keys := []string{"tick_count", "tick_arg_sum", "plain_count", "plain_neg_sum"}
		for _, k := range keys {
			before[k] = max(0, demoValue(t, addr, `probe_exporter_demo_usdt_total{what="`+k+`"} 0`))
		}
		retCount := max(0, demoValue(t, addr, `probe_exporter_demo_work_return_count 0`))
		fired := demoRound(t, d)
		if fired != n {
			t.Errorf("%s: the semaphore probe ran %d times, want %d (semaphore not set?)", label, fired, n)
		}
		if got := demoValue(t, addr, `probe_exporter_demo_work_calls_total{pid="`+pid+`"} 0`); got != n {
			t.Errorf("%s: uprobe counted %v calls, want %d", label, got, n)
		}
		want := map[string]float64{"tick_count": n, "tick_arg_sum": 45, "plain_count": n, "plain_neg_sum": 45}
		for _, k := range keys {
			if got := demoValue(t, addr, `probe_exporter_demo_usdt_total{what="`+k+`"} 0`) - before[k]; got != want[k] {
				t.Errorf("%s: %s grew by %v, want %v", label, k, got, want[k])
			}
		}
		if got := demoValue(t, addr, `probe_exporter_demo_work_return_count 0`) - retCount; got != n {
			t.Errorf("%s: uretprobe histogram count grew by %v, want %d", label, got, n)
		}
	}

	d := testkit.StartWorker(t, bin, strconv.Itoa(n))
	check(d, "host")
	// Returns 0,2,...,18; key = ret/4, and as in ebpf_exporter a linear
	// key k is exported as le = k * multiplier: le=0:2, le=4:4, ... le=16:10.
	for _, w := range []string{
		`probe_exporter_demo_work_return_bucket{le="0"} 2`,
		`probe_exporter_demo_work_return_bucket{le="4"} 4`,
		`probe_exporter_demo_work_return_bucket{le="16"} 10`,
		`probe_exporter_demo_work_return_bucket{le="20"} 10`,
		`probe_exporter_demo_work_return_sum 360`,
	} {
		if !hasLine(series(t, addr, "probe_exporter_demo_work_return"), w) {
			t.Errorf("missing %q", w)
		}
	}

	// A mount namespace where the binary lives at a path the host lacks.
	testkit.RequireTools(t, "unshare")
	nsdir := "/run/probe-exporter-ns-" + strconv.Itoa(os.Getpid())
	os.MkdirAll(nsdir, 0o755)
	defer os.RemoveAll(nsdir)
	script := fmt.Sprintf("mount -t tmpfs none %s && cp %s %s/%s && exec %s/%s %d", nsdir, bin, nsdir, name, nsdir, name, n)
	dns := testkit.StartWorker(t, "unshare", "-m", "--propagation", "private", "sh", "-c", script)
	if _, err := os.Stat(filepath.Join(nsdir, name)); err == nil {
		t.Fatal("the namespace's binary is visible from the host")
	}
	check(dns, "mount namespace")
}
