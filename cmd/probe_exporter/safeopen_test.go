package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// jitBurner runs a counting loop in anonymous executable memory, as a JIT
// would, and prints that code's address: frames there are named only by
// the process's /tmp/perf-PID.map.
const jitBurner = `#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
int main(void) {
	static const unsigned char code[] = {0x48, 0xff, 0xcf, 0x75, 0xfb, 0xc3}; /* dec rdi; jnz; ret */
	unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) return 1;
	memcpy(p, code, sizeof code);
	printf("%lx\n", (unsigned long)p);
	fflush(stdout);
	void (*fn)(long) = (void (*)(long))p;
	for (;;) fn(10000000);
}
`

// buildAs compiles C source into the attacker's home, owned by it.
func buildAs(t *testing.T, a *testkit.Attacker, src, name string) string {
	t.Helper()
	bin := filepath.Join(a.Home, name)
	testkit.BuildCAt(t, bin, []string{src}, "-O0", "-fno-omit-frame-pointer")
	if err := os.Chown(bin, int(a.UID), int(a.GID)); err != nil {
		t.Fatal(err)
	}
	return bin
}

// startBurner starts the JIT burner as the attacker and returns its pid
// and the address of its JIT code.
func startBurner(t *testing.T, a *testkit.Attacker, bin string) (int, uint64) {
	t.Helper()
	cmd := a.Command(bin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addr, err := strconv.ParseUint(strings.TrimSpace(line), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { os.Remove(fmt.Sprintf("/tmp/perf-%d.map", pid)) })
	return pid, addr
}

// maxExporterHWM bounds the exporter's peak RSS under the perf map attacks
// (a FIFO fed forever once took it to 2.7 GB): the profiler with its
// tables and one perf map read at its 16 MiB cap.
const maxExporterHWM = 300 << 10 // kB

// TestPerfMapAttacks: an unprivileged user's profiled JIT process plants
// its /tmp/perf-PID.map as (1) a symlink to a root-only file whose lines
// would name its JIT frame, (2) a FIFO with no writer, (3) a FIFO fed
// forever and a regular file larger than the bound. The secret shows
// nowhere, the profiler keeps draining and counting, /metrics answers,
// the exporter's memory stays bounded, and the refusals are counted.
func TestPerfMapAttacks(t *testing.T) {
	a := testkit.NewAttacker(t)
	name := "jb" + strconv.Itoa(os.Getpid()%100000)
	bin := buildAs(t, a, jitBurner, name)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "targets.yaml"), []byte("targets:\n  - app: jit\n    comm: "+name+"\n"), 0o644)
	// A rule over the frames: a leaked name would be counted in it.
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte("metrics-export-rules:\n  jit_leak_seconds:\n    expr: 'jit.cpu'\n    node: '.*secret_[0-9a-f]+.*'\n"), 0o644)
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr,
		"--profile.config="+filepath.Join(dir, "targets.yaml"), "--rules.file="+filepath.Join(dir, "rules.yaml"))

	// (1) A symlink to a root-only file naming the JIT code.
	secret, marker := testkit.Secret(t)
	pid1, jit1 := startBurner(t, a, bin)
	if err := os.WriteFile(secret, []byte(fmt.Sprintf("%x 100 %s\n", jit1, marker)), 0o600); err != nil {
		t.Fatal(err)
	}
	a.Run(t, fmt.Sprintf("ln -s %s /tmp/perf-%d.map", secret, pid1))
	// (2) A FIFO with no writer.
	pid2, _ := startBurner(t, a, bin)
	a.Run(t, fmt.Sprintf("mkfifo /tmp/perf-%d.map", pid2))
	// (3) A FIFO fed forever, and a regular file past the 16 MiB bound
	// (40 MB of lines).
	pid3, _ := startBurner(t, a, bin)
	a.Run(t, fmt.Sprintf("mkfifo /tmp/perf-%d.map", pid3))
	a.Start(t, "sh", "-c", fmt.Sprintf("yes '7f0000000000 10 fed_forever_frame' > /tmp/perf-%d.map", pid3))
	pid4, _ := startBurner(t, a, bin)
	a.Run(t, fmt.Sprintf("yes '7f0000000000 10 a_long_jit_frame_name_to_fill_the_map' | head -c 40000000 > /tmp/perf-%d.map", pid4))

	// The drain goes on: samples keep being counted after the attacks
	// (a FIFO opened for reading stopped it for good).
	samples := seriesValue(t, addr, "probe_exporter_profiler_samples_total")
	drains := seriesValue(t, addr, "probe_exporter_profiler_drains_total")
	testkit.Eventually(t, "two more drains counting samples", func() bool {
		return seriesValue(t, addr, "probe_exporter_profiler_drains_total") >= drains+2 &&
			seriesValue(t, addr, "probe_exporter_profiler_samples_total") > samples
	})
	if v := seriesValue(t, addr, "jit_leak_seconds"); v > 0 {
		t.Errorf("the rule over secret frames counted %v", v)
	}
	errs := func(reason string) float64 {
		return seriesValue(t, addr, `probe_exporter_untrusted_file_errors_total{reason="`+reason+`"}`)
	}
	testkit.Eventually(t, "the symlinked perf map refused", func() bool { return errs("symlink") > 0 })
	testkit.Eventually(t, "the FIFO perf maps refused", func() bool { return errs("not_regular") > 0 })
	testkit.Eventually(t, "the large perf map cut", func() bool { return seriesValue(t, addr, "probe_exporter_profiler_perf_map_cut_total") > 0 })
	for _, pid := range []int{pid1, pid2, pid3, pid4} {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			t.Errorf("burner %d is gone: %v", pid, err)
		}
	}
	if hwm := testkit.StatusKiB(t, p.Pid(), "VmHWM:"); hwm > maxExporterHWM {
		t.Errorf("exporter VmHWM %d kB, bound %d kB", hwm, maxExporterHWM)
	} else {
		t.Logf("exporter VmHWM %d kB", hwm)
	}
	outputs := map[string]string{}
	for _, path := range []string{"/metrics", "/exported-metrics", "/", "/-/healthy", "/-/ready"} {
		_, body := get(t, "http://"+addr+path)
		outputs[path] = body
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exporter exited %d", code)
	}
	outputs["log"] = p.Log()
	testkit.NotContains(t, marker, outputs)
	if strings.Contains(p.Log(), "panic:") {
		t.Errorf("panic in the log:\n%s", tail(p.Log(), 40))
	}
}

