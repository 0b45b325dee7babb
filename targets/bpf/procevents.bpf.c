// Process selection in the kernel for userspace probes.
//
// Every selector in use has a slot. At exec, before the new image runs, the
// exec tracepoint checks the process against each slot (command name,
// executable file, pid in the exporter's pid namespace, cgroup) and records
// a match in `selected`, which the dispatchers in front of users' uprobe
// programs consult. Fork children inherit their parent's slots, exit
// forgets them: userspace never has to be in time for a probe to count.
//
// When a selected process runs an executable no probe of its slot has been
// placed in yet, the process is stopped (SIGSTOP) until userspace has
// placed the probes and continues it, so even the first process of a new
// binary is probed from its first instruction. Selectors the kernel cannot
// evaluate (command-line regexps) are passed to userspace, which selects the
// process in the same map when it matches.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_SLOTS 64

#define SLOT_ACTIVE 1
#define SLOT_COMM 2
#define SLOT_EXE 4
#define SLOT_PID 8
#define SLOT_CGROUP 16
#define SLOT_USERSPACE 32 /* a part only userspace can match (cmdline) */
#define SLOT_INHERIT 64	  /* fork children are selected too */
#define SLOT_PROBES_EXE 128 /* hold new processes until their executable is probed */
#define SLOT_EXE_HINT 256   /* hold a process of an unknown executable named exe_comm */
#define SLOT_CMDLINE 512    /* the cmdline automaton of the slot prefilters */

#define CMDLINE_MAX 4096
#define DFA_STATES 32
#define DFA_ACCEPT (DFA_STATES - 1)

#define EV_EXEC 1
#define EV_EXIT 2
#define EV_FORK 3
#define EV_RENAME 4

#define EVF_STOPPED 1 /* the process waits for SIGCONT */
#define EVF_WAS_TRACKED 2

#define SIGSTOP 19

struct slot {
	u32 flags;
	u32 pad;
	char comm[16];
	char exe_comm[16];
};

struct settings {
	/* Processes of this uid may be stopped; 0xffffffff: any. */
	u32 stop_uid;
	u32 pad;
};

struct pid_key {
	u32 pid;
	u32 slot;
};

/* A file by device, inode and the inode's generation: filesystems that
 * reuse inode numbers (ext4) give a new file a new generation, so that a
 * verdict on a deleted executable does not pass to a new one. GEN_ANY is
 * a verdict or probed mark userspace made without knowing the generation
 * (a file that existed at start, on a filesystem that does not tell it);
 * lookups fall back to it. */
struct file_key {
	u64 dev; /* kernel encoding: major << 20 | minor */
	u64 ino;
	u32 slot;
	u32 gen;
};

#define GEN_ANY 0xffffffff

struct cgroup_key {
	u64 id;
	u32 slot;
	u32 pad;
};

struct event {
	u32 kind;
	u32 pid; /* in the exporter's pid namespace */
	u32 ppid; /* fork: the parent */
	u32 flags;
	u64 matched; /* slots selected by the kernel */
	u64 userspace; /* slots userspace has to decide */
	u64 stop; /* slots whose probes the executable still lacks */
	u64 dev;
	u64 ino;
	u64 time; /* CLOCK_BOOTTIME ns */
	u64 left; /* exit, exec: slots the process leaves */
	u32 gen; /* exec: the executable's inode generation */
	u32 pad;
	char comm[16]; /* exec, rename: the name taken */
};

/* Level and inode of the exporter's pid namespace, set at load. */
const volatile u32 pidns_level = 0;
const volatile u32 pidns_ino = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, u32);
	__type(value, struct slot);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct settings);
} settings SEC(".maps");

/* Per slot with SLOT_CMDLINE: next state by state and byte. */
struct dfa {
	u8 next[DFA_STATES * 256];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, u32);
	__type(value, struct dfa);
} cmdline_dfa SEC(".maps");

struct args_buf {
	u8 b[CMDLINE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct args_buf);
} args SEC(".maps");

