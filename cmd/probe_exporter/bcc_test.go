package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// bccGCConfig is ebpf-userspace-exporter's gc_total example as its README
// gives it (bcc's dialect, its own `attachment:` spelling); only the
// binary name is the test's.
const bccGCConfig = `programs:
  - name: gc_total
    metrics:
      counters:
        - name: gc_total
          help: Total number of gc events
          table: gc_counts
          labels:
            - name: gen
              size: 8
              decoders:
                - name: uint
    usdt:
      gc__start: trace_gc__start
    attachment:
      binary_name: "gunicorn"
    code: |
      struct gc_event_t {
          u64 gen;
      };

      BPF_HASH(gc_counts, struct gc_event_t);

      int trace_gc__start(struct pt_regs *ctx) {
          struct gc_event_t e = {};
          int gen = 0;
          bpf_usdt_readarg(1, ctx, &gen);
          e.gen = gen;
          gc_counts.increment(e);
          return 0;
      }
`

// bccRedisConfig is ebpf-userspace-exporter's redis_alloc_latency example
// (examples/redis_alloc_latency.yaml in its repository): a uprobe and a
// uretprobe on je_malloc of the selected redis-server, an exp2 histogram
// whose key 32 holds the sum, and a BPF_PERF_OUTPUT it declares but never
// uses. Only the binary name is the test's.
const bccRedisConfig = `programs:
  - name: malloc_latency
    metrics:
      histograms:
        - name: malloc_latency_nanoseconds
          help: Latency of malloc calls
          table: malloc_latency
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 31
          labels:
            - name: bucket
              size: 8
              decoders:
                - name: uint
    uprobes:
      je_malloc: trace_entry
    uretprobes:
      je_malloc: trace_return
    attachment:
      binary_name: "redis-server"
    code: |
      #include <uapi/linux/ptrace.h>
      #define TOTAL_BUCKETS 32

      struct entry_t {
          u64 start_ns;
      };

      struct latency_key_t {
          u64 slot;
      };

      BPF_HASH(entryinfo, u64, struct entry_t);
      BPF_HISTOGRAM(malloc_latency, struct latency_key_t, TOTAL_BUCKETS + 1);
      BPF_PERF_OUTPUT(events);

      int trace_entry(struct pt_regs *ctx) {
          u64 tgid_pid = bpf_get_current_pid_tgid();

          struct entry_t entry = {};
          entry.start_ns = bpf_ktime_get_ns();

          entryinfo.update(&tgid_pid, &entry);

          return 0;
      }

      int trace_return(struct pt_regs *ctx) {
          struct entry_t *entryp;
          u64 tgid_pid = bpf_get_current_pid_tgid();

          entryp = entryinfo.lookup(&tgid_pid);
          if (entryp == 0) {
              return 0;
          }

          u64 delta = bpf_ktime_get_ns() - entryp->start_ns;
          entryinfo.delete(&tgid_pid);

          struct latency_key_t key = {};
          key.slot = bpf_log2l(delta);
          if (key.slot >= TOTAL_BUCKETS) {
              key.slot = TOTAL_BUCKETS - 1;
          }
          malloc_latency.increment(key);

          key.slot = TOTAL_BUCKETS;
          malloc_latency.increment(key, delta);

          return 0;
      }
`

// bccCachestatConfig is ebpf_exporter v1's page cache example (kprobes).
const bccCachestatConfig = `programs:
  - name: cachestat
    metrics:
      counters:
        - name: page_cache_ops_total
          help: Page cache operation counters by type
          table: counts
          labels:
            - name: op
              size: 8
              decoders:
                - name: ksym
            - name: command
              size: 128
              decoders:
                - name: string
                - name: regexp
                  regexps:
                    - ^systemd-journal$
                    - ^syslog-ng$
    kprobes:
      add_to_page_cache_lru: do_count
      mark_page_accessed: do_count
      account_page_dirtied: do_count
      mark_buffer_dirty: do_count
    code: |
      #include <uapi/linux/ptrace.h>

      struct key_t {
          u64 ip;
          char command[128];
      };

      BPF_HASH(counts, struct key_t);

      int do_count(struct pt_regs *ctx) {
          struct key_t key = { .ip = PT_REGS_IP(ctx) - 1 };
          bpf_get_current_comm(&key.command, sizeof(key.command));

          counts.increment(key);

          return 0;
      }
`

