// Block IO latency (issue to completion) and size histograms by device and
// operation, on the block_rq_issue and block_rq_complete tracepoints.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"

#define MAX_LATENCY_SLOT 26 /* 2^26 us = 67 s */
#define MAX_SIZE_SLOT 15    /* 2^15 KiB = 32 MiB */

enum bio_op { BIO_OP_OTHER = 0, BIO_OP_READ = 1, BIO_OP_WRITE = 2, BIO_OP_DISCARD = 3, BIO_OP_FLUSH = 4 };

struct rq_key {
	u32 dev;
	u32 pad;
	u64 sector;
};

struct start {
	u64 ts;
	u32 bytes;
	u8 op;
};

struct disk_key {
	u32 dev;
	u8 op;
	u8 pad[3];
	u64 bucket;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct rq_key);
	__type(value, struct start);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct disk_key);
	__type(value, u64);
} bio_latency_seconds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct disk_key);
	__type(value, u64);
} bio_size_bytes SEC(".maps");

static __always_inline u8 rwbs_op(const char *rwbs)
{
	u8 op = BIO_OP_OTHER;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		switch (rwbs[i]) {
		case 'D':
			return BIO_OP_DISCARD;
		case 'R':
			return BIO_OP_READ;
		case 'W':
			return BIO_OP_WRITE;
		case 'F':
			op = BIO_OP_FLUSH;
			break;
		case 0:
			return op;
		}
	}
	return op;
}

SEC("tracepoint/block/block_rq_issue")
int block_rq_issue(struct trace_event_raw_block_rq *ctx)
{
	struct rq_key key = {
		.dev = BPF_CORE_READ(ctx, dev),
		.sector = BPF_CORE_READ(ctx, sector),
	};
	char rwbs[8] = {};
	bpf_core_read(&rwbs, sizeof(rwbs), &ctx->rwbs);
	struct start s = {
		.ts = bpf_ktime_get_ns(),
		.bytes = BPF_CORE_READ(ctx, bytes),
		.op = rwbs_op(rwbs),
	};
	bpf_map_update_elem(&inflight, &key, &s, BPF_ANY);
	return 0;
}

SEC("tracepoint/block/block_rq_complete")
int block_rq_complete(struct trace_event_raw_block_rq_completion *ctx)
{
	struct rq_key key = {
		.dev = BPF_CORE_READ(ctx, dev),
		.sector = BPF_CORE_READ(ctx, sector),
	};
	struct start *s = bpf_map_lookup_elem(&inflight, &key);
	if (!s)
		return 0; /* issued before we attached */
	u64 delta_us = (bpf_ktime_get_ns() - s->ts) / 1000;
	u64 kib = s->bytes / 1024;
	struct disk_key dk = { .dev = encode_dev(key.dev), .op = s->op };
	bpf_map_delete_elem(&inflight, &key);

	dk.bucket = exp2_bucket(delta_us, MAX_LATENCY_SLOT);
	increment_map(&bio_latency_seconds, &dk, 1);
	dk.bucket = MAX_LATENCY_SLOT + 1;
	increment_map(&bio_latency_seconds, &dk, delta_us);

	dk.bucket = exp2_bucket(kib, MAX_SIZE_SLOT);
	increment_map(&bio_size_bytes, &dk, 1);
	dk.bucket = MAX_SIZE_SLOT + 1;
	increment_map(&bio_size_bytes, &dk, kib);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
