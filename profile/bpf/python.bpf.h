/* CPython frames for the CPU profiler (included by profile.bpf.c).
 *
 * For a sample of a process userspace described in py_procs, before the
 * native walk: find the thread's PyThreadState (the interpreter's thread
 * list, matched by thread_id, which is pthread_self(), the fs base on
 * x86-64), walk its frame chain from the current frame, and record each
 * frame's code object as a tagged value (PY_TAG | hash << 47 | address).
 * The code object's qualified name, file name and first line are read once
 * into py_names, keyed by (tgid, tagged value): the hash covers the name
 * and file pointers and the first line, so a code object freed and
 * another allocated at its address gets its own entry, never the old
 * names.
 *
 * During the native walk, each native frame in _PyEval_EvalFrameDefault is
 * replaced by the Python frames that call of the eval loop runs: one frame
 * for 3.10, the frames up to the entry frame for 3.11 (is_entry), up to the
 * C-stack shim frame for 3.12 and 3.13 (owner FRAME_OWNED_BY_CSTACK).
 * Python frames left when the native walk ends (it stopped early) go at
 * the root end: they are callers of every frame walked.
 *
 * Every offset comes from userspace, which checked them against the
 * running interpreter; a read that faults ends the Python walk. */

#define PY_MAX_FRAMES 64
#define PY_MAX_THREADS 256
#define PY_NAME_MAX 128
#define PY_FILE_MAX 256
#define PY_TAG (1ULL << 63)
#define PY_ADDR_MASK ((1ULL << 47) - 1)

/* frame_kind */
#define PY_FRAMES_310 0 /* PyFrameObject: each frame its own eval call */
#define PY_FRAMES_311 1 /* _PyInterpreterFrame, is_entry ends a call */
#define PY_FRAMES_312 2 /* _PyInterpreterFrame, owner 3 is the C shim */

#define PY_OWNED_BY_CSTACK 3

/* Sample flag: the Python frame chain was longer than PY_MAX_FRAMES. */
#define SAMPLE_PY_TRUNCATED 4

struct py_proc {
	u64 runtime;   /* address of _PyRuntime */
	u64 code_type; /* address of PyCode_Type */
	u64 eval_start, eval_end; /* _PyEval_EvalFrameDefault */
	u16 interp_head;  /* _PyRuntime -> interpreters.head */
	u16 threads_head; /* interp -> first thread state */
	u16 ts_next, ts_thread_id, ts_frame;
	u16 cframe_frame; /* 0xffff: ts_frame is the frame itself */
	u16 f_code, f_previous, f_owner;
	u16 co_name, co_file, co_line;
	u16 str_state, str_length, str_ascii, str_compact;
	u8 frame_kind;
	u8 pad[7];
	u64 str_type; /* address of PyUnicode_Type */
};

/* tgid -> the layout of its interpreter. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(struct py_proc));
} py_procs SEC(".maps");

struct py_name_key {
	u32 pid;
	u32 pad;
	u64 tagged;
};

struct py_name {
	u32 line;
	u8 name_kind; /* bytes per character, 0: unreadable */
	u8 file_kind;
	u16 pad;
	u32 name_bytes; /* whole string, in bytes */
	u32 file_bytes;
	char name[PY_NAME_MAX]; /* the last bytes when longer */
	char file[PY_FILE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct py_name_key);
	__type(value, struct py_name);
} py_names SEC(".maps");

/* The Python frames of the sample being taken, leaf first. */
struct py_stack {
	u64 frames[PY_MAX_FRAMES];
	u8 ends[PY_MAX_FRAMES]; /* last frame of one eval loop call */
	u32 n, at;
	u32 truncated;
	u32 pad;
	struct py_name name; /* scratch for a new entry */
};

/* State of the Python walk, on the stack (bpf_loop's context). */
struct py_walk {
	struct py_stack *s;
	struct py_proc *py;
	u64 cur;  /* the thread state or frame being looked at */
	u64 want; /* the thread's fs base */
	u32 pid;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct py_stack);
} py_scratch SEC(".maps");

static __always_inline u64 py_read_ptr(u64 addr)
{
	u64 v = 0;
	if (bpf_probe_read_user(&v, sizeof(v), (void *)addr))
		return 0;
	return v;
}

