package main

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// eventsProg sends one record per write() of a process whose command
// starts with "ev_": struct {char comm[16]; u64 size;}, 24 bytes, through
// OUTPUT (a ring buffer of RING_BYTES with its write_events_lost counter,
// or a perf event array). A write of 7777 bytes sends an 8-byte record,
// shorter than the labels and value: a malformed record.
const eventsProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct event { char comm[16]; u64 size; };

MAPS

static __always_inline void lost(void)
{
	u32 zero = 0;
	u64 *n = bpf_map_lookup_elem(&write_events_lost, &zero);
	if (n)
		*n += 1;
}

struct burst { struct event e; u64 n; };

static long burst_one(u32 i, void *ctx)
{
	struct burst *b = ctx;
	if (bpf_ringbuf_output(&write_events, &b->e, sizeof(b->e), 0))
		lost();
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int on_write(struct trace_event_raw_sys_enter *ctx)
{
	struct event e = {};
	bpf_get_current_comm(e.comm, sizeof(e.comm));
	if (e.comm[0] != 'e' || e.comm[1] != 'v' || e.comm[2] != '_')
		return 0;
	e.size = ctx->args[2];
	u64 len = e.size == 7777 ? 8 : sizeof(e);
	OUTPUT
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`

const (
	ringMaps = `
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_BYTES);
} write_events SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} write_events_lost SEC(".maps");`
	perfMaps = `
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} write_events SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} write_events_lost SEC(".maps");`
	// One record per write.
	ringOutput = `if (len == 8) { if (bpf_ringbuf_output(&write_events, &e, 8, 0)) lost(); }
	else if (bpf_ringbuf_output(&write_events, &e, sizeof(e), 0)) lost();`
	perfOutput = `if (len == 8) bpf_perf_event_output(ctx, &write_events, BPF_F_CURRENT_CPU, &e, 8);
	else bpf_perf_event_output(ctx, &write_events, BPF_F_CURRENT_CPU, &e, sizeof(e));`
	// A write of N bytes sends N records (at most 4096) in one run of the
	// program (bpf_loop), faster than a reader woken by the first can
	// drain them: a ring smaller than the burst must drop some.
	burstOutput = `struct burst b = {.e = e, .n = e.size < 4096 ? e.size : 4096};
	bpf_loop(b.n, burst_one, &b, 0);`
)

// eventsSource is the test program with its maps and output.
func eventsSource(maps, output string, ringBytes int) string {
	src := strings.Replace(eventsProg, "MAPS", maps, 1)
	src = strings.Replace(src, "OUTPUT", output, 1)
	return strings.Replace(src, "RING_BYTES", strconv.Itoa(ringBytes), 1)
}

// issue29YAML is the form issue #29 asks for, verbatim.
const issue29YAML = `metrics:
  counters:
    - name: write_events_total
      help: write() calls seen as ring buffer events, by command
      events: write_events
      labels:
        - {name: comm, size: 16, decoders: [{name: string}]}
  histograms:
    - name: write_event_size_bytes
      help: write() sizes from ring buffer events
      events: write_events
      bucket_type: exp2
      bucket_min: 0
      bucket_max: 16
      value: {offset: 16, size: 8}
      labels:
        - {name: comm, size: 16, decoders: [{name: string}]}
