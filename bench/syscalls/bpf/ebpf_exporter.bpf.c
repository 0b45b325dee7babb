// cloudflare/ebpf_exporter's examples/raw-syscalls.bpf.c as it counts
// (a shared hash map keyed by syscall number, increment_map from its
// maps.bpf.h: an atomic add, an insert on first sight), for comparison.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u64);
} raw_syscalls_total SEC(".maps");

SEC("raw_tp/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	u32 nr = ctx->args[1];
	u64 zero = 0, *v = bpf_map_lookup_elem(&raw_syscalls_total, &nr);
	if (!v) {
		bpf_map_update_elem(&raw_syscalls_total, &nr, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&raw_syscalls_total, &nr);
		if (!v)
			return 0;
	}
	__sync_fetch_and_add(v, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
