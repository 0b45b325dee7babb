// read() calls, bytes and errors by process, in one struct value per
// process (a per-CPU hash map: no atomics; the exporter sums each field
// across CPUs). The key carries the pid, so the entries of exited
// processes are deleted by the exporter after the scrape that served their
// last values: the map holds the live processes (and those exited since
// the last scrape), not every process ever seen.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct proc_key {
	u32 pid;
	char comm[16];
};

struct read_stats {
	u64 calls;
	u64 bytes;
	u64 errors;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 10240);
	__type(key, struct proc_key);
	__type(value, struct read_stats);
} process_reads SEC(".maps");

SEC("tracepoint/syscalls/sys_exit_read")
int sys_exit_read(struct trace_event_raw_sys_exit *ctx)
{
	struct proc_key k = { .pid = bpf_get_current_pid_tgid() >> 32 };
	bpf_get_current_comm(&k.comm, sizeof(k.comm));
	struct read_stats *s = bpf_map_lookup_elem(&process_reads, &k);
	if (!s) {
		struct read_stats zero = {};
		bpf_map_update_elem(&process_reads, &k, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&process_reads, &k);
		if (!s)
			return 0; /* full: counted again once exited processes' entries go */
	}
	s->calls++;
	if (ctx->ret >= 0)
		s->bytes += ctx->ret;
	else
		s->errors++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
