package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// mvProg counts read() calls and the bytes asked for in one struct value
// per command, in a hash map and in a per-CPU hash map.
const mvProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct comm_key { char comm[16]; };
struct read_stats { u64 count; u64 bytes; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, struct read_stats);
} read_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, struct read_stats);
} read_stats_percpu SEC(".maps");

static void account(void *map, struct comm_key *k, u64 bytes) {
	struct read_stats *s = bpf_map_lookup_elem(map, k);
	if (!s) {
		struct read_stats zero = {};
		bpf_map_update_elem(map, k, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(map, k);
		if (!s)
			return;
	}
	__sync_fetch_and_add(&s->count, 1);
	__sync_fetch_and_add(&s->bytes, bytes);
}

SEC("tracepoint/syscalls/sys_enter_read")
int on_read(struct trace_event_raw_sys_enter *ctx) {
	struct comm_key k = {};
	bpf_get_current_comm(&k.comm, sizeof(k.comm));
	if (k.comm[0] != 'm' || k.comm[1] != 'v' || k.comm[2] != '_')
		return 0;
	account(&read_stats, &k, ctx->args[2]);
	account(&read_stats_percpu, &k, ctx->args[2]);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`

const mvLabels = `
      labels:
        - name: comm
          size: 16
          decoders:
            - name: string
            - name: regexp
              regexps: ["^mv_"]`

const mvYAML = `metrics:
  counters:
    - name: read_stats` + mvLabels + `
      values:
        - name: reads_total
          help: read() calls
          offset: 0
          size: 8
        - name: read_bytes_total
          help: bytes asked of read()
          offset: 8
          size: 8
    - name: read_stats_percpu` + mvLabels + `
      values:
        - {name: percpu_reads_total, help: read() calls, offset: 0, size: 8}
        - {name: percpu_read_bytes_total, help: bytes asked of read(), offset: 8, size: 8}
`

// TestMultiValue: one struct-valued map read once per scrape gives two
// counters, with the exact calls and bytes of a helper making 777 reads
// of 4096 bytes; the per-CPU map's fields are summed across CPUs. Configs
// whose values do not fit the map or overlap are refused with file:line
// and cause, and the good one serves.
func TestMultiValue(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "mv", mvProg, mvYAML)
	testkit.CompileBPF(t, mvProg, dir, "mvrange")
	testkit.CompileBPF(t, mvProg, dir, "mvoverlap")
	// The bad configs' values are named apart from mv's: a metric name
	// is served by one config only.
	named := func(prefix string) string {
		return strings.NewReplacer("name: reads_total", "name: "+prefix+"reads_total", "name: read_bytes_total", "name: "+prefix+"read_bytes_total",
			"{name: percpu_", "{name: "+prefix+"percpu_").Replace(mvYAML)
	}
	bad := map[string]string{
		"mvrange":   strings.Replace(named("range_"), "offset: 8\n          size: 8", "offset: 12\n          size: 8", 1),
		"mvoverlap": strings.Replace(named("overlap_"), "offset: 8\n          size: 8", "offset: 4\n          size: 8", 1),
	}
	for name, y := range bad {
		if y == mvYAML {
			t.Fatal("bad config not made")
		}
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--config.dir="+dir, "--config.names=mv,mvrange,mvoverlap")

	const n = 777
	cmdEnv := []string{"PROBE_E2E_SYSCALL=read"}
	workload(t, "mv_reader", n, cmdEnv...)
	for _, want := range []string{
		`probe_exporter_reads_total{comm="mv_reader"} 777`,
		`probe_exporter_read_bytes_total{comm="mv_reader"} ` + strconv.FormatFloat(n*4096, 'g', -1, 64),
		`probe_exporter_percpu_reads_total{comm="mv_reader"} 777`,
		`probe_exporter_percpu_read_bytes_total{comm="mv_reader"} ` + strconv.FormatFloat(n*4096, 'g', -1, 64),
	} {
		waitFor(t, addr, strings.Fields(want)[0], want)
	}
	_, body := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		"# HELP probe_exporter_read_bytes_total bytes asked of read()\n# TYPE probe_exporter_read_bytes_total counter\n",
		"# HELP probe_exporter_reads_total read() calls\n# TYPE probe_exporter_reads_total counter\n",
		`probe_exporter_config_up{config="mv"} 1`,
		`probe_exporter_config_up{config="mvrange"} 0`,
		`probe_exporter_config_up{config="mvoverlap"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q", want)
		}
	}
	for _, want := range []string{
		filepath.Join(dir, "mvrange.yaml") + `:16: metric "read_stats": value "range_read_bytes_total" takes bytes 12-19 but map "read_stats" has 16-byte values`,
		filepath.Join(dir, "mvoverlap.yaml") + `:16: counter "read_stats": value "overlap_read_bytes_total" (bytes 4-11) overlaps value "overlap_reads_total" (bytes 0-7)`,
	} {
		want = strings.ReplaceAll(want, `"`, `\"`) // as the text log quotes err
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(p.Log(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %q:\n%s", want, tail(p.Log(), 30))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