/* 0 events lost (ring full), 1 selections lost (map full), 2 stops. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct pid_key);
	__type(value, u8);
} selected SEC(".maps");

/* Processes with at least one slot: their exit and exec are reported. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, u8);
} tracked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192);
	__type(key, struct pid_key);
	__type(value, u8);
} slot_pids SEC(".maps");

/* Userspace's verdicts on executables and cgroups per slot: 1 selected,
 * 2 not. One the kernel has no verdict on is passed to userspace (and the
 * process held when it may well be selected). */
#define VERDICT_MATCH 1

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct file_key);
	__type(value, u8);
} slot_exes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct cgroup_key);
	__type(value, u8);
} slot_cgroups SEC(".maps");

/* Executables the probes of a slot are placed in (1) or failed for (2). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192);
	__type(key, struct file_key);
	__type(value, u8);
} probed SEC(".maps");

static __always_inline void count(u32 i)
{
	u64 *v = bpf_map_lookup_elem(&stats, &i);
	if (v)
		(*v)++;
}

/* ns_tgid is the process id of t in the exporter's pid namespace, 0 when
 * the exporter cannot see t. */
static __always_inline u32 ns_tgid(struct task_struct *t)
{
	if (pidns_level == 0)
		return BPF_CORE_READ(t, tgid);
	struct pid *p = BPF_CORE_READ(t, group_leader, thread_pid);
	if (!p || BPF_CORE_READ(p, level) < pidns_level)
		return 0;
	struct upid u = {};
	bpf_core_read(&u, sizeof(u), &p->numbers[pidns_level & 31]);
	if (BPF_CORE_READ(u.ns, ns.inum) != pidns_ino)
		return 0;
	return u.nr;
}

#define ARGS_UNREAD 0
#define ARGS_READ 1
#define ARGS_UNKNOWN 2 /* not readable here: userspace decides */

struct exec_ctx {
	u32 pid;
	u32 uid;
	u64 cgroup;
	u64 dev, ino;
	u32 gen;
	u32 rename; /* task_rename: only command-name slots change */
	u64 comm[2];
	u64 matched, userspace, stop, hold, left;
	u64 args_addr;
	u32 args_len; /* all of the arguments, maybe more than read */
	u32 args_state;
};

struct scan_ctx {
	u32 slot;
	u32 len;
	u32 state;
};

#define SCAN_STEP 16

/* scan_step advances the automaton of one slot over SCAN_STEP bytes. */
static long scan_step(u64 i, void *data)
{
	struct scan_ctx *c = data;
	u32 zero = 0;
	struct args_buf *a = bpf_map_lookup_elem(&args, &zero);
	struct dfa *d = bpf_map_lookup_elem(&cmdline_dfa, &c->slot);
	if (!a || !d)
		return 1;
	u32 state = c->state;
#pragma unroll
	for (int j = 0; j < SCAN_STEP; j++) {
		u32 at = i * SCAN_STEP + j;
		if (at >= c->len)
			break;
		u32 b = a->b[at & (CMDLINE_MAX - 1)];
		/* + rather than |: the same index (the low 8 bits are b's),
		 * but verifiers before Linux 6.8 lose the bounds of an OR with
		 * a non-constant (Linux 6.1 refused the program: "math between
		 * map_value pointer and register with unbounded min value").
		 * The barrier hides from clang that b < 256, or it would make
		 * the disjoint + an | again; the verifier still knows it. */
		barrier_var(b);
		state = d->next[((state & (DFA_STATES - 1)) << 8) + b];
	}
	c->state = state;
	return state == DFA_ACCEPT || (i + 1) * SCAN_STEP >= c->len;
}

#define SCAN_NO 0
#define SCAN_FOUND 1
#define SCAN_UNDECIDED 2

/* scan_args runs slot idx's automaton over the arguments, read once per
 * event into the per-CPU buffer. */
