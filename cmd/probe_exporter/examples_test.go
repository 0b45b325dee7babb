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

// TestExamples runs every example in examples/ at once on this kernel,
// makes the kernel do the work each one measures, and checks the metrics.
func TestExamples(t *testing.T) {
	testkit.RequireTools(t, "clang")
	dir, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("make", "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("make -C examples: %v\n%s", err, out)
	}
	// biolatency (an embedded default, checked by TestDefaults) would
	// duplicate bio-tracepoints' series.
	names := []string{"syscalls", "runqlat", "timers", "cpu-clock", "pagecache", "bio-tracepoints", "v1-inline", "process-reads"}
	addr := exporter(t, "--config.dir="+dir, "--config.names="+strings.Join(names, ","), "--config.strict")

	// Work for every example: getpid calls by a named process, a file
	// written through the page cache and synced to the block device, and
	// some CPU time.
	workload(t, "e2e_getpid", 321, "PROBE_E2E_SYSCALL=getpid")
	scratch, err := os.MkdirTemp(dir, ".e2e-io-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(scratch)
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(scratch, "f"), "bs=64k", "count=64", "conv=fsync").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v\n%s", err, out)
	}
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}

	checks := []struct {
		prefix string
		exact  string // an exact line, or
		min    float64
	}{
		{prefix: `probe_exporter_getpid_calls_total{command="e2e_getpid"}`, exact: `probe_exporter_getpid_calls_total{command="e2e_getpid"} 321`},
		{prefix: `probe_exporter_syscalls_total{syscall="getpid"}`, min: 321},
		{prefix: `probe_exporter_page_cache_ops_total{command="dd",op="add_to_page_cache"}`, min: 1},
		{prefix: `probe_exporter_page_cache_ops_total{command="dd",op="dirty_folio"}`, min: 1},
		{prefix: `probe_exporter_runqueue_latency_seconds_count`, min: 1},
		{prefix: `probe_exporter_timer_starts_total{`, min: 1},
		{prefix: `probe_exporter_cpu_clock_samples_total{cpu="`, min: 1},
		{prefix: `probe_exporter_bio_latency_seconds_count{device="`, min: 1},
		{prefix: `probe_exporter_bio_size_bytes_count{device="`, min: 1},
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range checks {
		for {
			lines := series(t, addr, c.prefix)
			ok := false
			var total float64
			for _, l := range lines {
				if c.exact != "" && l == c.exact {
					ok = true
				}
				f := strings.Fields(l)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				total += v
			}
			if c.exact == "" {
				ok = len(lines) > 0 && total >= c.min
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: got %v (total %v)", c.prefix, lines, total)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// Histograms are complete and cumulative: 27 buckets plus +Inf for
	// the latency of every device and operation, never decreasing.
	buckets := map[string][]float64{}
	for _, l := range series(t, addr, "probe_exporter_bio_latency_seconds_bucket{") {
		i := strings.Index(l, ",le=")
		v, _ := strconv.ParseFloat(l[strings.LastIndex(l, " ")+1:], 64)
		buckets[l[:i]] = append(buckets[l[:i]], v)
	}
	for set, vs := range buckets {
		if len(vs) != 28 {
			t.Errorf("%s: %d buckets, want 28", set, len(vs))
		}
		for i := 1; i < len(vs); i++ {
			if vs[i] < vs[i-1] {
				t.Errorf("%s: buckets not cumulative: %v", set, vs)
				break
			}
		}
	}
}
