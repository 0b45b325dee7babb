package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
	"github.com/probe-exporter/probe_exporter/targets"
)

// slConfig is a seed-format config counting pe_churn_work() calls of the
// processes its attachments select: in total, and by pid (series that
// must vanish as the processes exit).
const slConfig = `programs:
  - name: sl_%[1]s
    metrics:
      counters:
        - name: sl_%[1]s_calls_total
          help: pe_churn_work() calls
          table: calls
          labels:
            - name: kind
              size: 4
              decoders:
                - name: uint
        - name: sl_%[1]s_pid_calls_total
          help: pe_churn_work() calls by pid
          table: pid_calls
          labels:
            - name: pid
              size: 4
              decoders:
                - name: pid
    uprobes:
      pe_churn_work: on_work
    attachments:
      %[2]s
    code: |
      #include "vmlinux.h"
      #include <bpf/bpf_helpers.h>
      struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } calls SEC(".maps");
      struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 8192); __type(key, u32); __type(value, u64); } pid_calls SEC(".maps");
      SEC("uprobe") int on_work(void *ctx) {
          u32 zero = 0, pid = bpf_get_current_pid_tgid() >> 32;
          u64 one = 1, *v = bpf_map_lookup_elem(&calls, &zero);
          if (v) __sync_fetch_and_add(v, 1);
          v = bpf_map_lookup_elem(&pid_calls, &pid);
          if (v) __sync_fetch_and_add(v, 1);
          else bpf_map_update_elem(&pid_calls, &pid, &one, BPF_NOEXIST);
          return 0;
      }
      char LICENSE[] SEC("license") = "GPL";
`

// slProgram calls pe_churn_work() three times, the first right after
// start, and lives about 40 ms.
const slProgram = `#include <unistd.h>
__attribute__((noinline)) int pe_churn_work(int i) { asm volatile(""); return i; }
int main(void) { pe_churn_work(0); usleep(20000); pe_churn_work(1); usleep(20000); pe_churn_work(2); return 0; }
`

// slCount is how many processes TestShortLivedExact starts: 2,000 by
// default (PE_SHORTLIVED_N=10000 for the full run bench/README.md reports).
func slCount(t *testing.T) int {
	if v, err := strconv.Atoi(os.Getenv("PE_SHORTLIVED_N")); err == nil && v > 0 {
		return v
	}
	if testing.Short() {
		return 200
	}
	return 2000
}