static __always_inline int scan_args(struct exec_ctx *c, u32 idx)
{
	if (c->args_state == ARGS_UNREAD) {
		u32 zero = 0;
		struct args_buf *a = bpf_map_lookup_elem(&args, &zero);
		u32 n = c->args_len;
		if (n > CMDLINE_MAX)
			n = CMDLINE_MAX;
		c->args_state = ARGS_UNKNOWN;
		if (a && bpf_probe_read_user(a->b, n, (void *)c->args_addr) == 0)
			c->args_state = ARGS_READ;
	}
	if (c->args_state != ARGS_READ)
		return SCAN_UNDECIDED;
	struct scan_ctx s = { .slot = idx, .len = c->args_len > CMDLINE_MAX ? CMDLINE_MAX : c->args_len };
	if (s.len)
		bpf_loop((s.len + SCAN_STEP - 1) / SCAN_STEP, scan_step, &s, 0);
	if (s.state == DFA_ACCEPT)
		return SCAN_FOUND;
	return c->args_len > CMDLINE_MAX ? SCAN_UNDECIDED : SCAN_NO;
}

struct clear_ctx {
	u32 pid;
	u64 left;
};

static long clear_slot(u64 i, void *data)
{
	struct clear_ctx *c = data;
	struct pid_key k = { .pid = c->pid, .slot = i };
	if (bpf_map_delete_elem(&selected, &k) == 0)
		c->left |= 1ULL << (i & 63);
	return 0;
}

static long match_slot(u64 i, void *data)
{
	struct exec_ctx *c = data;
	u32 idx = i;
	struct slot *s = bpf_map_lookup_elem(&slots, &idx);
	if (!s || !(s->flags & SLOT_ACTIVE))
		return 0;
	if (c->rename && !(s->flags & SLOT_COMM))
		return 0; /* its selection does not depend on the name */
	if (s->flags & SLOT_COMM) {
		u64 *want = (u64 *)s->comm;
		if (want[0] != c->comm[0] || want[1] != c->comm[1]) {
			if (c->rename) {
				/* Renamed away: no longer selected. */
				struct pid_key k = { .pid = c->pid, .slot = idx };
				if (bpf_map_delete_elem(&selected, &k) == 0)
					c->left |= 1ULL << (idx & 63);
			}
			return 0;
		}
		if (c->rename) {
			struct pid_key k = { .pid = c->pid, .slot = idx };
			if (bpf_map_lookup_elem(&selected, &k))
				return 0; /* selected already */
		}
	}
	if (s->flags & SLOT_PID) {
		struct pid_key k = { .pid = c->pid, .slot = idx };
		if (!bpf_map_lookup_elem(&slot_pids, &k))
			return 0;
	}
	u64 bit = 1ULL << (idx & 63);
	if (s->flags & SLOT_EXE) {
		struct file_key k = { .dev = c->dev, .ino = c->ino, .slot = idx, .gen = c->gen };
		u8 *v = bpf_map_lookup_elem(&slot_exes, &k);
		if (!v) {
			k.gen = GEN_ANY;
			v = bpf_map_lookup_elem(&slot_exes, &k);
		}
		if (!v) {
			c->userspace |= bit;
			u64 *hint = (u64 *)s->exe_comm;
			if ((s->flags & SLOT_EXE_HINT) && hint[0] == c->comm[0] && hint[1] == c->comm[1])
				c->hold |= bit;
			return 0;
		}
		if (*v != VERDICT_MATCH)
			return 0;
	}
	if (s->flags & SLOT_CGROUP) {
		struct cgroup_key k = { .id = c->cgroup, .slot = idx };
		u8 *v = bpf_map_lookup_elem(&slot_cgroups, &k);
		if (!v) {
			/* A cgroup created since: the first process in it waits
			 * for userspace's verdict. */
			c->userspace |= bit;
			c->hold |= bit;
			return 0;
		}
		if (*v != VERDICT_MATCH)
			return 0;
	}
	if (s->flags & SLOT_USERSPACE) {
		c->userspace |= bit;
		if (s->flags & SLOT_CMDLINE) {
			int r = scan_args(c, idx);
			if (r == SCAN_NO)
				c->userspace &= ~bit; /* no literal: not selected */
			else if (r == SCAN_FOUND)
				c->hold |= bit; /* a candidate: wait for userspace */
		}
		return 0;
	}
	struct pid_key k = { .pid = c->pid, .slot = idx };
	u8 one = 1;
	if (bpf_map_update_elem(&selected, &k, &one, BPF_ANY)) {
		count(1);
		return 0;
	}
	c->matched |= bit;
	if (s->flags & SLOT_PROBES_EXE) {
		struct file_key f = { .dev = c->dev, .ino = c->ino, .slot = idx, .gen = c->gen };
		if (!bpf_map_lookup_elem(&probed, &f)) {
			/* Probed as found running at start, generation unknown. */
			f.gen = GEN_ANY;
			if (!bpf_map_lookup_elem(&probed, &f))
				c->stop |= bit;
		}
	}
	return 0;
}

