package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
	"github.com/probe-exporter/probe_exporter/targets"
)

// offCPUCommon is shared by the off-CPU test programs: settle blocks in
// 10 ms polls of stdin until the test writes a line (so the test starts
// the measured part once the exporter counts the process's off-CPU time),
// now is the monotonic clock in seconds.
const offCPUCommon = `#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
volatile long sink;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
__attribute__((noinline)) void settle(void) {
	struct pollfd p = { .fd = 0, .events = POLLIN };
	while (poll(&p, 1, 10) == 0) sink++;
	char line[16]; if (read(0, line, sizeof line) < 0) sink++;
}
`

// offCPUBlocked blocks 60 ms in blocked_function and burns 40 ms of CPU
// in busy_function, 80 rounds (4.8 s blocked, 3.2 s busy); it prints the
// time it measured around its sleeps.
const offCPUBlocked = offCPUCommon + `
__attribute__((noinline)) double blocked_function(void) {
	double start = now();
	struct timespec d = { 0, 60000000 };
	nanosleep(&d, 0);
	sink++;
	return now() - start;
}
static double cpu(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec / 1e9; }
__attribute__((noinline)) void busy_function(void) {
	double end = cpu() + 0.04;
	do { for (int i = 0; i < 10000; i++) sink += i; } while (cpu() < end);
}
int main(void) {
	settle();
	double blocked = 0;
	for (int i = 0; i < 80; i++) { blocked += blocked_function(); busy_function(); }
	printf("%.6f\n", blocked);
	return 0;
}
`

// offCPULock: a holder thread keeps a mutex 50 ms (asleep in hold) while
// the waiter waits for it in waiting_function, 40 rounds; it prints the
// time the waiter measured around pthread_mutex_lock.
const offCPULock = offCPUCommon + `
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t locked, round_done;
__attribute__((noinline)) void hold(void) { struct timespec d = { 0, 50000000 }; nanosleep(&d, 0); sink++; }
__attribute__((noinline)) double waiting_function(void) {
	double start = now();
	pthread_mutex_lock(&mu);
	double waited = now() - start;
	pthread_mutex_unlock(&mu);
	sink++;
	return waited;
}
static void *holder(void *arg) {
	for (int i = 0; i < 40; i++) {
		pthread_mutex_lock(&mu);
		pthread_barrier_wait(&locked);
		hold();
		pthread_mutex_unlock(&mu);
		pthread_barrier_wait(&round_done);
	}
	return arg;
}
int main(void) {
	settle();
	pthread_barrier_init(&locked, 0, 2);
	pthread_barrier_init(&round_done, 0, 2);
	pthread_t t;
	pthread_create(&t, 0, holder, 0);
	double waited = 0;
	for (int i = 0; i < 40; i++) {
		pthread_barrier_wait(&locked);
		waited += waiting_function();
		pthread_barrier_wait(&round_done);
	}
	pthread_join(t, 0);
	printf("%.6f\n", waited);
	return 0;
}
`

