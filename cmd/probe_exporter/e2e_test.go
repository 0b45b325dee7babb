package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// The test binary doubles as a workload: with PROBE_E2E_COMM set it names
// its thread and makes exactly PROBE_E2E_CALLS getppid calls.
func TestMain(m *testing.M) {
	if comm := os.Getenv("PROBE_E2E_COMM"); comm != "" {
		runtime.LockOSThread()
		name, err := unix.BytePtrFromString(comm)
		if err == nil {
			err = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		n, _ := strconv.Atoi(os.Getenv("PROBE_E2E_CALLS"))
		switch os.Getenv("PROBE_E2E_SYSCALL") {
		case "read":
			os.Exit(readZero(n))
		case "read-on-signal":
			os.Exit(readOnSignal(n))
		}
		if os.Getenv("PROBE_E2E_SYSCALL") == "write" {
			os.Exit(writeSizes())
		}
		call := unix.Getppid
		if os.Getenv("PROBE_E2E_SYSCALL") == "getpid" {
			call = unix.Getpid
		}
		for i := 0; i < n; i++ {
			call()
		}
		os.Exit(0)
	}
	os.Exit(runTests(m))
}

// workload runs the test binary as a process named comm making n getppid
// calls.
func workload(t *testing.T, comm string, n int, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "PROBE_E2E_COMM="+comm, "PROBE_E2E_CALLS="+strconv.Itoa(n)), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("workload: %v\n%s", err, out)
	}
}

// freePort is a free loopback address for an exporter to listen on.
func freePort(t *testing.T) string { return testkit.FreePort(t) }

// exporter runs the daemon in-process with args and returns its address.
func exporter(t *testing.T, args ...string) string {
	t.Helper()
	addr := freePort(t)
	return exporterOn(t, addr, append([]string{"--web.listen-address=" + addr}, args...)...)
}

// exporterOn runs the daemon with args, waiting for it to answer on addr.
func exporterOn(t *testing.T, addr string, args ...string) string {
	t.Helper()
	return exporterOnCheck(t, addr, func() bool { return serves(addr) }, args...)
}

// exporterOnCheck runs the built binary with args until up() says it
// serves; it is stopped with SIGTERM when the test ends and must exit 0.
func exporterOnCheck(t *testing.T, addr string, up func() bool, args ...string) string {
	t.Helper()
	startExporter(t, up, args...)
	return addr
}

// serves reports whether an exporter answers on addr.
func serves(addr string) bool {
	_, _, err := testkit.TryGet("http://" + addr + "/-/healthy")
	return err == nil
}

// get fetches url and returns the status and body; a transport error
// fails the test.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	code, _, body := testkit.Get(t, url)
	return code, body
}

// series returns the exposition lines of /metrics starting with prefix.
func series(t *testing.T, addr, prefix string) []string {
	t.Helper()
	_, body := get(t, "http://"+addr+"/metrics")
	var out []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			out = append(out, sc.Text())
		}
	}
	return out
}

func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

const e2eProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct comm_key { char comm[16]; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, u64);
} getppid_calls_total SEC(".maps");

struct hist_key { char comm[16]; u64 bucket; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct hist_key);
	__type(value, u64);
} getppid_calls_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} raw_sys_enter_total SEC(".maps");

