// Syscalls by number, counted per CPU at sys_enter (decoded to names by
// the syscall decoder). A per-CPU array indexed by the number: the lookup
// is inlined by the verifier and needs no hash, and no other CPU writes
// the value (bench/README.md: the cost per syscall of each counter).
// Numbers from MAX_SYSCALLS up (none on x86-64 or arm64 today) are not
// counted.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_SYSCALLS 512

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SYSCALLS);
	__type(key, u32);
	__type(value, u64);
} syscalls_total SEC(".maps");

SEC("raw_tp/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	u32 nr = ctx->args[1];
	u64 *v = bpf_map_lookup_elem(&syscalls_total, &nr);
	if (v)
		*v += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
