package collector

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/events"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// issueMetrics are the two entries of issue #29's YAML: a counter of
// records and an exp2 histogram of the u64 after the 16-byte comm.
func issueMetrics(tb testing.TB) []*eventMetric {
	b := testEventBuilder(0)
	c, err := b.newEventMetric("b", "ev", kindCounter, "probe_exporter_write_events_total", "h", []config.Label{commLabel}, nil, nil, nil, 0, 1<<16)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := b.newEventMetric("b", "ev", kindHistogram, "probe_exporter_write_event_size_bytes", "h", []config.Label{commLabel},
		&config.EventValue{Offset: 16, Size: 8}, nil, &config.Histogram{BucketType: config.BucketExp2, BucketMax: 16}, 0, 1<<16)
	if err != nil {
		tb.Fatal(err)
	}
	return []*eventMetric{c, h}
}

// BenchmarkEventRecord is the user-space cost of one 24-byte record (one
// 16-byte string label, one u64) decoded and aggregated into the counter
// and the histogram of issue #29's YAML, over 100 commands, on one core.
// It also reports the memory each label set holds in the counter.
func BenchmarkEventRecord(b *testing.B) {
	ms := issueMetrics(b)
	recs := make([][]byte, 100)
	for i := range recs {
		recs[i] = record(fmt.Sprintf("command-%02d", i), uint64(i*37))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := recs[i%len(recs)]
		ms[0].Record(r)
		ms[1].Record(r)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkEventSeriesMemory reports the bytes a label set costs an events
// counter and histogram (16-byte comm label, exp2 buckets 0-16).
func BenchmarkEventSeriesMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		ms := issueMetrics(b)
		const n = 10_000
		for j := range n {
			r := record(fmt.Sprintf("c%014d", j), 3)
			ms[0].Record(r)
			ms[1].Record(r)
		}
		ms[0].collect(nil, time.Now())
		ms[1].collect(nil, time.Now())
		b.ReportMetric(float64(ms[0].mm.memory()+8*n)/n, "counter-B/series")
		b.ReportMetric(float64(ms[1].mm.memory()+8*n)/n, "histogram-B/series")
	}
}

// kernelBenchProg builds the same 24-byte record (a comm among 100, a
// size) and either sends it to a ring buffer or aggregates it in the
// kernel as the map form does: a hash keyed by comm and exp2 bucket, and
// the sum in the bucket_max+1 key (two map updates per event).
const kernelBenchProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct event { char comm[16]; u64 size; };
struct hkey { char comm[16]; u64 bucket; };

struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 16 << 20); } events SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct hkey);
	__type(value, u64);
} sizes SEC(".maps");

u64 seq;

static __always_inline void fill(struct event *e)
{
	u64 n = seq++ % 100;
	__builtin_memcpy(e->comm, "command-", 8);
	e->comm[8] = '0' + n / 10;
	e->comm[9] = '0' + n % 10;
	e->size = n * 37;
}

static __always_inline void add(struct hkey *k, u64 d)
{
	u64 *v = bpf_map_lookup_elem(&sizes, k);
	if (v)
		__sync_fetch_and_add(v, d);
	else
		bpf_map_update_elem(&sizes, k, &d, BPF_NOEXIST);
}

SEC("xdp")
int ringbuf_output(struct xdp_md *ctx)
{
	struct event e = {};
	fill(&e);
	bpf_ringbuf_output(&events, &e, sizeof(e), 0);
	return XDP_PASS;
}

SEC("xdp")
int map_update(struct xdp_md *ctx)
{
	struct event e = {};
	struct hkey k = {};
	fill(&e);
	__builtin_memcpy(k.comm, e.comm, 16);
	u64 v = e.size, b = 0;
	if (v > 1) { v--; while (v && b < 16) { v >>= 1; b++; } }
	k.bucket = b;
	add(&k, 1);
	k.bucket = 17;
	add(&k, e.size);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
`

// BenchmarkEventsKernel runs, side by side, the kernel's per-event cost
// of bpf_ringbuf_output of a 24-byte record (with the exporter's reader
// draining the ring into issue #29's counter and histogram meanwhile)
// against aggregating the same event in a kernel hash map (BPF_PROG_TEST_RUN
// of XDP programs, repeated). It reports the reader's records/s and the
// records it lost.
func BenchmarkEventsKernel(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	dir := b.TempDir()
	obj := testkit.CompileBPF(b, kernelBenchProg, dir, "kbench")
	coll, err := ebpf.LoadCollection(obj)
	if err != nil {
		b.Fatal(err)
	}
	defer coll.Close()
	ms := issueMetrics(b)
	src := &EventSource{Map: "events", m: coll.Maps["events"], metrics: ms}
	r, err := events.NewReader("events", src.m)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, src); close(done) }()
	defer func() { cancel(); <-done }()
	pkt := make([]byte, 64)
	// A burst the 16 MiB ring holds whole (32 bytes a record with its
	// header): the reader drains it after the kernel wrote it.
	const repeat = 400_000
	var ring, hash, drained time.Duration
	sent := uint64(0)
	for i := 0; i < b.N; i++ {
		start := time.Now()
		_, d, err := coll.Programs["ringbuf_output"].Benchmark(pkt, repeat, nil)
		if err != nil {
			b.Fatal(err)
		}
		ring += d
		sent += repeat
		for src.records.Load() < sent && time.Since(start) < time.Minute {
			time.Sleep(100 * time.Microsecond)
		}
		drained += time.Since(start)
		if _, d, err = coll.Programs["map_update"].Benchmark(pkt, repeat, nil); err != nil {
			b.Fatal(err)
		}
		hash += d
	}
	read := src.records.Load()
	n := time.Duration(b.N)
	ring, hash = ring/n, hash/n
	b.ReportMetric(float64(ring.Nanoseconds()), "ringbuf-ns/event")
	b.ReportMetric(float64(hash.Nanoseconds()), "hashmap-ns/event")
	b.ReportMetric(float64(read)/drained.Seconds(), "reader-records/s")
	b.ReportMetric(float64(sent-read), "lost")
}
