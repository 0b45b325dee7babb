// Syscalls by Kubernetes pod and container: each syscall is counted under
// the cgroup of the calling task (bpf_get_current_cgroup_id, the cgroup v2
// id) and its number; the kubernetes decoder turns the cgroup id into the
// namespace, pod and container labels. An LRU map, as cgroups come and go:
// the least recently used entries make room for new ones.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

struct pod_syscall_key {
	u64 cgroup_id;
	u32 nr;
	u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct pod_syscall_key);
	__type(value, u64);
} pod_syscalls_total SEC(".maps");

SEC("raw_tp/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct pod_syscall_key k = {
		.cgroup_id = bpf_get_current_cgroup_id(),
		.nr = ctx->args[1],
	};
	increment_map(&pod_syscalls_total, &k, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
