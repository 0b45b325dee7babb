// vfs_read() calls and bytes read, by command, from fentry and fexit
// programs: BTF-typed arguments and return value, lower overhead than
// kprobes (Linux >= 5.5 with BTF). Bounded by the commands that read.
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
} vfs_fentry_reads_total SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, u64);
} vfs_fentry_read_bytes_total SEC(".maps");

SEC("fentry/vfs_read")
int BPF_PROG(vfs_read_entry, struct file *file, char *buf, size_t count, loff_t *pos)
{
	struct comm_key key = {};
	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	increment_map(&vfs_fentry_reads_total, &key, 1);
	return 0;
}

SEC("fexit/vfs_read")
int BPF_PROG(vfs_read_exit, struct file *file, char *buf, size_t count, loff_t *pos, long ret)
{
	struct comm_key key = {};
	if (ret <= 0)
		return 0;
	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	increment_map(&vfs_fentry_read_bytes_total, &key, ret);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