`

// eventWrites runs the test binary as a process named comm making the
// write() calls of spec ("SIZExCOUNT,...") to /dev/null.
func eventWrites(t *testing.T, comm, spec string) {
	t.Helper()
	workload(t, comm, 0, "PROBE_E2E_SYSCALL=write", "PROBE_E2E_CPU=0", "PROBE_E2E_WRITES="+spec)
}

// TestEvents: the YAML of issue #29, on a ring buffer and on a perf event
// array, counts exactly the write() calls of a helper and gives the exact
// exp2 histogram of their sizes (0 and 1 in le=1, powers of two in their
// own bucket, 65536 in le=65536); two 8-byte records are counted as
// malformed and nowhere else; nothing is lost.
func TestEvents(t *testing.T) {
	const writes = "0x2,1x3,2x5,3x7,100x11,4096x13,65536x1,7777x2"
	want := []string{
		`probe_exporter_write_events_total{comm="ev_sizes"} 42`,
		`probe_exporter_write_event_size_bytes_bucket{comm="ev_sizes",le="1"} 5`,
		`probe_exporter_write_event_size_bytes_bucket{comm="ev_sizes",le="2"} 10`,
		`probe_exporter_write_event_size_bytes_bucket{comm="ev_sizes",le="4"} 17`,
		`probe_exporter_write_event_size_bytes_bucket{comm="ev_sizes",le="8"} 17`,
		`probe_exporter_write_event_size_bytes_bucket{comm="ev_sizes",le="64"} 17`,
		`probe_exporter_write_event_size_bytes_bucket{comm="ev_sizes",le="128"} 28`,
		`probe_exporter_write_event_size_bytes_bucket{comm="ev_sizes",le="2048"} 28`,
		`probe_exporter_write_event_size_bytes_bucket{comm="ev_sizes",le="4096"} 41`,
		`probe_exporter_write_event_size_bytes_bucket{comm="ev_sizes",le="32768"} 41`,
		`probe_exporter_write_event_size_bytes_bucket{comm="ev_sizes",le="65536"} 42`,
		`probe_exporter_write_event_size_bytes_bucket{comm="ev_sizes",le="+Inf"} 42`,
		`probe_exporter_write_event_size_bytes_sum{comm="ev_sizes"} 119918`,
		`probe_exporter_write_event_size_bytes_count{comm="ev_sizes"} 42`,
	}
	for _, tc := range []struct{ name, maps, output string }{
		{"ringbuf", ringMaps, ringOutput},
		{"perf_event_array", perfMaps, perfOutput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeConfig(t, dir, "evwrites", eventsSource(tc.maps, tc.output, 1<<20), issue29YAML)
			addr := exporter(t, "--config.dir="+dir, "--config.names=evwrites")
			if up := series(t, addr, `probe_exporter_config_up{config="evwrites"}`); !hasLine(up, `probe_exporter_config_up{config="evwrites"} 1`) {
				t.Fatalf("evwrites not up: %v", up)
			}
			eventWrites(t, "ev_sizes", writes)
			testkit.Eventually(t, "44 records read", func() bool {
				return seriesValue(t, addr, `probe_exporter_event_records_total{config="evwrites",map="write_events"}`) == 44
			})
			got := series(t, addr, "probe_exporter_write_event")
			for _, w := range want {
				if !hasLine(got, w) {
					t.Errorf("missing %s", w)
				}
			}
			if t.Failed() {
				t.Logf("got:\n%s", strings.Join(got, "\n"))
			}
			for _, check := range []struct {
				series string
				want   float64
			}{
				{`probe_exporter_event_records_lost_total{config="evwrites",map="write_events"}`, 0},
				{`probe_exporter_event_records_dropped_total{config="evwrites",metric="probe_exporter_write_events_total",reason="malformed"}`, 2},
				{`probe_exporter_event_records_dropped_total{config="evwrites",metric="probe_exporter_write_event_size_bytes",reason="malformed"}`, 2},
				{`probe_exporter_event_records_dropped_total{config="evwrites",metric="probe_exporter_write_events_total",reason="series_limit"}`, 0},
			} {
				if got := seriesValue(t, addr, check.series); got != check.want {
					t.Errorf("%s = %v, want %v", check.series, got, check.want)
				}
			}
			// The exp2 histogram is native too, in protobuf.
			h := commHistogram(t, addr, "probe_exporter_write_event_size_bytes", "ev_sizes")
			if h.GetSchema() != 0 || h.GetSampleCount() != 42 || h.GetZeroCount() != 0 || len(h.GetPositiveSpan()) == 0 {
				t.Errorf("native histogram: schema %d count %d zero %d spans %v", h.GetSchema(), h.GetSampleCount(), h.GetZeroCount(), h.GetPositiveSpan())
			}
		})
	}
}

// commHistogram scrapes the exporter in delimited protobuf and returns
// the histogram of family name whose comm label is comm.
func commHistogram(t *testing.T, addr, name, comm string) *dto.Histogram {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics?name[]="+name, nil)
	req.Header.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var mf dto.MetricFamily
	if err := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header)).Decode(&mf); err != nil {
		t.Fatal(err)
	}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "comm" && l.GetValue() == comm {
				return m.GetHistogram()
			}
		}
	}
	t.Fatalf("no %s{comm=%q} in protobuf", name, comm)
	return nil
}

// TestEventsBurst: 20,000 write() calls in a burst, into a ring large
// enough for all of them, are counted exactly; into a ring of 4 KiB
// (128 records), a burst of 3 × 4,000 records sent in single program
// runs loses records, and what is counted plus what is lost is what was
// sent.
func TestEventsBurst(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "evbig", eventsSource(ringMaps, ringOutput, 4<<20), issue29YAML)
	writeConfig(t, dir, "evsmall", eventsSource(ringMaps, burstOutput, 4096), `metrics:
  counters:
    - name: burst_events_total
      help: records of write() bursts
      events: write_events
      labels:
        - {name: comm, size: 16, decoders: [{name: string}, {name: regexp, regexps: ["^ev_burst$"]}]}