// victim opens argv[1] at start, then, once argv[2] exists, maps it
// executable (so the mapping is new after the attacker bind-mounted a FIFO
// over argv[1]'s path) and calls work() in a loop.
const victim = `#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
__attribute__((noinline)) int work(int i) { asm volatile(""); return 2 * i; }
int main(int argc, char **argv) {
	int fd = argc > 2 ? open(argv[1], O_RDONLY) : -1;
	if (argc > 2) {
		while (access(argv[2], F_OK) != 0) usleep(10000);
		if (mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0) == MAP_FAILED) return 1;
	}
	for (volatile long i = 0;; i++) { work(i); if (i % 1000 == 0) usleep(100); }
}
`

const victimConfig = `programs:
  - name: victim
    metrics:
      counters:
        - name: victim_work_calls_total
          help: work() calls by pid
          table: calls
          labels:
            - name: pid
              size: 4
              decoders:
                - name: pid
    uprobes:
      work: on_work
    attachments:
      binary_name: "%s"
    code: |
      #include "vmlinux.h"
      #include <bpf/bpf_helpers.h>
      #include <bpf/bpf_tracing.h>
      struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64); __type(key, u32); __type(value, u64); } calls SEC(".maps");
      SEC("uprobe")
      int on_work(struct pt_regs *ctx) {
          u32 pid = bpf_get_current_pid_tgid() >> 32;
          u64 one = 1, *p = bpf_map_lookup_elem(&calls, &pid);
          if (p) __sync_fetch_and_add(p, 1);
          else bpf_map_update_elem(&calls, &pid, &one, BPF_NOEXIST);
          return 0;
      }
      char LICENSE[] SEC("license") = "GPL";
`