// bccBioConfig is ebpf_exporter v1's block IO example (kprobes, kernel
// struct reads through req->rq_disk, which kernels >= 5.17 lack).
const bccBioConfig = `programs:
  - name: bio
    metrics:
      histograms:
        - name: bio_latency_seconds
          help: Block IO latency histogram
          table: io_latency
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 26
          bucket_multiplier: 0.000001 # microseconds to seconds
          labels:
            - name: device
              size: 32
              decoders:
                - name: string
            - name: operation
              size: 8
              decoders:
                - name: uint
                - name: static_map
                  static_map:
                    1: read
                    2: write
            - name: bucket
              size: 8
              decoders:
                - name: uint
        - name: bio_size_bytes
          help: Block IO size histogram with kibibyte buckets
          table: io_size
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 15
          bucket_multiplier: 1024 # kibibytes to bytes
          labels:
            - name: device
              size: 32
              decoders:
                - name: string
            - name: operation
              size: 8
              decoders:
                - name: uint
                - name: static_map
                  static_map:
                    1: read
                    2: write
            - name: bucket
              size: 8
              decoders:
                - name: uint
    kprobes:
      blk_start_request: trace_req_start
      blk_mq_start_request: trace_req_start
      blk_account_io_completion: trace_req_completion
    code: |
      #include <linux/blkdev.h>
      #include <linux/blk_types.h>

      typedef struct disk_key {
          char disk[32];
          u8 op;
          u64 slot;
      } disk_key_t;

      // Max number of disks we expect to see on the host
      const u8 max_disks = 255;

      // 27 buckets for latency, max range is 33.6s .. 67.1s
      const u8 max_latency_slot = 26;

      // 16 buckets per disk in kib, max range is 16mib .. 32mib
      const u8 max_size_slot = 15;

      // Hash to temporily hold the start time of each bio request, max 10k in-flight by default
      BPF_HASH(start, struct request *);

      // Histograms to record latencies
      BPF_HISTOGRAM(io_latency, disk_key_t, (max_latency_slot + 2) * max_disks);

      // Histograms to record sizes
      BPF_HISTOGRAM(io_size, disk_key_t, (max_size_slot + 2) * max_disks);

      // Record start time of a request
      int trace_req_start(struct pt_regs *ctx, struct request *req) {
          u64 ts = bpf_ktime_get_ns();
          start.update(&req, &ts);

          return 0;
      }

      // Calculate request duration and store in appropriate histogram bucket
      int trace_req_completion(struct pt_regs *ctx, struct request *req, unsigned int bytes) {
          u64 *tsp, delta;

          // Fetch timestamp and calculate delta
          tsp = start.lookup(&req);
          if (tsp == 0) {
              return 0; // missed issue
          }

          // There are write request with zero length on sector zero,
          // which do not seem to be real writes to device.
          if (req->__sector == 0 && req->__data_len == 0) {
            return 0;
          }

          // Disk that received the request
          struct gendisk *disk = req->rq_disk;

          // Delta in nanoseconds
          delta = bpf_ktime_get_ns() - *tsp;

          // Convert to microseconds
          delta /= 1000;

          // Latency histogram key
          u64 latency_slot = bpf_log2l(delta);

          // Cap latency bucket at max value
          if (latency_slot > max_latency_slot) {
              latency_slot = max_latency_slot;
          }

          disk_key_t latency_key = { .slot = latency_slot };
          bpf_probe_read(&latency_key.disk, sizeof(latency_key.disk), &disk->disk_name);

          // Size in kibibytes
          u64 size_kib = bytes / 1024;

          // Request size histogram key
          u64 size_slot = bpf_log2(size_kib);

          // Cap latency bucket at max value
          if (size_slot > max_size_slot) {
              size_slot = max_size_slot;
          }

          disk_key_t size_key = { .slot = size_slot };
          bpf_probe_read(&size_key.disk, sizeof(size_key.disk), &disk->disk_name);

          if ((req->cmd_flags & REQ_OP_MASK) == REQ_OP_WRITE) {
              latency_key.op = 2;
              size_key.op    = 2;
          } else {
              latency_key.op = 1;
              size_key.op    = 1;
          }

          io_latency.increment(latency_key);
          io_size.increment(size_key);

          // Increment sum keys
          latency_key.slot = max_latency_slot + 1;
          io_latency.increment(latency_key, delta);
          size_key.slot = max_size_slot + 1;
          io_size.increment(size_key, size_kib);

          start.delete(&req);

          return 0;
      }
`

func needClang(t *testing.T) {
	t.Helper()
	testkit.RequireTools(t, "clang")
}