/* py_read_str reads a compact str object's text, its last max-1 bytes
 * when longer (whole characters); returns the bytes per character, 0 when unreadable. */
static __always_inline u8 py_read_str(struct py_proc *py, u64 obj, char *dst, u32 max, u32 *bytes)
{
	u32 state = 0;
	u64 length = 0;
	*bytes = 0;
	/* A name or file that is not a str (the process's memory lies) is
	 * left unnamed. */
	if (!obj || py_read_ptr(obj + 8) != py->str_type ||
	    bpf_probe_read_user(&state, sizeof(state), (void *)(obj + py->str_state)) ||
	    bpf_probe_read_user(&length, sizeof(length), (void *)(obj + py->str_length)))
		return 0;
	u32 kind = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
	if (!compact || (kind != 1 && kind != 2 && kind != 4) || length > (1 << 20))
		return 0;
	u64 data = obj + (ascii ? py->str_ascii : py->str_compact);
	u32 total = length * kind, n = total, skip = 0;
	u32 room = max - 1; /* max is a power of two */
	if (n > room) {
		skip = n - room;
		skip += (kind - skip % kind) % kind;
		n = total - skip;
	}
	n &= room;
	if (bpf_probe_read_user(dst, n, (void *)(data + skip)))
		return 0;
	*bytes = total;
	return kind;
}

/* py_code records the frame's code object; returns 0 when it is not one. */
static __noinline int py_code(struct py_walk *c, u64 code)
{
	struct py_stack *s = c->s;
	struct py_proc *py = c->py;
	if (!s || !py || !code)
		return 0;
	u64 type = py_read_ptr(code + 8); /* ob_type */
	if (type != py->code_type)
		return 0;
	u64 name = py_read_ptr(code + py->co_name);
	u64 file = py_read_ptr(code + py->co_file);
	u32 line = 0;
	bpf_probe_read_user(&line, sizeof(line), (void *)(code + py->co_line));
	u64 h = name * 0x9E3779B97F4A7C15ULL ^ file * 0xC2B2AE3D27D4EB4FULL ^ (u64)line * 0x165667B19E3779F9ULL;
	h ^= h >> 32;
	h ^= h >> 16;
	u64 tagged = PY_TAG | (h & 0xffff) << 47 | (code & PY_ADDR_MASK);
	struct py_name_key k = { .pid = c->pid, .tagged = tagged };
	if (!bpf_map_lookup_elem(&py_names, &k)) {
		struct py_name *v = &s->name;
		v->line = line;
		v->name_kind = py_read_str(py, name, v->name, PY_NAME_MAX, &v->name_bytes);
		v->file_kind = py_read_str(py, file, v->file, PY_FILE_MAX, &v->file_bytes);
		bpf_map_update_elem(&py_names, &k, v, BPF_ANY);
	}
	u32 n = s->n;
	if (n >= PY_MAX_FRAMES) {
		s->truncated = 1;
		return 1;
	}
	s->frames[n & (PY_MAX_FRAMES - 1)] = tagged;
	s->ends[n & (PY_MAX_FRAMES - 1)] = 0;
	s->n = n + 1;
	return 1;
}

static long py_frame_step(u32 i, void *data)
{
	struct py_walk *c = data;
	struct py_stack *s = c->s;
	struct py_proc *py = c->py;
	if (!s || !py || !c->cur)
		return 1;
	if (s->n >= PY_MAX_FRAMES) {
		s->truncated = 1;
		return 1;
	}
	u64 frame = c->cur;
	u64 code = py_read_ptr(frame + py->f_code);
	u64 prev = py_read_ptr(frame + py->f_previous);
	u8 owner = 0;
	if (py->frame_kind != PY_FRAMES_310)
		bpf_probe_read_user(&owner, sizeof(owner), (void *)(frame + py->f_owner));
	if (py->frame_kind == PY_FRAMES_312 && owner == PY_OWNED_BY_CSTACK) {
		/* The shim of an eval loop call: the frame before it ended
		 * that call. */
		if (s->n > 0)
			s->ends[(s->n - 1) & (PY_MAX_FRAMES - 1)] = 1;
	} else if (py_code(c, code)) {
		u32 last = (s->n - 1) & (PY_MAX_FRAMES - 1);
		if (py->frame_kind == PY_FRAMES_310 || (py->frame_kind == PY_FRAMES_311 && owner))
			s->ends[last] = 1;
	}
	c->cur = prev;
	return prev == 0;
}