// TestShortLivedExact: processes living 40 ms, started 20 at a time after
// the exporter, each calling the probed function 3 times, the first right
// at start. Selected by comm, exe, cgroup, pid and cmdline, every call is
// counted (the kernel selects them at exec; for cmdline it holds the
// candidates its prefilter finds until userspace has matched the regexp).
// Processes whose arguments almost match are not counted. A program
// filtering on target_pids itself counts every call too. Per-pid series
// and attachments are gone afterwards.
func TestShortLivedExact(t *testing.T) {
	testkit.RequireTools(t, "gcc", "clang")
	dir := t.TempDir()
	name := "sl" + strconv.Itoa(os.Getpid()%100000)
	bin := filepath.Join(dir, name)
	cg := "/pe-sl-" + strconv.Itoa(os.Getpid())
	selectors := map[string]string{
		"comm":    fmt.Sprintf("binary_name: %q", name),
		"exe":     fmt.Sprintf("exe: %q", bin),
		"cgroup":  fmt.Sprintf("cgroup: %q", "^"+regexp.QuoteMeta(cg)+"$"),
		"cmdline": fmt.Sprintf("cmdline: %q", regexp.QuoteMeta(name)+" go$"),
	}
	var names []string
	for sel, at := range selectors {
		os.WriteFile(filepath.Join(dir, "sl_"+sel+".yaml"), []byte(fmt.Sprintf(slConfig, sel, at)), 0o644)
		names = append(names, "sl_"+sel)
	}
	// A program that filters on the target_pids map itself (the
	// dispatcher fills it before the first call).
	tp := strings.Replace(fmt.Sprintf(slConfig, "tpids", selectors["comm"]), "      SEC(\"uprobe\") int on_work(void *ctx) {\n          u32 zero = 0, pid = bpf_get_current_pid_tgid() >> 32;\n",
		"      struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4096); __type(key, u32); __type(value, u8); } target_pids SEC(\".maps\");\n"+
			"      SEC(\"uprobe\") int on_work(void *ctx) {\n          u32 zero = 0, pid = bpf_get_current_pid_tgid() >> 32;\n          if (!bpf_map_lookup_elem(&target_pids, &pid)) return 0;\n", 1)
	if !strings.Contains(tp, "target_pids") {
		t.Fatal("target_pids variant not built")
	}
	os.WriteFile(filepath.Join(dir, "sl_tpids.yaml"), []byte(tp), 0o644)
	names = append(names, "sl_tpids")
	sort.Strings(names)
	addr := exporter(t, "--config.dir="+dir, "--config.names="+strings.Join(names, ","), "--config.strict")

	// The cgroup and the executable are created after the exporter
	// started: the first process of each is held until userspace has
	// given its verdict.
	testkit.BuildCAt(t, bin, []string{slProgram}, "-O1")
	cgDir := targets.Cgroup2Mount() + cg
	if err := os.Mkdir(cgDir, 0o755); err != nil {
		t.Skipf("cgroup v2 needed: %v", err)
	}
	t.Cleanup(func() { os.Remove(cgDir) })
	cgFD, err := syscall.Open(cgDir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(cgFD)

	n := slCount(t)
	start := time.Now()
	runMany(t, n, func() *exec.Cmd {
		cmd := exec.Command(bin, "go")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgFD}
		return cmd
	})
	took := time.Since(start)
	for _, sel := range []string{"comm", "exe", "cgroup", "tpids"} {
		if got := slValue(t, addr, "probe_exporter_sl_"+sel+"_calls_total{kind=\"0\"} "); got != 3*n {
			t.Errorf("%s selector: %d calls counted, want %d", sel, got, 3*n)
		}
	}
	got := slValue(t, addr, "probe_exporter_sl_cmdline_calls_total{kind=\"0\"} ")
	t.Logf("%d processes in %v; cmdline selector counted %d of %d calls (%.1f %%); exec -> counting p50 %v, p99 %v; held at exec: %d",
		n, took.Round(time.Millisecond), got, 3*n, 100*float64(got)/float64(3*n),
		slQuantile(t, addr, 0.5), slQuantile(t, addr, 0.99), slValue(t, addr, "probe_exporter_targets_held_total "))
	if got != 3*n {
		t.Errorf("cmdline selector: %d calls counted, want %d", got, 3*n)
	}
	// Arguments that contain the pattern's literal but do not match it:
	// held at exec as candidates, continued, not counted. The comm
	// selector counts them: once it has, their exec events were handled.
	const almost = 20
	runMany(t, almost, func() *exec.Cmd { return exec.Command(bin, "gone") })
	testkit.Eventually(t, "the comm selector counting the almost matching processes", func() bool {
		return slValue(t, addr, "probe_exporter_sl_comm_calls_total{kind=\"0\"} ") == 3*(n+almost)
	})
	if got := slValue(t, addr, "probe_exporter_sl_cmdline_calls_total{kind=\"0\"} "); got != 3*n {
		t.Errorf("cmdline selector: %d calls counted after %d almost matching processes, want %d", got, almost, 3*n)
	}
	slSettle(t, addr)
}