`)
	addr := exporter(t, "--config.dir="+dir, "--config.names=evbig,evsmall")
	for _, c := range []string{"evbig", "evsmall"} {
		if up := series(t, addr, `probe_exporter_config_up{config="`+c+`"}`); !hasLine(up, `probe_exporter_config_up{config="`+c+`"} 1`) {
			t.Fatalf("%s not up: %v", c, up)
		}
	}

	eventWrites(t, "ev_many", "1x20000")
	testkit.Eventually(t, "20,000 records of ev_many", func() bool {
		return seriesValue(t, addr, `probe_exporter_write_events_total{comm="ev_many"}`) == 20000
	})
	if got := seriesValue(t, addr, `probe_exporter_event_records_lost_total{config="evbig",map="write_events"}`); got != 0 {
		t.Errorf("big ring lost %v records", got)
	}

	eventWrites(t, "ev_burst", "4000x3")
	// The small ring got a record per write of ev_many too (the regexp
	// keeps them out of the counter, not out of the ring).
	const sent = 20000 + 3*4000
	var read, lost float64
	testkit.Eventually(t, "read + lost = sent", func() bool {
		read = seriesValue(t, addr, `probe_exporter_event_records_total{config="evsmall",map="write_events"}`)
		lost = seriesValue(t, addr, `probe_exporter_event_records_lost_total{config="evsmall",map="write_events"}`)
		return read+lost == sent
	})
	counted := seriesValue(t, addr, `probe_exporter_burst_events_total{comm="ev_burst"}`)
	t.Logf("small ring: %v read (%v of ev_burst), %v lost of %d", read, counted, lost, sent)
	if lost == 0 || counted <= 0 || counted > 3*4000 {
		t.Errorf("a 4 KiB ring took bursts of 4,000 records with %v read, %v of them counted, and %v lost", read, counted, lost)
	}
	// The big ring saw those writes too (one record each): 3 more.
	if got := seriesValue(t, addr, `probe_exporter_write_events_total{comm="ev_burst"}`); got != 3 {
		t.Errorf("big ring counted %v writes of ev_burst, want 3", got)
	}
}

// TestEventsBadConfigs: a value past the largest record the map carries,
// events: naming a hash map, value: on a counter of a map, a plain
// counter of a ring buffer, a copy of the good config (its metric names
// taken) and a histogram of 2e9 buckets are refused with file:line and
// cause; the good config beside them serves.
func TestEventsBadConfigs(t *testing.T) {
	dir := t.TempDir()
	hashProg := `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, u32);
	__type(value, u64);
} counts SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx) { u32 k = 0; u64 one = 1; bpf_map_update_elem(&counts, &k, &one, BPF_ANY); return 0; }
char LICENSE[] SEC("license") = "GPL";
`
	ring := eventsSource(ringMaps, ringOutput, 4096)
	cases := []struct{ name, src, yaml, want string }{
		{"pastrecord", ring, `metrics:
  histograms:
    - name: too_far
      help: h
      events: write_events
      bucket_type: exp2
      bucket_max: 8
      value: {offset: 8192, size: 8}
