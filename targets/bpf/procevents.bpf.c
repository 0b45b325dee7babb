// Process start (exec) and exit events for target discovery.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct event {
	u32 kind; /* 1 exec, 2 exit */
	u32 pid;  /* thread group id */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

static __always_inline void emit(u32 kind)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->kind = kind;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_ringbuf_submit(e, 0);
}

SEC("tracepoint/sched/sched_process_exec")
int on_exec(void *ctx)
{
	emit(1);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int on_exit(void *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	/* Only the thread group leader's exit ends the process. */
	if ((u32)id == id >> 32)
		emit(2);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
