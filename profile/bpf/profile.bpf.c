// CPU profiler: on each perf event sample of a selected process, walk its
// user stack with the unwind rows userspace loaded from the mapped files'
// .eh_frame (frame pointers where a file has none), and count the stack
// with the kernel stack's id. offcpu.bpf.h adds the time threads spend
// blocked, by the same stacks.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "regs.bpf.h"

#define PERF_MAX_STACK_DEPTH 127
#define MAX_FRAMES 64
#define MAX_MAPPINGS 64
#define MAX_ROWS (1 << 20)
#define SEARCH_STEPS 21 /* log2(MAX_ROWS) + 1 */

#define CFA_NONE 0
#define CFA_SP 1
#define CFA_BP 2

/* Flags of a sample. */
#define SAMPLE_TRUNCATED 1 /* more frames than MAX_FRAMES */
#define SAMPLE_FP_USED 2   /* some frame came from frame pointers */

struct sample_key {
	u32 pid;
	s32 kernel_stack;
	u32 frames;
	u32 flags;
	u64 user[MAX_FRAMES];
};

#include "python.bpf.h"

/* Selected processes: tgid -> target index. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, u32);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(u32));
	__uint(value_size, PERF_MAX_STACK_DEPTH * sizeof(u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sample_key);
	__type(value, u64);
} counts SEC(".maps");

/* One unwind row: from pc (a file's virtual address) up to the next row. */
struct row {
	u64 pc;
	s32 cfa_offset;
	s16 bp_offset;
	u8 cfa_reg;
	u8 bp_saved;
};

/* Rows of every loaded file, each file's sorted and contiguous. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ROWS);
	__type(key, u32);
	__type(value, struct row);
} rows SEC(".maps");

/* An executable mapping: addr - bias is the file's virtual address. */
struct mapping {
	u64 start;
	u64 end;
	u64 bias;
	u32 first; /* first row */
	u32 count; /* 0: no rows, use frame pointers */
};

struct proc_info {
	u32 count;
	u32 pad;
	struct mapping maps[MAX_MAPPINGS];
};

/* tgid -> its executable mappings, sorted by start. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, u32);
	__type(value, struct proc_info);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct sample_key);
} scratch SEC(".maps");

struct walk {
	u64 pc, sp, bp;
	struct sample_key *key;
	struct py_stack *py; /* the sample's Python frames */
	struct py_proc *pyp; /* its interpreter, if Python */
	u32 pid;
	u32 n;
};

/* The searches are global functions: the verifier checks each once, with
 * unknown arguments, instead of once per path through the unwinder. */

