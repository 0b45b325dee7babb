package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

const soakConfig = `programs:
  - name: soak
    metrics:
      counters:
        - name: soak_calls_total
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
      struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4096); __type(key, u32); __type(value, u64); } calls SEC(".maps");
      SEC("uprobe") int on_work(void *ctx) {
          u32 pid = bpf_get_current_pid_tgid() >> 32;
          u64 one = 1;
          bpf_map_update_elem(&calls, &pid, &one, BPF_ANY);
          return 0;
      }
      char LICENSE[] SEC("license") = "GPL";
`

// TestShortLivedTargets: thousands of short-lived selected processes are
// attached to and detached from; afterwards no attachment, fd or series is
// left and RSS has not grown with them.
func TestShortLivedTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test")
	}
	testkit.RequireTools(t, "clang")
	dir := t.TempDir()
	name := "soak" + strconv.Itoa(os.Getpid()%100000)
	// Each process lives 50 ms, calling work() until it is attached and
	// then once more, so every one can be attached before it exits.
	bin := testkit.BuildC(t, name, "#include <unistd.h>\n__attribute__((noinline)) int work(int i) { asm volatile(\"\"); return i; }\nint main(void) { work(0); usleep(50000); work(1); return 0; }\n", "-O1")
	os.WriteFile(filepath.Join(dir, "soak.yaml"), []byte(fmt.Sprintf(soakConfig, name)), 0o644)
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--config.dir="+dir, "--config.names=soak", "--config.strict")
	openFDs := func(t *testing.T) int { n, _ := fds(t, p.Pid()); return n }

	run := func(n int) { runMany(t, n, func() *exec.Cmd { return exec.Command(bin) }) }
	settle := func() {
		deadline := time.Now().Add(30 * time.Second)
		for len(series(t, addr, `probe_exporter_enabled_programs{config="soak"`)) > 0 || len(series(t, addr, `probe_exporter_soak_calls_total{`)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("attachments or series left: %v", series(t, addr, `probe_exporter_enabled_programs{config="soak"`))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	run(300) // warm up: caches, pools
	settle()
	fds, mem := openFDs(t), testkit.StatusKiB(t, p.Pid(), "VmRSS:")
	const n = 10000
	start := time.Now()
	run(n)
	settle()
	attaches := int(seriesValue(t, addr, "probe_exporter_userspace_attaches_total"))
	detaches := int(seriesValue(t, addr, "probe_exporter_userspace_detaches_total"))
	// The kernel selects every process at exec; userspace sees a process
	// alive ("attached", logged) only when it reads the exec event before
	// the process exits. What must hold: every one seen was let go.
	if attaches < 1 || attaches != detaches {
		t.Errorf("attached %v times, detached %v times, for %d processes", attaches, detaches, n+300)
	}
	t.Logf("%d processes in %v; %v attached; fds %d -> %d; RSS %d -> %d kB", n, time.Since(start).Round(time.Millisecond), attaches, fds, openFDs(t), mem, testkit.StatusKiB(t, p.Pid(), "VmRSS:"))
	if got := openFDs(t); got > fds+2 {
		t.Errorf("fds grew from %d to %d", fds, got)
	}
	if got := testkit.StatusKiB(t, p.Pid(), "VmRSS:"); got > mem+32*1024 {
		t.Errorf("RSS grew from %d kB to %d kB", mem, got)
	}
}