`, `pastrecord.yaml:3: metric "too_far": records need 8200 bytes (labels and value) but map "write_events" carries records of at most 4088 bytes`},
		{"hashevents", hashProg, `metrics:
  counters:
    - name: hash_events_total
      help: h
      events: counts
`, `hashevents.yaml:3: metric "hash_events_total": events: map "counts" is a Hash, not a ring buffer or perf event array`},
		{"mapvalue", hashProg, `metrics:
  counters:
    - name: counts
      help: h
      value: {offset: 0, size: 8}
      labels:
        - {name: k, size: 4, decoders: [{name: uint}]}
`, `mapvalue.yaml:3: counter "counts": value: is for events: entries`},
		{"plainring", ring, `metrics:
  counters:
    - name: write_events
      help: h
      labels:
        - {name: comm, size: 16, decoders: [{name: string}]}
`, `plainring.yaml:3: metric "write_events": map "write_events" is a RingBuf, whose records are not kept in it: name it with events: to count them`},
		// A copy of the good config: its metrics would be served twice.
		{"evdup", ring, issue29YAML, `evdup.yaml:3: counter "write_events_total": also defined at `},
		// A value range taken for a bucket range: 2e9 buckets a label set.
		{"evbuckets", ring, `metrics:
  histograms:
    - name: sizes_by_byte
      help: h
      events: write_events
      bucket_type: linear
      bucket_max: 2000000000
      value: {offset: 16, size: 8}
`, `evbuckets.yaml:3: histogram "sizes_by_byte": bucket_min 0 to bucket_max 2000000000 make 2000000001 buckets, over 1024`},
	}
	names := []string{"evgood"}
	writeConfig(t, dir, "evgood", ring, issue29YAML)
	for _, c := range cases {
		writeConfig(t, dir, c.name, c.src, c.yaml)
		names = append(names, c.name)
	}
	cmd := exec.Command(binaryPath, "--config.dir="+dir, "--config.names="+strings.Join(names, ","), "--config.check")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("--config.check passed bad configs:\n%s", out)
	}
	for _, c := range cases {
		if want := filepath.Join(dir, c.want); !strings.Contains(string(out), want) {
			t.Errorf("%s: no %q in:\n%s", c.name, want, out)
		}
	}
	if !strings.Contains(string(out), "ok      evgood") {
		t.Errorf("evgood not ok:\n%s", out)
	}
}

// TestEventsAttackLabelFlood: an unprivileged user renames its shell
// 12,000 times (writing /proc/self/comm) and writes under each name, so
// the BPF program sends records making 12,000 label sets. With default
// flags the exporter keeps 10,000 (--events.max-series), counts the
// records past it, keeps answering /metrics, stays within 256 MiB, logs
// no panic, and ends on SIGTERM (the harness checks the exit).
func TestEventsAttackLabelFlood(t *testing.T) {
	a := testkit.NewAttacker(t)
	dir := t.TempDir()
	writeConfig(t, dir, "evflood", eventsSource(ringMaps, ringOutput, 4<<20), issue29YAML)
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--config.dir="+dir, "--config.names=evflood")
	a.Run(t, `i=0; while [ $i -lt 12000 ]; do printf ev_f$i > /proc/self/comm; echo > /dev/null; i=$((i+1)); done`)
	over := `probe_exporter_event_records_dropped_total{config="evflood",metric="probe_exporter_write_events_total",reason="series_limit"}`
	testkit.Eventually(t, "records past the bound counted", func() bool { return seriesValue(t, addr, over) > 0 })
	n := len(series(t, addr, "probe_exporter_write_events_total{"))
	if n != 10000 {
		t.Errorf("%d label sets served, want the bound of 10,000", n)
	}
	if code, _ := get(t, "http://"+addr+"/metrics"); code != 200 {
		t.Errorf("/metrics answered %d", code)
	}
	if kb := testkit.StatusKiB(t, p.Pid(), "VmHWM:") << 10 >> 10; kb > 256<<10 {
		t.Errorf("peak memory %d kB, over 256 MiB", kb)
	} else {
		t.Logf("peak memory %d kB with 10,000 label sets", kb)
	}
	if strings.Contains(p.Log(), "panic:") {
		t.Errorf("panic in the log:\n%s", tail(p.Log(), 40))
	}
}