// procState is the state letter of /proc/PID/stat ("" when gone).
func procState(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 || i+2 >= len(data) {
		return ""
	}
	return string(data[i+2])
}

// TestBindMountedFIFO: in its own user and mount namespace (unshare -Urm),
// an unprivileged user bind-mounts a FIFO over a file its process then
// maps executable; the process is selected by the profiler and by a
// userspace uprobe config. Opening that path once hung the watcher: the
// exporter must keep answering /metrics, a newly started selected process
// must not stay stopped (held at exec) and is counted, and SIGTERM ends the
// exporter with exit 0.
func TestBindMountedFIFO(t *testing.T) {
	testkit.RequireTools(t, "unshare", "clang")
	a := testkit.NewAttacker(t)
	if out, err := a.Command("unshare", "-Urm", "true").CombinedOutput(); err != nil {
		t.Skipf("unprivileged user namespaces are unavailable: %v %s", err, out)
	}
	name := "vic" + strconv.Itoa(os.Getpid()%100000)
	bin := buildAs(t, a, victim, name)
	lib := filepath.Join(a.Home, "libplanted.so")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	a.WriteFile(t, lib, data, 0o755)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "targets.yaml"), []byte("targets:\n  - app: victim\n    comm: "+name+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "victim.yaml"), []byte(fmt.Sprintf(victimConfig, name)), 0o644)
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr,
		"--profile.config="+filepath.Join(dir, "targets.yaml"), "--config.dir="+dir, "--config.names=victim")

	fifo := filepath.Join(a.Home, "fifo")
	trigger := filepath.Join(a.Home, "go")
	a.Run(t, "mkfifo "+fifo)
	a.Start(t, "unshare", "-Urm", "sh", "-c", fmt.Sprintf("%s %s %s & sleep 0.2; mount --bind %s %s && touch %s; wait", bin, lib, trigger, fifo, lib, trigger))
	// The victim in the namespace has mapped the file under the FIFO.
	var vpid int
	testkit.Eventually(t, "the victim mapping the file covered by a FIFO", func() bool {
		out, _ := exec.Command("pgrep", "-x", name).Output()
		for _, f := range strings.Fields(string(out)) {
			pid, _ := strconv.Atoi(f)
			maps, _ := os.ReadFile("/proc/" + f + "/maps")
			if strings.Contains(string(maps), lib) {
				vpid = pid
				return true
			}
		}
		return false
	})
	// Its probes count: it was seen and placed.
	testkit.Eventually(t, "the victim counted", func() bool {
		return seriesValue(t, addr, `probe_exporter_victim_work_calls_total{pid="`+strconv.Itoa(vpid)+`"}`) > 0
	})
	// The profiler re-read its mappings since (it reads them every 20 ms
	// in its first second): two drains later it still drains.
	drains := seriesValue(t, addr, "probe_exporter_profiler_drains_total")
	testkit.Eventually(t, "two more drains", func() bool {
		return seriesValue(t, addr, "probe_exporter_profiler_drains_total") >= drains+2
	})
	// A newly started selected process is held at exec until its probes
	// are placed, then continued, and counted.
	fresh := a.Start(t, bin)
	testkit.Eventually(t, "the new process counted", func() bool {
		return seriesValue(t, addr, `probe_exporter_victim_work_calls_total{pid="`+strconv.Itoa(fresh.Process.Pid)+`"}`) > 0
	})
	for _, pid := range []int{vpid, fresh.Process.Pid} {
		if s := procState(pid); s == "T" || s == "t" || s == "" {
			t.Errorf("process %d state %q", pid, s)
		}
	}
	if code, _ := get(t, "http://"+addr+"/metrics"); code != 200 {
		t.Errorf("/metrics answered %d", code)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exporter exited %d", code)
	}
	if strings.Contains(p.Log(), "panic:") {
		t.Errorf("panic in the log:\n%s", tail(p.Log(), 40))
	}
}
