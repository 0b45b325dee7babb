// Syscalls by number, counted per CPU at sys_enter (decoded to names by
// the syscall decoder). Bounded by the syscall table.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>


struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u64);
} syscalls_total SEC(".maps");

SEC("raw_tp/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	u32 nr = ctx->args[1];
	u64 one = 1, *v = bpf_map_lookup_elem(&syscalls_total, &nr);
	if (v)
		*v += 1; /* per-CPU value: no other CPU writes it */
	else
		bpf_map_update_elem(&syscalls_total, &nr, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