// TestBCCPythonGC runs ebpf-userspace-exporter's gc_total example, its bcc
// code untouched, on Debian's python3.11 started after the exporter: each
// gc.collect(gen) is counted exactly once under its generation and, as
// that exporter labelled every metric, the Python's pid; when the Python
// exits its series go.
func TestBCCPythonGC(t *testing.T) {
	const python = "/usr/bin/python3.11"
	if _, err := os.Stat(python); err != nil {
		t.Skip("Debian's python3.11 is not installed")
	}
	needClang(t)
	dir := t.TempDir()
	// A copy with a name of its own, so that only the test's Python matches.
	bin := filepath.Join(dir, "bccgc"+strconv.Itoa(os.Getpid()%10000))
	data, err := os.ReadFile(python)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(bccGCConfig, `"gunicorn"`, strconv.Quote(filepath.Base(bin)), 1)
	os.WriteFile(filepath.Join(dir, "gc.yaml"), []byte(cfg), 0o644)
	script := filepath.Join(dir, "gc.py")
	os.WriteFile(script, []byte(gcScript), 0o644)

	addr := exporter(t, "--config.dir="+dir, "--config.names=gc", "--config.strict", "--debug")

	py := testkit.StartWorker(t, bin, "-S", script)
	pid := strconv.Itoa(py.Pid())
	waitFor(t, addr, "probe_exporter_enabled_programs",
		`probe_exporter_enabled_programs{config="gc_total",pid="`+pid+`",program="trace_gc__start"} 1`)
	value := func(gen int) float64 {
		prefix := `probe_exporter_gc_total{gen="` + strconv.Itoa(gen) + `",pid="` + pid + `"} `
		for _, l := range series(t, addr, prefix) {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(l, prefix), 64)
			return v
		}
		return 0
	}
	for _, tc := range []struct{ gen, n int }{{2, 7}, {0, 5}, {1, 3}, {2, 11}} {
		before := value(tc.gen)
		gcCollect(t, py, tc.gen, tc.n)
		if got := value(tc.gen) - before; got != float64(tc.n) {
			t.Errorf("gc.collect(%d) x%d counted %v", tc.gen, tc.n, got)
		}
	}
	py.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for len(series(t, addr, `probe_exporter_gc_total{gen="2",pid="`+pid+`"}`)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("exited pid %s still has series", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fakeRedis stands in for redis-server and speaks the worker protocol
// (testkit.Worker): each line n on its input has it call je_malloc n times.
const fakeRedis = `#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) void *je_malloc(size_t n) { void *p = malloc(n); asm volatile("" ::: "memory"); return p; }
int main(int argc, char **argv) {
  char line[64];
  printf("ready\n");
  fflush(stdout);
  while (fgets(line, sizeof line, stdin)) {
    for (int i = atoi(line); i > 0; i--) free(je_malloc(64));
    printf("done\n");
    fflush(stdout);
  }
  return 0;
}
`

// TestBCCRedisMallocLatency runs ebpf-userspace-exporter's
// redis_alloc_latency example, its bcc code untouched (BPF_PERF_OUTPUT
// included), on a stand-in redis-server started after the exporter: every
// je_malloc call is counted once, in the 33 series (32 buckets and +Inf)
// that exporter's own integration test expects, with the sum from key 32.
func TestBCCRedisMallocLatency(t *testing.T) {
	needClang(t)
	testkit.RequireTools(t, "gcc")
	dir := t.TempDir()
	name := "rds" + strconv.Itoa(os.Getpid()%100000)
	bin := filepath.Join(dir, name)
	testkit.BuildCAt(t, bin, []string{fakeRedis}, "-O1")
	cfg := strings.Replace(bccRedisConfig, `"redis-server"`, strconv.Quote(name), 1)
	os.WriteFile(filepath.Join(dir, "redis.yaml"), []byte(cfg), 0o644)
	addr := exporter(t, "--config.dir="+dir, "--config.names=redis", "--config.strict")

	w := testkit.StartWorker(t, bin)
	pid := strconv.Itoa(w.Pid())
	waitFor(t, addr, "probe_exporter_enabled_programs",
		`probe_exporter_enabled_programs{config="malloc_latency",pid="`+pid+`",program="trace_return"} 1`)
	w.Call(t, 1000)
	name0 := "probe_exporter_malloc_latency_nanoseconds"
	waitFor(t, addr, name0+"_count", name0+`_count{pid="`+pid+`"} 1000`)
	buckets := series(t, addr, name0+`_bucket{pid="`+pid+`"`)
	if len(buckets) != 33 || !hasLine(buckets, name0+`_bucket{pid="`+pid+`",le="+Inf"} 1000`) {
		t.Errorf("buckets:\n%s", strings.Join(buckets, "\n"))
	}
	sum := series(t, addr, name0+`_sum{pid="`+pid+`"} `)
	if len(sum) != 1 || strings.HasSuffix(sum[0], " 0") {
		t.Errorf("sum of the latencies (key 32): %v", sum)
	}
}

// TestBCCConfigCheckShowsTranslation: --config.check --debug prints the
// libbpf C the bcc code became.
func TestBCCConfigCheckShowsTranslation(t *testing.T) {
	needClang(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gc.yaml"), []byte(bccGCConfig), 0o644)
	out, _ := exec.Command(binaryPath, "--config.dir="+dir, "--config.names=gc", "--config.check", "--debug").CombinedOutput()
	for _, want := range []string{"bcc code translated to libbpf C", `SEC(\"usdt\") int trace_gc__start`, "__bcc_pincrement(gc_counts, e)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, tail(string(out), 30))
		}
	}
}

// kprobeReason says why this kernel cannot attach kprobes, "" when it can.
func kprobeReason() string {
	for _, d := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(filepath.Join(d, "kprobe_events")); err == nil {
			return ""
		}
	}
	return "the kernel has no kprobe_events (CONFIG_KPROBE_EVENTS off)"
}

// TestBCCKprobeExamples loads ebpf_exporter v1's page cache and block IO
// examples unchanged. Both translate and compile; block IO's completion
// probe reads req->rq_disk, which this kernel's struct request lacks, so
// that program fails naming the field while its start probe goes on. The
// attach points the kernel lacks are named. Without kprobes the test checks
// the programs fail with that reason and skips.
func TestBCCKprobeExamples(t *testing.T) {
	needClang(t)
	for _, tc := range []struct {
		name, config string
		// want are lines of --config.check output whatever the kernel.
		want []string
	}{
		{name: "cachestat", config: bccCachestatConfig},
		{name: "bio", config: bccBioConfig, want: []string{
			`program "trace_req_completion"`,
			`config "bio": code: line 53: the running kernel's struct request has no field rq_disk`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, tc.name+".yaml"), []byte(tc.config), 0o644)
			prepareInline(t, dir, tc.name)
			args := append([]string{"--config.dir=" + dir, "--config.names=" + tc.name, "--config.check"}, compilerCacheArgs()...)
			out, _ := exec.Command(binaryPath, args...).CombinedOutput()
			log := string(out)
			if strings.Contains(log, "translating bcc code") || strings.Contains(log, "compiling inline code") {
				t.Fatalf("the example did not translate and compile:\n%s", tail(log, 30))
			}
			for _, w := range tc.want {
				if !strings.Contains(log, w) {
					t.Errorf("output lacks %q:\n%s", w, tail(log, 30))
				}
			}
			if reason := kprobeReason(); reason != "" {
				if !strings.Contains(log, "kprobe") {
					t.Errorf("kprobe programs did not fail naming kprobes:\n%s", tail(log, 30))
				}
				t.Skipf("%s; the programs compiled and failed to attach:\n%s", reason, tail(log, 12))
			}
			if strings.Contains(log, "verifier") {
				t.Errorf("the verifier refused the translated code:\n%s", tail(log, 40))
			}
			// With kprobes, every attach point the kernel has attaches;
			// those it lacks are named.
			for _, l := range strings.Split(log, "\n") {
				if strings.Contains(l, "attach") && strings.Contains(l, "failed") && !strings.Contains(l, "kernel has no function") {
					t.Errorf("unexpected attach failure: %s", l)
				}
			}
		})
	}
}

