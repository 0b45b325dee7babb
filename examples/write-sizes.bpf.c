// write() sizes by command, as an exp2 histogram in bytes kept per CPU
// (a per-CPU hash: each CPU adds to its own copy, without atomics). Its
// bounds are powers of two, so it is also exposed as a native histogram.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

#define MAX_BUCKET 32 /* 4 GiB */

struct write_key {
	char comm[16];
	u64 bucket;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct write_key);
	__type(value, u64);
} write_sizes SEC(".maps");

static __always_inline void add(struct write_key *k, u64 delta)
{
	u64 *v = bpf_map_lookup_elem(&write_sizes, k);
	if (v)
		*v += delta; /* per-CPU value: no other CPU writes it */
	else
		bpf_map_update_elem(&write_sizes, k, &delta, BPF_NOEXIST);
}

SEC("tracepoint/syscalls/sys_enter_write")
int sys_enter_write(struct trace_event_raw_sys_enter *ctx)
{
	u64 size = ctx->args[2];
	struct write_key k = {};

	bpf_get_current_comm(k.comm, sizeof(k.comm));
	/* The bucket whose bound 2^k is the least power of two >= size (le is
	 * exact: a write of 4096 bytes counts in le="4096"); 0 and 1 in key 0. */
	k.bucket = exp2_bucket(size, MAX_BUCKET);
	add(&k, 1);
	/* The sum of sizes, in key MAX_BUCKET + 1 (bucket_max + 1). */
	k.bucket = MAX_BUCKET + 1;
	add(&k, size);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
