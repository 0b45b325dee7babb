/* Off-CPU time: when a thread of a selected process leaves the CPU
 * blocked (not runnable: asleep, waiting for a lock, the disk or the
 * network), its stacks are recorded as a CPU sample's are; when it runs
 * again, the time it was away is added to its stack's total. Everything is
 * summed here: no event per context switch reaches userspace.
 *
 * A thread that is preempted stays runnable: sched_switch says so with its
 * preempt argument, or with the task's state still TASK_RUNNING (a yield).
 * Only a switch with neither, and the task in an interruptible or
 * uninterruptible sleep, starts off-CPU time (the test bcc's offcputime
 * makes by default). Time a woken thread then waits for a CPU is counted:
 * it is part of the wait the thread saw. */

#define TASK_INTERRUPTIBLE_STATE 0x1
#define TASK_UNINTERRUPTIBLE_STATE 0x2

/* Lost off-CPU time (offcpu_lost): blocks not counted, their nanoseconds
 * (unknown for a block that found no room in offcpu_starts). */
#define OFFCPU_LOST_BLOCKS 0
#define OFFCPU_LOST_NS 1

/* Blocks shorter than this are not recorded (--profile.off-cpu-min). */
const volatile u64 offcpu_min_ns = 0;

/* Processes whose off-CPU time is recorded: tgid -> target index. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, u32);
} offcpu_pids SEC(".maps");

struct offcpu_start {
	u64 ts;
	struct sample_key key;
};

/* Blocked threads: tid -> when and where they blocked. An entry lives
 * while its thread is blocked: a thread runs again before it can exit (a
 * killed one too), and its switch in removes it. A block that finds the map
 * full is counted as lost. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, struct offcpu_start);
} offcpu_starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(u32));
	__uint(value_size, PERF_MAX_STACK_DEPTH * sizeof(u64));
} offcpu_stacks SEC(".maps");

/* Stack -> nanoseconds blocked there. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sample_key);
	__type(value, u64);
} offcpu_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, u64);
} offcpu_lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct offcpu_start);
} offcpu_scratch SEC(".maps");

/* Kernels before 5.14 name the state field state. */
struct task_struct___old {
	long state;
} __attribute__((preserve_access_index));

static __always_inline bool task_blocked(struct task_struct *t)
{
	long state;
	if (bpf_core_field_exists(t->__state))
		state = BPF_CORE_READ(t, __state);
	else
		state = BPF_CORE_READ((struct task_struct___old *)t, state);
	return state & (TASK_INTERRUPTIBLE_STATE | TASK_UNINTERRUPTIBLE_STATE);
}

static __always_inline void offcpu_lose(u64 ns)
{
	u32 k = OFFCPU_LOST_BLOCKS;
	u64 *v = bpf_map_lookup_elem(&offcpu_lost, &k);
	if (v)
		*v += 1;
	k = OFFCPU_LOST_NS;
	v = bpf_map_lookup_elem(&offcpu_lost, &k);
	if (v)
		*v += ns;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(off_cpu_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	u64 now = bpf_ktime_get_ns();
	u32 tgid = prev->tgid;
	/* prev is the current task: its stacks are the ones it blocks in. */
	if (!preempt && bpf_map_lookup_elem(&offcpu_pids, &tgid) && task_blocked(prev)) {
		u32 zero = 0;
		struct offcpu_start *s = bpf_map_lookup_elem(&offcpu_scratch, &zero);
		if (s) {
			__builtin_memset(s, 0, sizeof(*s));
			record_stack(ctx, &offcpu_stacks, &s->key, tgid);
			s->ts = bpf_ktime_get_ns(); /* the walk's time is not the wait's */
			u32 tid = prev->pid;
			if (bpf_map_update_elem(&offcpu_starts, &tid, s, BPF_ANY))
				offcpu_lose(0);
		}
	}

	u32 tid = next->pid;
	struct offcpu_start *s = bpf_map_lookup_elem(&offcpu_starts, &tid);
	if (!s)
		return 0;
	u64 d = now > s->ts ? now - s->ts : 0;
	if (d >= offcpu_min_ns) {
		u64 *total = bpf_map_lookup_elem(&offcpu_counts, &s->key);
		if (total)
			__sync_fetch_and_add(total, d);
		else if (bpf_map_update_elem(&offcpu_counts, &s->key, &d, BPF_NOEXIST)) {
			/* Another CPU added the key meanwhile, or the map is full. */
			total = bpf_map_lookup_elem(&offcpu_counts, &s->key);
			if (total)
				__sync_fetch_and_add(total, d);
			else
				offcpu_lose(d);
		}
	}
	bpf_map_delete_elem(&offcpu_starts, &tid);
	return 0;
}