// bccGetppidConfig is bcc code of our own on a tracepoint, which this
// kernel has: TRACEPOINT_PROBE with args->, increment with and without n,
// bpf_log2l/bpf_log2 and an implicit read through a kernel pointer.
const bccGetppidConfig = `programs:
  - name: bcc_getppid
    metrics:
      counters:
        - name: bcc_getppid_total
          help: getppid calls by pid and what the program counted
          table: calls
          labels:
            - name: pid
              size: 4
              decoders:
                - name: uint
            - name: what
              size: 4
              decoders:
                - name: uint
    tracepoints:
      syscalls:sys_enter_getppid: tracepoint__syscalls__sys_enter_getppid
    code: |
      #include <linux/sched.h>

      struct key_t {
          u32 pid;
          u32 what;
      };

      BPF_HASH(calls, struct key_t);

      TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
          struct key_t k = { .pid = bpf_get_current_pid_tgid() >> 32 };
          calls.increment(k);
          k.what = 1;
          calls.increment(k, 2);
          k.what = 100 + bpf_log2l(1000);
          calls.increment(k);
          k.what = 200 + bpf_log2(1000);
          calls.increment(k);
          k.what = 300 + args->__syscall_nr;
          calls.increment(k);
          struct task_struct *task = (struct task_struct *)bpf_get_current_task();
          k.what = 1000 + (task->tgid == k.pid);
          calls.increment(k);
          return 0;
      }
`

