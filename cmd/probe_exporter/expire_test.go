package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// exProg counts getppid calls by process, for the commands starting
// with "ex_", in a map of 1024 entries.
const exProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u64);
} getppid_by_pid SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx) {
	char comm[16];
	bpf_get_current_comm(&comm, sizeof(comm));
	if (comm[0] != 'e' || comm[1] != 'x' || comm[2] != '_')
		return 0;
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	u64 one = 1, *v = bpf_map_lookup_elem(&getppid_by_pid, &pid);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&getppid_by_pid, &pid, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`

const exYAML = `metrics:
  counters:
    - name: getppid_by_pid
      help: getppid calls by process
      labels:
        - name: pid
          size: 4
          decoders:
            - name: pid
`

var exSeriesRE = regexp.MustCompile(`^probe_exporter_getppid_by_pid\{pid="(\d+)"\} (\d+)$`)

// exSeries returns the getppid count of every pid served.
func exSeries(t *testing.T, addr string) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, l := range series(t, addr, "probe_exporter_getppid_by_pid{") {
		m := exSeriesRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unexpected series %q", l)
		}
		pid, _ := strconv.Atoi(m[1])
		v, _ := strconv.Atoi(m[2])
		out[pid] = v
	}
	return out
}

func exExpired(t *testing.T, addr string) int {
	t.Helper()
	return slValue(t, addr, `probe_exporter_map_entries_expired_total{config="expire",map="getppid_by_pid",reason="process_exit"} `)
}

// exRun runs n processes named ex_short, 20 at a time, each making calls
// getppid calls, and returns their pids.
func exRun(t *testing.T, n, calls int) []int {
	t.Helper()
	var mu sync.Mutex
	var cmds []*exec.Cmd
	runMany(t, n, func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PROBE_E2E_COMM=ex_short", "PROBE_E2E_CALLS="+strconv.Itoa(calls))
		mu.Lock()
		cmds = append(cmds, cmd)
		mu.Unlock()
		return cmd
	})
	pids := make([]int, len(cmds))
	for i, c := range cmds {
		pids[i] = c.Process.Pid
	}
	return pids
}

// TestExpireProcessExit: 100 processes make 37 getppid calls each and
// exit. The first scrape after shows each with exactly 37; their entries
// are then deleted from the kernel map: the next scrape has none of them
// and probe_exporter_map_entries_expired_total says 100.
func TestExpireProcessExit(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "expire", exProg, exYAML)
	addr := exporter(t, "--config.dir="+dir, "--config.names=expire")
	if got := exExpired(t, addr); got != 0 {
		t.Fatalf("expired before any process: %d", got)
	}
	const n, calls = 100, 37
	pids := exRun(t, n, calls)
	got := exSeries(t, addr)
	for _, pid := range pids {
		if got[pid] != calls {
			t.Errorf("pid %d: %d calls served, want %d", pid, got[pid], calls)
		}
	}
	if len(got) != n {
		t.Errorf("%d series, want %d", len(got), n)
	}
	if after := exSeries(t, addr); len(after) != 0 {
		t.Errorf("%d series left after the scrape that served them (e.g. %v)", len(after), after)
	}
	if got := exExpired(t, addr); got != n {
		t.Errorf("expired %d entries, want %d", got, n)
	}
}

// TestExpireChurn: 2,000 short-lived processes (5 calls, then exit), 20 at
// a time, scraped every 100 ms meanwhile. The map (1,024 entries) never
// fills, since exited processes' entries go; every process is served with
// all its calls before its entry goes; at the end the map is empty and
// every deletion is counted.
func TestExpireChurn(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 300
	}
	const calls = 5
	dir := t.TempDir()
	writeConfig(t, dir, "expire", exProg, exYAML)
	addr := exporter(t, "--config.dir="+dir, "--config.names=expire")

	seen := map[int]int{} // the highest count served per pid
	most := 0
	scrapeOnce := func() {
		s := exSeries(t, addr)
		most = max(most, len(s))
		for pid, v := range s {
			seen[pid] = max(seen[pid], v)
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				scrapeOnce()
			}
		}
	}()
	pids := exRun(t, n, calls)
	close(stop)
	<-done
	scrapeOnce() // serves the last ones
	lost := 0
	for _, pid := range pids {
		if seen[pid] != calls {
			lost++
			if lost < 5 {
				t.Errorf("pid %d: %d calls served, want %d", pid, seen[pid], calls)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d processes not served with all their calls", lost, n)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		left, expired := exSeries(t, addr), exExpired(t, addr)
		if len(left) == 0 && expired == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d series left, %d entries expired; want 0 and %d", len(left), expired, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d processes, at most %d series in a scrape", n, most)
	if most >= 1024 {
		t.Errorf("a scrape served %d series: the map filled up", most)
	}
	_, body := get(t, "http://"+addr+"/metrics")
	if !strings.Contains(body, `decoder_errors_total{config="expire"} 0`) {
		t.Errorf("decoder errors:\n%s", series(t, addr, "probe_exporter_decoder_errors_total"))
	}
}

// TestExampleProcessReads serves examples/process-reads: three counters
// from one per-CPU struct value per process, exact for a helper making 123
// reads of 4096 bytes, served once after it exited, then deleted.
func TestExampleProcessReads(t *testing.T) {
	testkit.RequireTools(t, "clang")
	dir, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("make", "-C", dir, "process-reads.bpf.o").CombinedOutput(); err != nil {
		t.Fatalf("make: %v\n%s", err, out)
	}
	addr := exporter(t, "--config.dir="+dir, "--config.names=process-reads", "--config.strict")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PROBE_E2E_COMM=e2e_reads", "PROBE_E2E_CALLS=123", "PROBE_E2E_SYSCALL=read")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("workload: %v\n%s", err, out)
	}
	labels := `{comm="e2e_reads",pid="` + strconv.Itoa(cmd.Process.Pid) + `"} `
	lines := series(t, addr, "probe_exporter_process_read_")
	for _, want := range []string{
		"probe_exporter_process_read_calls_total" + labels + "123",
		"probe_exporter_process_read_bytes_total" + labels + "503808",
		"probe_exporter_process_read_errors_total" + labels + "0",
	} {
		if !hasLine(lines, want) {
			t.Errorf("missing %q", want)
		}
	}
	for _, l := range series(t, addr, "probe_exporter_process_read_") {
		if strings.Contains(l, labels) {
			t.Errorf("served again after its exit: %s", l)
		}
	}
}