// TestOffCPU: with off_cpu: true, the built binary with default flags
// counts the seconds threads spend blocked by stack, for export rules as
// app.off_cpu, for processes started after it, selected by exe and by
// cgroup, built -O2 without frame pointers. Sleeping in blocked_function
// is counted within 10 % of the time the program measured around its
// sleeps, burning CPU in busy_function is not counted (preempted time is
// not off-CPU time) and is still in the CPU profile; a thread waiting for
// a contended pthread mutex is counted under waiting_function within
// 10 % of its measured wait.
func TestOffCPU(t *testing.T) {
	testkit.RequireTools(t, "gcc")
	dir := t.TempDir()
	id := strconv.Itoa(os.Getpid() % 100000)
	blocked := testkit.BuildC(t, "ocb"+id, offCPUBlocked, "-O2", "-fomit-frame-pointer")
	lock := testkit.BuildC(t, "ocl"+id, offCPULock, "-O2", "-fomit-frame-pointer", "-pthread")
	cg := "/pe-offcpu-" + id
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

	os.WriteFile(filepath.Join(dir, "targets.yaml"), []byte(fmt.Sprintf(`targets:
  - app: sleeper
    exe: %q
    off_cpu: true
  - app: locker
    cgroup: %q
    off_cpu: true
`, blocked, "^"+cg+"$")), 0o644)
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(`metrics-export-rules:
  sleeper_settle_off_cpu_seconds:
    expr: 'sleeper.off_cpu'
    node: '(^|;)settle(;|$)'
  sleeper_blocked_off_cpu_seconds:
    expr: 'sleeper.off_cpu'
    node: '(^|;)blocked_function(;|$)'
  sleeper_busy_off_cpu_seconds:
    expr: 'sleeper.off_cpu'
    node: '(^|;)busy_function(;|$)'
  sleeper_busy_cpu_seconds:
    expr: 'sleeper.cpu'
    node: '(^|;)busy_function(;|$)'
  locker_settle_off_cpu_seconds:
    expr: 'locker.off_cpu'
    node: '(^|;)settle(;|$)'
  locker_waiting_off_cpu_seconds:
    expr: 'locker.off_cpu'
    node: '(^|;)waiting_function(;|$)'
`), 0o644)
	// Drained every 2 s (the default is 10 s): the counters reach their
	// values soon after the work.
	addr := exporter(t, "--profile.config="+filepath.Join(dir, "targets.yaml"), "--rules.file="+filepath.Join(dir, "rules.yaml"), "--profile.interval=2s")

	run := func(bin string, cgroup bool) (*exec.Cmd, io.WriteCloser, *strings.Builder) {
		cmd := exec.Command(bin)
		if cgroup {
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgFD}
		}
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out := &strings.Builder{}
		cmd.Stdout = out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, in, out
	}
	sleeper, sleeperIn, sleeperOut := run(blocked, false)
	locker, lockerIn, lockerOut := run(lock, true)
	// Both are counted before the measured part starts.
	testkit.Eventually(t, "off-CPU time while settling", func() bool {
		m := exportedValues(t, addr)
		return m["sleeper_settle_off_cpu_seconds"] > 0 && m["locker_settle_off_cpu_seconds"] > 0
	})
	fmt.Fprintln(sleeperIn, "go")
	fmt.Fprintln(lockerIn, "go")
	if err := sleeper.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := locker.Wait(); err != nil {
		t.Fatal(err)
	}
	measured := func(out *strings.Builder) float64 {
		v, err := strconv.ParseFloat(strings.TrimSpace(out.String()), 64)
		if err != nil {
			t.Fatalf("program output %q: %v", out.String(), err)
		}
		return v
	}
	slept, waited := measured(sleeperOut), measured(lockerOut)
	used := (sleeper.ProcessState.UserTime() + sleeper.ProcessState.SystemTime()).Seconds()
	within := func(got, want float64) bool { return got >= 0.9*want && got <= 1.1*want }
	var m map[string]float64
	ok := testkit.Poll(testkit.WaitLimit, func() bool {
		m = exportedValues(t, addr)
		return within(m["sleeper_blocked_off_cpu_seconds"], slept) && within(m["locker_waiting_off_cpu_seconds"], waited) &&
			m["sleeper_busy_cpu_seconds"] > 0.5*used
	})
	t.Logf("blocked_function: %.3fs off-CPU of %.3fs measured (4.8 s asked); waiting_function: %.3fs of %.3fs measured (2 s asked); busy_function: %.3fs off-CPU, %.3fs CPU of %.3fs used",
		m["sleeper_blocked_off_cpu_seconds"], slept, m["locker_waiting_off_cpu_seconds"], waited, m["sleeper_busy_off_cpu_seconds"], m["sleeper_busy_cpu_seconds"], used)
	if !ok {
		t.Fatalf("off-CPU or CPU seconds not within bounds: %v", m)
	}
	if b := m["sleeper_busy_off_cpu_seconds"]; b > 0.05*slept {
		t.Errorf("busy_function: %.3fs off-CPU, want near 0", b)
	}
}

// exportedValues reads /exported-metrics as name (with labels) -> value.
func exportedValues(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	_, body := get(t, "http://"+addr+"/exported-metrics")
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[l[:i]] = v
		}
	}
	return out
}

// offCPUPython sleeps 50 ms in sleepy_function and 2 ms in
// short_function, 40 rounds, then 100 ms 100 Python calls deep, and prints the time it measured around
// sleepy_function, and around the short sleeps that took 20 ms or more
// (a loaded machine may not run it again at once).
const offCPUPython = `import select, sys, time
def settle():
    while not select.select([sys.stdin], [], [], 0.05)[0]:
        pass
    sys.stdin.readline()
def sleepy_function():
    time.sleep(0.05)
def short_function():
    time.sleep(0.002)
def deep_sleep(n):
    if n:
        return deep_sleep(n - 1)
    time.sleep(0.1)
def main():
    settle()
    slept = slow = 0.0
    for _ in range(40):
        start = time.monotonic()
        sleepy_function()
        slept += time.monotonic() - start
        start = time.monotonic()
        short_function()
        took = time.monotonic() - start
        if took >= 0.02:
            slow += took
    deep_sleep(100)
    print("%.6f %.6f" % (slept, slow), flush=True)
main()
`