struct vma_ctx {
	u64 dev, ino;
	u32 gen;
};

static long vma_file(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct vma_ctx *c = data;
	struct file *f = BPF_CORE_READ(vma, vm_file);
	if (!f)
		return 0;
	c->ino = BPF_CORE_READ(f, f_inode, i_ino);
	c->dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	c->gen = BPF_CORE_READ(f, f_inode, i_generation);
	return 0;
}

static __always_inline struct event *reserve(void)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(0);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->time = bpf_ktime_get_boot_ns();
	return e;
}

/* fill reads what selection needs of task: its executable as uprobes see
 * it, its cgroup, its user and where its arguments are. */
static __always_inline void fill(struct exec_ctx *c, struct task_struct *task)
{
	c->cgroup = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	c->uid = BPF_CORE_READ(task, cred, uid.val);
	/* The file mapped at the start of the code is what uprobes see (the
	 * real file under overlayfs), and what /proc/PID/maps shows. */
	struct vma_ctx v = {};
	bpf_find_vma(task, BPF_CORE_READ(task, mm, start_code), vma_file, &v, 0);
	c->dev = v.dev;
	c->ino = v.ino;
	c->gen = v.gen;
	u64 start = BPF_CORE_READ(task, mm, arg_start), end = BPF_CORE_READ(task, mm, arg_end);
	c->args_addr = start;
	c->args_len = end > start && end - start < 0x7fffffff ? end - start : 0;
}

/* report sends the outcome of matching to userspace, holding the current
 * process when a slot needs its probes placed or its verdict given first
 * (hold_ok: the process is the current task, which alone can be stopped
 * here). */
static __always_inline void report(struct exec_ctx *c, u32 kind, u32 flags, int hold_ok)
{
	if (c->matched) {
		u8 one = 1;
		bpf_map_update_elem(&tracked, &c->pid, &one, BPF_ANY);
	}
	struct event *e = reserve();
	if (!e)
		return;
	e->kind = kind;
	e->pid = c->pid;
	e->matched = c->matched;
	e->userspace = c->userspace;
	e->stop = c->stop;
	e->dev = c->dev;
	e->ino = c->ino;
	e->gen = c->gen;
	e->left = c->left;
	__builtin_memcpy(e->comm, c->comm, sizeof(e->comm));
	u64 wake = 0;
	if (hold_ok && (c->stop || c->hold)) {
		u32 zero = 0;
		struct settings *s = bpf_map_lookup_elem(&settings, &zero);
		if (s && (s->stop_uid == 0xffffffff || s->stop_uid == c->uid) &&
		    bpf_send_signal(SIGSTOP) == 0) {
			flags |= EVF_STOPPED;
			wake = BPF_RB_FORCE_WAKEUP;
			count(2);
		}
	}
	e->flags = flags;
	bpf_ringbuf_submit(e, wake);
}

