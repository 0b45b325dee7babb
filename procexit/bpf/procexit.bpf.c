// Process exits for series that expire: the tgid of every process whose
// last thread exits, in the initial pid namespace (as the BPF programs of
// configs see pids: bpf_get_current_pid_tgid() >> 32).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} exits SEC(".maps");

/* Exits the ring buffer had no room for. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} lost SEC(".maps");

SEC("tracepoint/sched/sched_process_exit")
int on_exit(void *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	/* do_exit() counts the thread out of signal->live before this
	 * tracepoint: at 0 the whole thread group is gone, whichever thread
	 * exits last. */
	if (BPF_CORE_READ(t, signal, live.counter) != 0)
		return 0;
	u32 *e = bpf_ringbuf_reserve(&exits, sizeof(u32), 0);
	if (!e) {
		u32 zero = 0;
		u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
		return 0;
	}
	*e = BPF_CORE_READ(t, tgid);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