/* mapping_index: the mapping of pid that holds pc, or -1. */
__attribute__((noinline)) int mapping_index(u32 pid, u64 pc)
{
	struct proc_info *info = bpf_map_lookup_elem(&procs, &pid);
	if (!info)
		return -1;
	u32 lo = 0, hi = info->count;
	if (hi > MAX_MAPPINGS)
		hi = MAX_MAPPINGS;
	for (int i = 0; i < 7 && lo < hi; i++) { /* 2^7 > MAX_MAPPINGS */
		u32 mid = ((lo + hi) / 2) & (MAX_MAPPINGS - 1);
		if (pc < info->maps[mid].start)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (lo == 0 || lo > MAX_MAPPINGS)
		return -1;
	u32 at = (lo - 1) & (MAX_MAPPINGS - 1);
	if (pc >= info->maps[at].end)
		return -1;
	return at;
}

/* row_index: the last row of [first, first+count) with row.pc <= pc, or
 * -1. */
__attribute__((noinline)) long row_index(u32 first, u32 count, u64 pc)
{
	u32 lo = first, hi = first + count;
	if (hi > MAX_ROWS || hi < lo)
		return -1;
	for (int i = 0; i < SEARCH_STEPS && lo < hi; i++) {
		u32 mid = lo + (hi - lo) / 2;
		struct row *r = bpf_map_lookup_elem(&rows, &mid);
		if (!r)
			return -1;
		if (pc < r->pc)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (lo == first)
		return -1;
	return lo - 1;
}

static long step(u32 i, void *data)
{
	struct walk *w = data;
	if (w->pc == 0)
		return 1;
	u32 n = w->n;
	if (n >= MAX_FRAMES) {
		w->key->flags |= SAMPLE_TRUNCATED;
		return 1;
	}
	/* A frame of the eval loop gives way to the Python frames it runs. */
	struct py_stack *ps = w->py;
	struct py_proc *pyp = w->pyp;
	if (!(ps && pyp && ps->at < ps->n && w->pc >= pyp->eval_start && w->pc < pyp->eval_end &&
	      py_emit(ps, w->key, &w->n, 0))) {
		w->key->user[n & (MAX_FRAMES - 1)] = w->pc;
		w->n = n + 1;
	}

	/* A return address points after its call: look up the call. */
	u64 lookup = i == 0 ? w->pc : w->pc - 1;
	struct row *r = NULL;
	int mi = mapping_index(w->pid, lookup);
	if (mi >= 0) {
		u32 at = (u32)mi & (MAX_MAPPINGS - 1);
		struct proc_info *info = bpf_map_lookup_elem(&procs, &w->pid);
		if (info && info->maps[at].count) {
			struct mapping *m = &info->maps[at];
			long ri = row_index(m->first, m->count, lookup - m->bias);
			if (ri >= 0) {
				u32 k = ri;
				r = bpf_map_lookup_elem(&rows, &k);
			}
		}
	}
	u64 ra = 0;
	if (r && r->cfa_reg != CFA_NONE) {
		u64 cfa = (r->cfa_reg == CFA_SP ? w->sp : w->bp) + (s64)r->cfa_offset;
		if (bpf_probe_read_user(&ra, sizeof(ra), (void *)(cfa - 8)))
			return 1;
		if (r->bp_saved) {
			u64 bp = 0;
			if (bpf_probe_read_user(&bp, sizeof(bp), (void *)(cfa + (s64)r->bp_offset)))
				return 1;
			w->bp = bp;
		}
		w->sp = cfa;
	} else {
		/* No unwind row: the frame pointer chain. */
		u64 frame[2];
		if (w->bp == 0 || bpf_probe_read_user(frame, sizeof(frame), (void *)w->bp))
			return 1;
		w->key->flags |= SAMPLE_FP_USED;
		w->sp = w->bp + 16;
		w->bp = frame[0];
		ra = frame[1];
	}
	w->pc = ra;
	return ra == 0;
}

/* record_stack fills key with the current thread's stacks: the kernel
 * stack's id in stack_map and the user frames (Python's included). ctx is
 * the program's context, a perf event's or a tracepoint's. */
static __always_inline void record_stack(void *ctx, void *stack_map, struct sample_key *key, u32 pid)
{
	u32 zero = 0;
	key->pid = pid;
	key->kernel_stack = bpf_get_stackid(ctx, stack_map, 0);

	/* The user registers, as saved at the entry to the kernel: the timer
	 * interrupt's when the sample hit user code, the syscall's when it hit
	 * the kernel. */
	struct walk w = { .key = key };
	void *regs = (void *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (regs)
		user_regs(regs, &w.pc, &w.sp, &w.bp);
	w.pid = pid;
	w.pyp = bpf_map_lookup_elem(&py_procs, &pid);
	if (w.pyp) {
		w.py = bpf_map_lookup_elem(&py_scratch, &zero);
		py_walk(w.py, w.pyp, pid);
	}
	if (w.pc)
		bpf_loop(MAX_FRAMES + 1, step, &w, 0);
	if (w.py && w.pyp) {
		/* Python frames the native walk did not reach. */
		py_emit(w.py, key, &w.n, 1);
		if (w.py->truncated)
			key->flags |= SAMPLE_TRUNCATED;
	}
	key->frames = w.n;
}

SEC("perf_event")
int do_sample(struct bpf_perf_event_data *ctx)
{
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (!bpf_map_lookup_elem(&pids, &pid))
		return 0;
	u32 zero = 0;
	struct sample_key *key = bpf_map_lookup_elem(&scratch, &zero);
	if (!key)
		return 0;
	__builtin_memset(key, 0, sizeof(*key));
	record_stack(ctx, &stacks, key, pid);
	u64 one = 1, *count = bpf_map_lookup_elem(&counts, key);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&counts, key, &one, BPF_NOEXIST);
	return 0;
}

#include "offcpu.bpf.h"

char LICENSE[] SEC("license") = "GPL";