// TestBCCTracepointCounts runs bcc code on a tracepoint through the built
// binary and checks every count exactly.
func TestBCCTracepointCounts(t *testing.T) {
	needClang(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "getppid.yaml"), []byte(bccGetppidConfig), 0o644)
	addr := exporter(t, "--config.dir="+dir, "--config.names=getppid", "--config.strict")
	pid := strconv.Itoa(os.Getpid())
	value := func(what int) float64 {
		prefix := `probe_exporter_bcc_getppid_total{pid="` + pid + `",what="` + strconv.Itoa(what) + `"} `
		for _, l := range series(t, addr, prefix) {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(l, prefix), 64)
			return v
		}
		return 0
	}
	whats := []struct{ what, per int }{
		{0, 1}, {1, 2}, {110, 1}, {209, 1}, {300 + syscall.SYS_GETPPID, 1}, {1001, 1},
	}
	before := map[int]float64{}
	for _, w := range whats {
		before[w.what] = value(w.what)
	}
	const n = 37
	for i := 0; i < n; i++ {
		syscall.Getppid()
	}
	for _, w := range whats {
		if got := value(w.what) - before[w.what]; got != float64(n*w.per) {
			t.Errorf("what=%d counted %v, want %d", w.what, got, n*w.per)
		}
	}
}

// bccAbsentFieldConfig has two probes; one reads a field no kernel has.
const bccAbsentFieldConfig = `programs:
  - name: bcc_absent
    metrics:
      counters:
        - name: bcc_absent_total
          help: getppid calls
          table: calls
          labels:
            - name: pid
              size: 4
              decoders:
                - name: uint
    tracepoints:
      syscalls:sys_enter_getppid: count
      syscalls:sys_enter_getpgid: never
    code: |
      #include <linux/sched.h>

      BPF_HASH(calls, u32);

      int count(void *ctx) {
          u32 pid = bpf_get_current_pid_tgid() >> 32;
          calls.increment(pid);
          return 0;
      }

      int never(void *ctx) {
          struct task_struct *task = (struct task_struct *)bpf_get_current_task();
          u32 pid = task->field_never_was;
          calls.increment(pid);
          return 0;
      }
`

// TestBCCAbsentFieldServesTheRest: a v1-layout config whose probe reads a
// field the kernel lacks serves with its other probes; the probe left out
// is named, by --config.check too, which passes.
func TestBCCAbsentFieldServesTheRest(t *testing.T) {
	needClang(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "absent.yaml"), []byte(bccAbsentFieldConfig), 0o644)
	const why = "struct task_struct has no field field_never_was"
	out, err := exec.Command(binaryPath, "--config.dir="+dir, "--config.names=absent", "--config.check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok      bcc_absent") || !strings.Contains(string(out), "absent in this kernel: ") || !strings.Contains(string(out), why) {
		t.Errorf("--config.check: %v\n%s", err, tail(string(out), 20))
	}
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--config.dir="+dir, "--config.names=absent")
	waitFor(t, addr, "probe_exporter_config_up", `probe_exporter_config_up{config="bcc_absent"} 1`)
	if !strings.Contains(p.Log(), why) {
		t.Errorf("the log does not name the field:\n%s", tail(p.Log(), 20))
	}
	prefix := `probe_exporter_bcc_absent_total{pid="` + strconv.Itoa(os.Getpid()) + `"} `
	const n = 23
	for i := 0; i < n; i++ {
		syscall.Getppid()
	}
	var got float64
	for _, l := range series(t, addr, prefix) {
		got, _ = strconv.ParseFloat(strings.TrimPrefix(l, prefix), 64)
	}
	if got != n {
		t.Errorf("counted %v getppid calls, want %d", got, n)
	}
}