// TestOffCPUPython: a CPython program blocked in time.sleep is counted
// under the Python function that sleeps; with --profile.off-cpu-min=20ms
// its 2 ms sleeps are not counted at all; a recording rule sees the
// profile as __profile_type__ off_cpu:off_cpu:nanoseconds:... in
// nanoseconds, and one filtered by function_name sees sleepy_function's
// (its frame is "sleepy_function (…/sleeper.py:N)"); the sleep 100 Python
// frames deep, past the 64-frame walk, is counted in
// probe_exporter_profiler_off_cpu_truncated_seconds_total.
func TestOffCPUPython(t *testing.T) {
	var python string
	for _, glob := range []string{"/usr/bin/python3.1[0-3]", "/root/.pyenv/versions/3.1[0-3].*/bin/python3.1[0-3]"} {
		if m, _ := filepath.Glob(glob); len(m) > 0 {
			python = m[0]
			break
		}
	}
	if python == "" {
		t.Skip("no CPython 3.10-3.13")
	}
	dir := t.TempDir()
	comm := "ocpy" + strconv.Itoa(os.Getpid()%100000)
	bin := filepath.Join(dir, comm)
	if err := os.Symlink(python, bin); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "sleeper.py")
	os.WriteFile(script, []byte(offCPUPython), 0o644)
	os.WriteFile(filepath.Join(dir, "targets.yaml"), []byte("targets:\n  - app: pyoff\n    comm: "+comm+"\n    off_cpu: true\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(`metrics-export-rules:
  pyoff_settle_seconds:
    expr: 'pyoff.off_cpu'
    node: '(^|;)settle \('
  pyoff_sleepy_seconds:
    expr: 'pyoff.off_cpu'
    node: '(^|;)sleepy_function \([^;]*sleeper.py:[0-9]+\)(;|$)'
  pyoff_short_seconds:
    expr: 'pyoff.off_cpu'
    node: '(^|;)short_function \('
recording_rules:
  - metric_name: pyoff_off_cpu_nanoseconds
    matchers: ['{__profile_type__="off_cpu:off_cpu:nanoseconds:off_cpu:nanoseconds", service_name="pyoff"}']
  - metric_name: pyoff_sleepy_nanoseconds
    matchers: ['{__profile_type__="off_cpu:off_cpu:nanoseconds:off_cpu:nanoseconds", service_name="pyoff"}']
    stacktrace_filter: {function_name: {function_name: sleepy_function}}
`), 0o644)
	addr := exporter(t, "--profile.config="+filepath.Join(dir, "targets.yaml"), "--rules.file="+filepath.Join(dir, "rules.yaml"),
		"--profile.off-cpu-min=20ms", "--profile.interval=2s")
	cmd := exec.Command(bin, script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &strings.Builder{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Counted under its Python frame: the interpreter is named.
	testkit.Eventually(t, "off-CPU time under settle", func() bool { return exportedValues(t, addr)["pyoff_settle_seconds"] > 0 })
	fmt.Fprintln(in, "go")
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	var slept, slow float64
	if _, err := fmt.Sscan(out.String(), &slept, &slow); err != nil {
		t.Fatalf("program output %q: %v", out.String(), err)
	}
	var m map[string]float64
	var truncated float64
	ok := testkit.Poll(testkit.WaitLimit, func() bool {
		m = exportedValues(t, addr)
		_, metrics := get(t, "http://"+addr+"/metrics")
		truncated = expoValue(metrics, "probe_exporter_profiler_off_cpu_truncated_seconds_total")
		return m["pyoff_sleepy_seconds"] >= 0.9*slept && m["pyoff_off_cpu_nanoseconds"] >= 0.9*slept*1e9 &&
			m["pyoff_sleepy_nanoseconds"] >= 0.9*slept*1e9 && truncated >= 0.09
	})
	t.Logf("sleepy_function: %.3fs off-CPU of %.3fs measured (2 s asked); short_function: %.3fs (its sleeps of 20 ms or more: %.3fs); recording rules: %.0f ns, %.0f ns under sleepy_function; truncated: %.3fs",
		m["pyoff_sleepy_seconds"], slept, m["pyoff_short_seconds"], slow, m["pyoff_off_cpu_nanoseconds"], m["pyoff_sleepy_nanoseconds"], truncated)
	if !ok {
		t.Fatalf("off-CPU seconds not within bounds: %v, truncated %v s (the 100 ms 100 frames deep)", m, truncated)
	}
	if s := m["pyoff_sleepy_nanoseconds"]; s > 1.1*slept*1e9 {
		t.Errorf("recording rule on sleepy_function: %.0f ns off-CPU of %.3fs measured", s, slept)
	}
	if s := m["pyoff_sleepy_seconds"]; s > 1.1*slept {
		t.Errorf("sleepy_function: %.3fs off-CPU of %.3fs measured", s, slept)
	}
	// A block counted is one of the sleeps the program measured at 20 ms
	// or more (its measure encloses the block).
	if s := m["pyoff_short_seconds"]; s > slow+1e-6 {
		t.Errorf("short_function: %.3fs off-CPU, want at most its %.3fs of sleeps of 20 ms or more under --profile.off-cpu-min=20ms", s, slow)
	}
}

// offCPUFlood blocks once at the end of each of 32,768 distinct call
// paths (two call sites, 15 levels), twice over: more distinct stacks
// than the kernel keeps between drains.
const offCPUFlood = `#include <time.h>
#include <unistd.h>
volatile long sink;
__attribute__((noinline)) void walk(int depth, unsigned path);
__attribute__((noinline)) void leaf(void) { struct timespec d = { 0, 1000 }; nanosleep(&d, 0); sink++; }
__attribute__((noinline)) void left(int depth, unsigned path) { walk(depth - 1, path >> 1); sink++; }
__attribute__((noinline)) void right(int depth, unsigned path) { walk(depth - 1, path >> 1); sink++; }
void walk(int depth, unsigned path) {
	if (depth == 0) leaf(); else if (path & 1) left(depth, path); else right(depth, path);
	sink++;
}
int main(void) {
	sleep(1);
	for (int round = 0; round < 2; round++)
		for (unsigned p = 0; p < 1u << 15; p++) walk(15, p);
	pause();
	return 0;
}
`

// TestAttackOffCPUStackFlood: a local user with no privilege, whose
// processes are profiled with off_cpu: true, blocks in 32,768 distinct
// stacks within one drain interval. The kernel's map keeps 16,384: the
// rest is counted in probe_exporter_profiler_off_cpu_lost_blocks_total
// and _seconds_total, the stacks that fit are exported, /metrics answers,
// nothing panics, VmHWM stays under 512 MiB, and the exporter (default
// flags) ends on SIGTERM within its grace (startExporter's cleanup).
func TestAttackOffCPUStackFlood(t *testing.T) {
	a := testkit.NewAttacker(t)
	dir := t.TempDir()
	name := "ocf" + strconv.Itoa(os.Getpid()%100000)
	built := testkit.BuildC(t, name, offCPUFlood, "-O2")
	// The attacker's own copy, in its home.
	data, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(a.Home, name)
	a.WriteFile(t, bin, data, 0o755)
	os.WriteFile(filepath.Join(dir, "targets.yaml"), []byte("targets:\n  - app: flood\n    comm: "+name+"\n    off_cpu: true\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte("metrics-export-rules:\n  flood_leaf_seconds:\n    expr: 'flood.off_cpu'\n    node: '(^|;)leaf(;|$)'\n"), 0o644)
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr,
		"--profile.config="+filepath.Join(dir, "targets.yaml"), "--rules.file="+filepath.Join(dir, "rules.yaml"))
	a.Start(t, bin)
	value := func(prefix string) float64 {
		for _, l := range series(t, addr, prefix) {
			if v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64); err == nil {
				return v
			}
		}
		return 0
	}
	testkit.Eventually(t, "lost off-CPU blocks counted", func() bool {
		return value("probe_exporter_profiler_off_cpu_lost_blocks_total ") > 0 && value("probe_exporter_profiler_off_cpu_seconds_total ") > 0
	})
	testkit.Eventually(t, "the stacks that fit exported", func() bool { return exportedValues(t, addr)["flood_leaf_seconds"] > 0 })
	t.Logf("lost %.0f blocks (%.3f s), kept %.3f s", value("probe_exporter_profiler_off_cpu_lost_blocks_total "),
		value("probe_exporter_profiler_off_cpu_lost_seconds_total "), value("probe_exporter_profiler_off_cpu_seconds_total "))
	if code, body := get(t, "http://"+addr+"/metrics"); code != 200 || !strings.Contains(body, "probe_exporter_profiler_off_cpu_lost_seconds_total") {
		t.Errorf("/metrics after the attack: %d", code)
	}
	if strings.Contains(p.Log(), "panic:") {
		t.Errorf("the exporter panicked:\n%s", tail(p.Log(), 40))
	}
	hwm := testkit.StatusKiB(t, p.Pid(), "VmHWM:") >> 10
	t.Logf("VmHWM %d MiB", hwm)
	if hwm == 0 || hwm >= 512 {
		t.Errorf("VmHWM %d MiB, bound 512 MiB", hwm)
	}
}