static long py_thread_step(u32 i, void *data)
{
	struct py_walk *c = data;
	struct py_proc *py = c->py;
	if (!py || !c->cur)
		return 1;
	u64 id = py_read_ptr(c->cur + py->ts_thread_id);
	if (id && id == c->want)
		return 1; /* found: c->cur is the thread state */
	c->cur = py_read_ptr(c->cur + py->ts_next);
	return 0;
}

/* py_walk fills s with the Python frames of the current thread of pid,
 * described by py. */
static __noinline void py_walk(struct py_stack *s, struct py_proc *py, u32 pid)
{
	if (!s || !py)
		return;
	s->n = 0;
	s->at = 0;
	s->truncated = 0;
#if defined(__TARGET_ARCH_x86)
	/* CPython's thread id is pthread_self(), x86-64's thread pointer. */
	struct task_struct *task = bpf_get_current_task_btf();
	u64 fsbase = task->thread.fsbase;
#else
	/* Elsewhere pthread_self() is not the thread pointer register (arm64:
	 * glibc's struct pthread sits below TPIDR_EL0): user space never
	 * describes an interpreter to this build (profile.pythonFrames), and
	 * task->thread.fsbase, x86's alone, must not be read. */
	u64 fsbase = 0;
#endif
	if (!fsbase)
		return;
	u64 interp = py_read_ptr(py->runtime + py->interp_head);
	if (!interp)
		return;
	struct py_walk c = { .s = s, .py = py, .pid = pid, .want = fsbase };
	c.cur = py_read_ptr(interp + py->threads_head);
	bpf_loop(PY_MAX_THREADS, py_thread_step, &c, 0);
	u64 ts = c.cur;
	if (!ts || py_read_ptr(ts + py->ts_thread_id) != fsbase)
		return;
	u64 frame = py_read_ptr(ts + py->ts_frame);
	if (py->cframe_frame != 0xffff && frame)
		frame = py_read_ptr(frame + py->cframe_frame);
	c.cur = frame;
	if (frame)
		bpf_loop(PY_MAX_FRAMES + 1, py_frame_step, &c, 0);
	/* The outermost frame ends the outermost eval call. */
	if (s->n > 0)
		s->ends[(s->n - 1) & (PY_MAX_FRAMES - 1)] = 1;
}

struct py_emit_ctx {
	struct py_stack *s;
	struct sample_key *key;
	u32 n; /* frames of the sample */
	u32 all;
	u32 emitted;
};

static long py_emit_step(u32 i, void *data)
{
	struct py_emit_ctx *c = data;
	struct py_stack *s = c->s;
	struct sample_key *key = c->key;
	if (!s || !key)
		return 1;
	u32 at = s->at;
	if (at >= s->n || at >= PY_MAX_FRAMES)
		return 1;
	u32 n = c->n;
	if (n >= MAX_FRAMES) {
		key->flags |= SAMPLE_TRUNCATED;
		return 1;
	}
	key->user[n & (MAX_FRAMES - 1)] = s->frames[at & (PY_MAX_FRAMES - 1)];
	c->n = n + 1;
	s->at = at + 1;
	c->emitted = 1;
	return !c->all && s->ends[at & (PY_MAX_FRAMES - 1)];
}

/* py_emit appends the Python frames of one eval loop call (all: every
 * frame left) to the sample; returns whether it did (else the native
 * frame is kept). */
static __noinline int py_emit(struct py_stack *s, struct sample_key *key, u32 *nframes, int all)
{
	if (!s || !key || !nframes)
		return 0;
	struct py_emit_ctx c = { .s = s, .key = key, .n = *nframes, .all = all };
	bpf_loop(PY_MAX_FRAMES, py_emit_step, &c, 0);
	*nframes = c.n;
	return c.emitted;
}
