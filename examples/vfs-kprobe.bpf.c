// vfs_read() calls and bytes read, by command, from a kprobe on entry and a
// kretprobe on return: works on any kernel with kprobes (ebpf_exporter's
// kprobe examples work the same way). Bounded by the commands that read.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "maps.bpf.h"

struct comm_key {
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, u64);
} vfs_kprobe_reads_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, u64);
} vfs_kprobe_read_bytes_total SEC(".maps");

SEC("kprobe/vfs_read")
int BPF_KPROBE(vfs_read_entry)
{
	struct comm_key key = {};
	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	increment_map(&vfs_kprobe_reads_total, &key, 1);
	return 0;
}

SEC("kretprobe/vfs_read")
int BPF_KRETPROBE(vfs_read_return, long ret)
{
	struct comm_key key = {};
	if (ret <= 0)
		return 0;
	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	increment_map(&vfs_kprobe_read_bytes_total, &key, ret);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