// TestShortLivedPID: processes selected by pid before they exec the probed
// program are counted from its first instruction.
func TestShortLivedPID(t *testing.T) {
	testkit.RequireTools(t, "gcc", "clang")
	dir := t.TempDir()
	bin := testkit.BuildC(t, "slpid"+strconv.Itoa(os.Getpid()%100000), slProgram, "-O1")
	// Each waits for a line on stdin, then execs the program under its
	// pid, which the config selects.
	const k = 20
	var cmds []*exec.Cmd
	var stdins []io.WriteCloser
	var pids []string
	for i := 0; i < k; i++ {
		cmd := exec.Command("sh", "-c", "read x; exec "+bin)
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		cmds, stdins = append(cmds, cmd), append(stdins, in)
		pids = append(pids, strconv.Itoa(cmd.Process.Pid))
	}
	os.WriteFile(filepath.Join(dir, "sl_pid.yaml"), []byte(fmt.Sprintf(slConfig, "pid", "pid: ["+strings.Join(pids, ", ")+"]")), 0o644)
	addr := exporter(t, "--config.dir="+dir, "--config.names=sl_pid")
	for i, in := range stdins {
		in.Write([]byte("go\n"))
		in.Close()
		if err := cmds[i].Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if got := slValue(t, addr, "probe_exporter_sl_pid_calls_total{kind=\"0\"} "); got != 3*k {
		t.Errorf("pid selector: %d calls counted, want %d", got, 3*k)
	}
	slSettle(t, addr)
}

// slSettle waits until no per-pid series and no enabled program is left.
func slSettle(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		left := append(series(t, addr, `probe_exporter_enabled_programs{config="sl_`), slPIDSeries(t, addr)...)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("series left after every process exited: %d, e.g. %s", len(left), left[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func slPIDSeries(t *testing.T, addr string) []string {
	var out []string
	for _, l := range series(t, addr, "probe_exporter_sl_") {
		if strings.Contains(l, "_pid_calls_total{pid=") {
			out = append(out, l)
		}
	}
	return out
}

// slValue reads one series by its name and labels (with the space).
func slValue(t *testing.T, addr, prefix string) int {
	t.Helper()
	for _, l := range series(t, addr, prefix) {
		v, err := strconv.ParseFloat(strings.TrimPrefix(l, prefix), 64)
		if err == nil {
			return int(v)
		}
	}
	return 0
}

// slQuantile estimates a quantile of the late-selection histogram (the
// upper bound of the bucket it falls in).
func slQuantile(t *testing.T, addr string, q float64) time.Duration {
	t.Helper()
	const name = "probe_exporter_userspace_late_select_seconds"
	total := float64(slValue(t, addr, name+"_count "))
	if total == 0 {
		return 0
	}
	type bucket struct{ le, n float64 }
	var bs []bucket
	re := regexp.MustCompile(`^` + name + `_bucket\{le="([^"]+)"\} (\S+)$`)
	for _, l := range series(t, addr, name+"_bucket") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		le, _ := strconv.ParseFloat(m[1], 64)
		c, _ := strconv.ParseFloat(m[2], 64)
		bs = append(bs, bucket{le, c})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	for _, b := range bs {
		if b.n >= q*total {
			if math.IsInf(b.le, 1) {
				return -1
			}
			return time.Duration(b.le * float64(time.Second))
		}
	}
	return -1
}

// slUSDTProgram fires a USDT probe guarded by its semaphore three times,
// the first right at start, and exits: the probe fires only if the kernel
// set the semaphore before main() ran.
const slUSDTProgram = `#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
unsigned short sl_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));
int main(void) {
	for (int i = 1; i <= 3; i++)
		if (sl_tick_semaphore) STAP_PROBE1(sl, tick, i);
	return 0;
}
`

const slUSDTConfig = `programs:
  - name: sl_usdt
    metrics:
      counters:
        - name: sl_usdt_ticks_total
          help: sl:tick firings and the sum of their argument
          table: ticks
          labels:
            - name: what
              size: 4
              decoders:
                - name: uint
    usdt:
      sl:tick: on_tick
    attachments:
      binary_name: %q
    code: |
      #include "vmlinux.h"
      #include <bpf/bpf_helpers.h>
      #include <bpf/bpf_tracing.h>
      #include <bpf/usdt.bpf.h>
      struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, u32); __type(value, u64); } ticks SEC(".maps");
      static void add(u32 key, u64 v) { u64 *p = bpf_map_lookup_elem(&ticks, &key); if (p) __sync_fetch_and_add(p, v); }
      SEC("usdt") int BPF_USDT(on_tick, int i) { add(0, 1); add(1, i); return 0; }
      char LICENSE[] SEC("license") = "GPL";
`

// TestShortLivedUSDT: a USDT probe behind a semaphore in processes that
// fire it at once and exit, 200 of them 20 at a time: every firing is
// counted with its argument (the semaphore is the kernel's ref_ctr of the
// file-wide probe, set in every new process before it runs).
func TestShortLivedUSDT(t *testing.T) {
	testkit.RequireTools(t, "gcc", "clang")
	testkit.RequireCHeader(t, "sys/sdt.h", "systemtap-sdt-dev")
	dir := t.TempDir()
	name := "slu" + strconv.Itoa(os.Getpid()%100000)
	bin := filepath.Join(dir, name)
	os.WriteFile(filepath.Join(dir, "sl_usdt.yaml"), []byte(fmt.Sprintf(slUSDTConfig, name)), 0o644)
	addr := exporter(t, "--config.dir="+dir, "--config.names=sl_usdt", "--config.strict")
	testkit.BuildCAt(t, bin, []string{slUSDTProgram}, "-O1")
	const n = 200
	runMany(t, n, func() *exec.Cmd { return exec.Command(bin) })
	if got := slValue(t, addr, `probe_exporter_sl_usdt_ticks_total{what="0"} `); got != 3*n {
		t.Errorf("%d firings counted, want %d", got, 3*n)
	}
	if got := slValue(t, addr, `probe_exporter_sl_usdt_ticks_total{what="1"} `); got != 6*n {
		t.Errorf("argument sum %d, want %d", got, 6*n)
	}
}