static void bump(void *map, void *key) {
	u64 one = 1, *v = bpf_map_lookup_elem(map, key);
	if (v) __sync_fetch_and_add(v, 1);
	else bpf_map_update_elem(map, key, &one, BPF_NOEXIST);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int count_getppid(void *ctx) {
	struct comm_key k = {};
	bpf_get_current_comm(&k.comm, sizeof(k.comm));
	bump(&getppid_calls_total, &k);
	struct hist_key h = {};
	bpf_get_current_comm(&h.comm, sizeof(h.comm));
	h.bucket = 2; /* every call lands in bucket 2 (le=4) */
	bump(&getppid_calls_hist, &h);
	h.bucket = 5; /* sum key: bucket_max + 1; adds 3 per call */
	u64 *v = bpf_map_lookup_elem(&getppid_calls_hist, &h);
	u64 three = 3;
	if (v) __sync_fetch_and_add(v, 3);
	else bpf_map_update_elem(&getppid_calls_hist, &h, &three, BPF_NOEXIST);
	return 0;
}

SEC("raw_tp/sys_enter")
int count_raw(void *ctx) {
	u32 zero = 0;
	u64 *v = bpf_map_lookup_elem(&raw_sys_enter_total, &zero);
	if (v) *v += 1;
	return 0;
}

SEC("tp_btf/sched_process_exec")
int on_exec(u64 *ctx) {
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`

const e2eYAML = `metrics:
  counters:
    - name: getppid_calls_total
      help: getppid calls by command
      labels:
        - name: comm
          size: 16
          decoders:
            - name: string
            - name: regexp
              regexps:
                - ^e2e_
    - name: raw_sys_enter_total
      help: every syscall entry
  histograms:
    - name: getppid_calls_hist
      help: a histogram that counts every call in bucket 2
      bucket_type: exp2
      bucket_min: 0
      bucket_max: 4
      labels:
        - name: comm
          size: 16
          decoders:
            - name: string
            - name: regexp
              regexps:
                - ^e2e_
        - name: bucket
          size: 8
          decoders:
            - name: uint
`

// kprobeProg uses an attach type this kernel may lack.
const kprobeProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} kcalls SEC(".maps");
SEC("kprobe/do_nanosleep")
int on_nanosleep(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
`

const kprobeYAML = `metrics:
  counters:
    - name: kcalls
      help: nanosleeps
`

func writeConfig(t *testing.T, dir, name, src, yaml string) {
	t.Helper()
	testkit.CompileBPF(t, src, dir, name)
	if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "e2e", e2eProg, e2eYAML)
	writeConfig(t, dir, "kp", kprobeProg, kprobeYAML)
	addr := exporter(t, "--config.dir="+dir, "--config.names=e2e,kp")

	const n = 1234
	workload(t, "e2e_reader", n)
	workload(t, "e2e_other", 7)

	lines := series(t, addr, "probe_exporter_getppid_calls_total")
	for _, want := range []string{
		`probe_exporter_getppid_calls_total{comm="e2e_reader"} 1234`,
		`probe_exporter_getppid_calls_total{comm="e2e_other"} 7`,
	} {
		if !hasLine(lines, want) {
			t.Errorf("missing %q in\n%s", want, strings.Join(lines, "\n"))
		}
	}
	if len(lines) != 2 {
		t.Errorf("regexp decoder should drop other commands; got\n%s", strings.Join(lines, "\n"))
	}

	hist := series(t, addr, `probe_exporter_getppid_calls_hist`)
	for _, want := range []string{
		`probe_exporter_getppid_calls_hist_bucket{comm="e2e_reader",le="1"} 0`,
		`probe_exporter_getppid_calls_hist_bucket{comm="e2e_reader",le="2"} 0`,
		`probe_exporter_getppid_calls_hist_bucket{comm="e2e_reader",le="4"} 1234`,
		`probe_exporter_getppid_calls_hist_bucket{comm="e2e_reader",le="8"} 1234`,
		`probe_exporter_getppid_calls_hist_bucket{comm="e2e_reader",le="16"} 1234`,
		`probe_exporter_getppid_calls_hist_bucket{comm="e2e_reader",le="+Inf"} 1234`,
		`probe_exporter_getppid_calls_hist_sum{comm="e2e_reader"} 3702`,
		`probe_exporter_getppid_calls_hist_count{comm="e2e_reader"} 1234`,
	} {
		if !hasLine(hist, want) {
			t.Errorf("missing %q in\n%s", want, strings.Join(hist, "\n"))
		}
	}

	raw := series(t, addr, "probe_exporter_raw_sys_enter_total ")
	if len(raw) != 1 {
		t.Fatalf("raw_tp counter: %v", raw)
	}
	if v, _ := strconv.ParseFloat(strings.Fields(raw[0])[1], 64); v < n {
		t.Errorf("raw_tp sys_enter counted %v, want at least %d", v, n)
	}

	attached := series(t, addr, "probe_exporter_program_attached")
	for _, want := range []string{
		`probe_exporter_program_attached{config="e2e",program="count_getppid"} 1`,
		`probe_exporter_program_attached{config="e2e",program="count_raw"} 1`,
		`probe_exporter_program_attached{config="e2e",program="on_exec"} 1`,
	} {
		if !hasLine(attached, want) {
			t.Errorf("missing %q in\n%s", want, strings.Join(attached, "\n"))
		}
	}
	// The kprobe config beside it: attached where the kernel has kprobes,
	// reported as failed (and not fatal) where it does not.
	kp := `probe_exporter_program_attached{config="kp",program="on_nanosleep"} `
	switch {
	case hasLine(attached, kp+"1"):
		t.Log("this kernel has kprobes")
	case hasLine(attached, kp+"0"):
		if up := series(t, addr, `probe_exporter_config_up{config="kp"}`); !hasLine(up, `probe_exporter_config_up{config="kp"} 0`) {
			t.Errorf("failed kprobe config should be down: %v", up)
		}
		_, page := get(t, "http://"+addr+"/")
		if !strings.Contains(page, "kprobe do_nanosleep") || !strings.Contains(page, "not attached") {
			t.Errorf("landing page does not show the failed kprobe:\n%s", page)
		}
	default:
		t.Errorf("no attach state for the kprobe program in\n%s", strings.Join(attached, "\n"))
	}
	if up := series(t, addr, `probe_exporter_config_up{config="e2e"}`); !hasLine(up, `probe_exporter_config_up{config="e2e"} 1`) {
		t.Errorf("e2e config should be up: %v", up)
	}
	info := 0
	for _, l := range series(t, addr, `probe_exporter_ebpf_program_info{config="e2e",id="`) {
		if strings.Contains(l, `,program="count_getppid",tag="`) && strings.HasSuffix(l, "} 1") {
			info++
		}
	}
	if info != 1 {
		t.Errorf("program info for count_getppid: %d series", info)
	}
	if code, _ := get(t, "http://"+addr+"/maps"); code != http.StatusNotFound {
		t.Errorf("/maps without --debug answered %d, want 404", code)
	}
}

func TestDefaults(t *testing.T) {
	testkit.SkipIfPreparing(t)
	addr := exporter(t)
	workload(t, "defaults_probe", 50)
	attached := series(t, addr, "probe_exporter_program_attached")
	if len(attached) == 0 {
		t.Fatal("no programs reported")
	}
	for _, l := range attached {
		if !strings.HasSuffix(l, " 1") {
			t.Errorf("embedded default not attached: %s", l)
		}
	}
	// Syscalls by name: the workload's getppid calls are there.
	lines := series(t, addr, `probe_exporter_syscalls_total{syscall="getppid"}`)
	if len(lines) != 1 {
		t.Fatalf("getppid syscalls: %v", lines)
	}
	if v, _ := strconv.ParseFloat(strings.Fields(lines[0])[1], 64); v < 50 {
		t.Errorf("getppid counted %v, want >= 50", v)
	}
	// Block IO by device and operation: write and sync a file on the
	// disk holding the repository.
	scratch, err := os.MkdirTemp("../..", ".e2e-io-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(scratch)
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(scratch, "f"), "bs=64k", "count=32", "conv=fsync").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		writes := series(t, addr, `probe_exporter_bio_latency_seconds_count{device="`)
		sizes := series(t, addr, `probe_exporter_bio_size_bytes_bucket{device="`)
		rq := series(t, addr, `probe_exporter_runqueue_latency_seconds_bucket{le="+Inf"}`)
		found := false
		for _, w := range writes {
			if strings.Contains(w, `operation="write"`) {
				found = true
			}
		}
		if found && len(sizes) > 0 && len(rq) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no block IO writes or run queue latency:\n%s\n%s\n%s", strings.Join(writes, "\n"), strings.Join(sizes, "\n"), strings.Join(rq, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "e2e", e2eProg, e2eYAML)
	if code := runBinary(t, "--config.dir="+dir, "--config.names=e2e", "--config.check"); code != 0 {
		t.Fatalf("--config.check on a good config exited %d", code)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("metrics:\n  counters:\n    - name: x\n      help: y\n      lables: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := runBinary(t, "--config.dir="+dir, "--config.names=e2e,bad", "--config.check"); code != 1 {
		t.Fatalf("--config.check with a bad config exited %d, want 1", code)
	}
	if code := runBinary(t, "--config.dir="+dir, "--config.names=e2e,bad", "--config.strict", "--web.listen-address=127.0.0.1:0"); code != 1 {
		t.Fatalf("--config.strict with a bad config exited %d, want 1", code)
	}
}
