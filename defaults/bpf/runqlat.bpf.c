// Run-queue latency: the time a task waits runnable before it runs, from
// wakeup (or preemption) to sched_switch.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "maps.bpf.h"

#define MAX_SLOT 26 /* 2^26 us */
#define TASK_RUNNING 0

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, u32);
	__type(value, u64);
} enqueued SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SLOT + 2);
	__type(key, u32);
	__type(value, u64);
} runqueue_latency_seconds SEC(".maps");

/* Before 5.14 the state field was called state. */
struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline long task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state);
}

static __always_inline void enqueue(struct task_struct *t)
{
	u32 pid = BPF_CORE_READ(t, pid);
	u64 ts;
	if (!pid)
		return;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&enqueued, &pid, &ts, BPF_ANY);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup, struct task_struct *p)
{
	enqueue(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new, struct task_struct *p)
{
	enqueue(p);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	if (task_state(prev) == TASK_RUNNING)
		enqueue(prev);

	u32 pid = BPF_CORE_READ(next, pid);
	u64 *ts = bpf_map_lookup_elem(&enqueued, &pid);
	if (!ts)
		return 0;
	u64 delta_us = (bpf_ktime_get_ns() - *ts) / 1000;
	bpf_map_delete_elem(&enqueued, &pid);

	u32 slot = exp2_bucket(delta_us, MAX_SLOT);
	u64 *count = bpf_map_lookup_elem(&runqueue_latency_seconds, &slot);
	if (count)
		*count += 1;
	slot = MAX_SLOT + 1;
	count = bpf_map_lookup_elem(&runqueue_latency_seconds, &slot);
	if (count)
		*count += delta_us;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
