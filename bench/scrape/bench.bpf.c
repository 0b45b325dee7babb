// A map like the one of collector's benchmarks, {u32 id, u32 kind,
// char comm[8]} -> u64, filled from userspace by mapbench; the program
// only makes the config a real one (it counts sync(2) calls).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#ifndef MAX_ENTRIES
#define MAX_ENTRIES 100000
#endif

struct bench_key {
	u32 id;
	u32 kind;
	char comm[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct bench_key);
	__type(value, u64);
} bench_total SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_sync")
int on_sync(void *ctx)
{
	struct bench_key k = { .id = 0xffffffff, .comm = "sync" };
	u64 one = 1, *v = bpf_map_lookup_elem(&bench_total, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&bench_total, &k, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