SEC("tracepoint/sched/sched_process_exec")
int on_exec(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct exec_ctx c = {};
	c.pid = ns_tgid(task);
	if (!c.pid)
		return 0;
	u32 flags = 0;
	struct clear_ctx cl = { .pid = c.pid };
	if (bpf_map_lookup_elem(&tracked, &c.pid)) {
		/* A new image: the old selection no longer holds. */
		flags |= EVF_WAS_TRACKED;
		bpf_loop(MAX_SLOTS, clear_slot, &cl, 0);
		bpf_map_delete_elem(&tracked, &c.pid);
	}
	bpf_get_current_comm(c.comm, sizeof(c.comm));
	fill(&c, task);
	c.left = cl.left;
	bpf_loop(MAX_SLOTS, match_slot, &c, 0);
	if (!c.matched && !c.userspace && !flags)
		return 0;
	report(&c, EV_EXEC, flags, 1);
	return 0;
}

/* The name a task takes, before it is copied: prctl(PR_SET_NAME), a write
 * to /proc/PID/comm, and exec (whose new name sched_process_exec sees). */
SEC("tp_btf/task_rename")
int BPF_PROG(on_rename, struct task_struct *task, const char *comm)
{
	/* A process's name is its leader's; threads name themselves freely. */
	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
		return 0;
	if (bpf_core_field_exists(task->in_execve) && BPF_CORE_READ_BITFIELD_PROBED(task, in_execve))
		return 0; /* exec: decided in on_exec */
	struct exec_ctx c = { .rename = 1 };
	c.pid = ns_tgid(task);
	if (!c.pid)
		return 0;
	bpf_probe_read_kernel_str(c.comm, 16, comm);
	fill(&c, task);
	int self = task == bpf_get_current_task_btf();
	if (!self)
		c.args_state = ARGS_UNKNOWN; /* another's memory: userspace decides */
	bpf_loop(MAX_SLOTS, match_slot, &c, 0);
	if (!c.matched && !c.userspace && !c.left)
		return 0;
	report(&c, EV_RENAME, 0, self);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int on_exit(void *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	/* Only the thread group leader's exit ends the process. */
	if ((u32)id != id >> 32)
		return 0;
	u32 pid = ns_tgid(bpf_get_current_task_btf());
	if (!pid || !bpf_map_lookup_elem(&tracked, &pid))
		return 0;
	struct clear_ctx cl = { .pid = pid };
	bpf_loop(MAX_SLOTS, clear_slot, &cl, 0);
	bpf_map_delete_elem(&tracked, &pid);
	struct event *e = reserve();
	if (!e)
		return 0;
	e->kind = EV_EXIT;
	e->pid = pid;
	e->left = cl.left;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

struct fork_ctx {
	u32 parent, child;
	u64 matched;
};

static long inherit_slot(u64 i, void *data)
{
	struct fork_ctx *c = data;
	u32 idx = i;
	struct slot *s = bpf_map_lookup_elem(&slots, &idx);
	if (!s || (s->flags & (SLOT_ACTIVE | SLOT_INHERIT)) != (SLOT_ACTIVE | SLOT_INHERIT))
		return 0;
	struct pid_key k = { .pid = c->parent, .slot = idx };
	if (!bpf_map_lookup_elem(&selected, &k))
		return 0;
	k.pid = c->child;
	u8 one = 1;
	if (bpf_map_update_elem(&selected, &k, &one, BPF_ANY)) {
		count(1);
		return 0;
	}
	c->matched |= 1ULL << (idx & 63);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; /* a thread */
	struct fork_ctx c = { .parent = ns_tgid(parent), .child = ns_tgid(child) };
	if (!c.parent || !c.child || !bpf_map_lookup_elem(&tracked, &c.parent))
		return 0;
	bpf_loop(MAX_SLOTS, inherit_slot, &c, 0);
	if (!c.matched)
		return 0;
	u8 one = 1;
	bpf_map_update_elem(&tracked, &c.child, &one, BPF_ANY);
	struct event *e = reserve();
	if (!e)
		return 0;
	e->kind = EV_FORK;
	e->pid = c.child;
	e->ppid = c.parent;
	e->matched = c.matched;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
