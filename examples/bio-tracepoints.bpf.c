// ebpf_exporter v1's block IO example (bio.yaml) on tracepoints: latency and size histograms
// by device and operation (1 read, 2 write), with its key layout
// {device, operation, bucket}.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"

#define MAX_LATENCY_SLOT 26
#define MAX_SIZE_SLOT 15

struct rq_key {
	u32 dev;
	u32 pad;
	u64 sector;
};

struct start {
	u64 ts;
	u32 bytes;
	u8 write;
};

typedef struct disk_key {
	u32 device;
	u8 op;
	u64 slot;
} disk_key_t;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct rq_key);
	__type(value, struct start);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, (MAX_LATENCY_SLOT + 2) * 255);
	__type(key, disk_key_t);
	__type(value, u64);
} bio_latency_seconds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, (MAX_SIZE_SLOT + 2) * 255);
	__type(key, disk_key_t);
	__type(value, u64);
} bio_size_bytes SEC(".maps");

SEC("tracepoint/block/block_rq_issue")
int trace_req_start(struct trace_event_raw_block_rq *ctx)
{
	struct rq_key key = { .dev = BPF_CORE_READ(ctx, dev), .sector = BPF_CORE_READ(ctx, sector) };
	char rwbs[8] = {};
	bpf_core_read(&rwbs, sizeof(rwbs), &ctx->rwbs);
	struct start s = { .ts = bpf_ktime_get_ns(), .bytes = BPF_CORE_READ(ctx, bytes) };
	for (int i = 0; i < 4; i++)
		if (rwbs[i] == 'W')
			s.write = 1;
	bpf_map_update_elem(&start, &key, &s, BPF_ANY);
	return 0;
}

SEC("tracepoint/block/block_rq_complete")
int trace_req_completion(struct trace_event_raw_block_rq_completion *ctx)
{
	struct rq_key key = { .dev = BPF_CORE_READ(ctx, dev), .sector = BPF_CORE_READ(ctx, sector) };
	struct start *s = bpf_map_lookup_elem(&start, &key);
	if (!s)
		return 0;
	u64 delta = (bpf_ktime_get_ns() - s->ts) / 1000;
	u64 size_kib = s->bytes / 1024;
	disk_key_t k = { .device = encode_dev(key.dev), .op = s->write ? 2 : 1 };
	bpf_map_delete_elem(&start, &key);

	k.slot = exp2_bucket(delta, MAX_LATENCY_SLOT);
	increment_map(&bio_latency_seconds, &k, 1);
	k.slot = MAX_LATENCY_SLOT + 1;
	increment_map(&bio_latency_seconds, &k, delta);

	k.slot = exp2_bucket(size_kib, MAX_SIZE_SLOT);
	increment_map(&bio_size_bytes, &k, 1);
	k.slot = MAX_SIZE_SLOT + 1;
	increment_map(&bio_size_bytes, &k, size_kib);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
