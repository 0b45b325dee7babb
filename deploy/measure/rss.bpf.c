// Fills a hash map with N series on demand, to measure the exporter's
// memory per series: getpgid(-N) from any process inserts keys 0..N-1.
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct key {
	__u32 id;
	__u32 kind;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4 << 20);
	__type(key, struct key);
	__type(value, __u64);
} rss_series SEC(".maps");

// The syscalls:sys_enter_getpgid tracepoint's record.
struct getpgid_args {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__s64 pid;
};

static long fill(__u64 i, void *ctx)
{
	struct key k = { .id = i, .kind = i % 7 };
	__u64 v = i + 1;
	bpf_map_update_elem(&rss_series, &k, &v, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpgid")
int fill_series(struct getpgid_args *ctx)
{
	// pid_t is an int: the register's upper half is not sign-extended.
	__s32 pid = (__s32)ctx->pid;

	if (pid >= 0 || pid < -(4 << 20))
		return 0;
	// Through the stack, zero-extended: the kernel's inlined bpf_loop
	// compares all 64 bits of the count.
	volatile __u64 n = (__u32)-pid;

	bpf_loop(n, fill, NULL, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
