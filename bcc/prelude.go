package bcc

import "strings"

// pchHeaders are the headers every translated program starts with. They
// are precompiled once per kernel BTF for the AST pass, so that the AST
// dump holds the program's own declarations and not the whole kernel's.
const pchHeaders = `#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
`

// macros is what bcc gives a program for free, written for libbpf: its map
// declarations with bcc's default key types and sizes, its map methods
// (the translator turns m.method(...) into __bcc_method(m, ...)), its
// USDT argument reader on top of libbpf's usdt.bpf.h, bpf_log2/bpf_log2l
// and the implicit kernel read (__bcc_read) that bcc's rewriter inserts
// for member access through kernel pointers.
const macros = `/* bcc's dialect on libbpf: maps with bcc's defaults. */
#define __BCC_MAP(t, name, k, v, n) struct { __uint(type, t); __uint(max_entries, n); __type(key, k); __type(value, v); } name SEC(".maps")
#define __BCC_PICK4(_1, _2, _3, _4, N, ...) N
#define __BCC_PICK3(_1, _2, _3, N, ...) N
#define __BCC_PICK2(_1, _2, N, ...) N
#ifdef __BCC_PID_KEYS
/* Hash keys carry the pid of the process counted, as ebpf-userspace-exporter's
   per-process modules gave every metric a pid label. */
#define __BCC_KEY(k) struct { u32 __pid; k __key; }
#else
#define __BCC_KEY(k) k
#endif
#define __BCC_MAPK(t, name, k, v, n) __BCC_MAP(t, name, __BCC_KEY(k), v, n)
#define BPF_HASH(...) __BCC_PICK4(__VA_ARGS__, __BCC_HASH4, __BCC_HASH3, __BCC_HASH2, __BCC_HASH1)(BPF_MAP_TYPE_HASH, __VA_ARGS__)
#define BPF_PERCPU_HASH(...) __BCC_PICK4(__VA_ARGS__, __BCC_HASH4, __BCC_HASH3, __BCC_HASH2, __BCC_HASH1)(BPF_MAP_TYPE_PERCPU_HASH, __VA_ARGS__)
#define __BCC_HASH1(t, name) __BCC_MAPK(t, name, u64, u64, 10240)
#define __BCC_HASH2(t, name, k) __BCC_MAPK(t, name, k, u64, 10240)
#define __BCC_HASH3(t, name, k, v) __BCC_MAPK(t, name, k, v, 10240)
#define __BCC_HASH4(t, name, k, v, n) __BCC_MAPK(t, name, k, v, n)
#define BPF_ARRAY(...) __BCC_PICK3(__VA_ARGS__, __BCC_ARRAY3, __BCC_ARRAY2, __BCC_ARRAY1)(BPF_MAP_TYPE_ARRAY, __VA_ARGS__)
#define BPF_PERCPU_ARRAY(...) __BCC_PICK3(__VA_ARGS__, __BCC_ARRAY3, __BCC_ARRAY2, __BCC_ARRAY1)(BPF_MAP_TYPE_PERCPU_ARRAY, __VA_ARGS__)
#define __BCC_ARRAY1(t, name) __BCC_MAP(t, name, int, u64, 10240)
#define __BCC_ARRAY2(t, name, v) __BCC_MAP(t, name, int, v, 10240)
#define __BCC_ARRAY3(t, name, v, n) __BCC_MAP(t, name, int, v, n)
#define BPF_HISTOGRAM(...) __BCC_PICK3(__VA_ARGS__, __BCC_HIST3, __BCC_HIST2, __BCC_HIST1)(BPF_MAP_TYPE_HASH, __VA_ARGS__)
#define __BCC_HIST1(t, name) __BCC_MAPK(t, name, int, u64, 64)
#define __BCC_HIST2(t, name, k) __BCC_MAPK(t, name, k, u64, 64)
#define __BCC_HIST3(t, name, k, n) __BCC_MAPK(t, name, k, u64, n)
/* Event outputs: a perf event array (one buffer per CPU, sized by the
   loader) and a ring buffer of pages of 4 KiB, as bcc sizes it. */
#define BPF_PERF_OUTPUT(name) struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, sizeof(int)); __uint(value_size, sizeof(u32)); } name SEC(".maps")
#define BPF_RINGBUF_OUTPUT(name, pages) struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, (pages) * 4096); } name SEC(".maps")
#define __BCC_TABLE(t, k, v, name, n) __BCC_MAP(t, name, k, v, n)
#define __BCC_TABLEK(t, k, v, name, n) __BCC_MAPK(t, name, k, v, n)

/* Map methods. */
#define __bcc_lookup(m, k) ((__typeof__((m).value))bpf_map_lookup_elem(&(m), (k)))
#define __bcc_update(m, k, v) bpf_map_update_elem(&(m), (k), (v), BPF_ANY)
#define __bcc_insert(m, k, v) bpf_map_update_elem(&(m), (k), (v), BPF_NOEXIST)
#define __bcc_delete(m, k) bpf_map_delete_elem(&(m), (k))
#define __bcc_lookup_or_try_init(m, k, z) ({ \
	__typeof__((m).value) __bl = bpf_map_lookup_elem(&(m), (k)); \
	if (!__bl) { bpf_map_update_elem(&(m), (k), (z), BPF_NOEXIST); __bl = bpf_map_lookup_elem(&(m), (k)); } \
	__bl; })
#define __bcc_lookup_or_init __bcc_lookup_or_try_init
#define __bcc_increment(m, ...) __BCC_PICK2(__VA_ARGS__, __bcc_add, __bcc_inc)(m, __VA_ARGS__)
#define __bcc_atomic_increment __bcc_increment
#define __bcc_inc(m, k) __bcc_add(m, k, 1)
#define __bcc_add(m, k, n) ({ \
	__typeof__(*(m).key) __bk = (k); \
	__typeof__(*(m).value) *__bv = bpf_map_lookup_elem(&(m), &__bk); \
	if (__bv) { \
		__sync_fetch_and_add(__bv, (n)); \
	} else { \
		__typeof__(*(m).value) __bz = (n); \
		if (bpf_map_update_elem(&(m), &__bk, &__bz, BPF_NOEXIST) != 0) { \
			__bv = bpf_map_lookup_elem(&(m), &__bk); \
			if (__bv) __sync_fetch_and_add(__bv, (n)); \
		} \
	} })

/* Event output methods. ringbuf_reserve returns void *, which bcc's
   users assign to a typed pointer as C allows. */
#define __bcc_perf_submit(m, ctx, data, size) bpf_perf_event_output((ctx), &(m), BPF_F_CURRENT_CPU, (data), (size))
#define __bcc_ringbuf_output(m, data, size, flags) bpf_ringbuf_output(&(m), (data), (size), (flags))
#define __bcc_ringbuf_reserve(m, size) bpf_ringbuf_reserve(&(m), (size), 0)
#define __bcc_ringbuf_submit(m, data, flags) bpf_ringbuf_submit((data), (flags))
#define __bcc_ringbuf_discard(m, data, flags) bpf_ringbuf_discard((data), (flags))

/* The same methods on maps whose keys carry the pid. */
#define __BCC_PK(m, kp) \
	__typeof__(*(m).key) __pk; \
	__builtin_memset((void *)&__pk, 0, sizeof(__pk)); \
	__pk.__pid = bpf_get_current_pid_tgid() >> 32; \
	__pk.__key = *(kp)
#define __bcc_plookup(m, k) ({ __BCC_PK(m, k); (__typeof__((m).value))bpf_map_lookup_elem(&(m), &__pk); })
#define __bcc_pupdate(m, k, v) ({ __BCC_PK(m, k); bpf_map_update_elem(&(m), &__pk, (v), BPF_ANY); })
#define __bcc_pinsert(m, k, v) ({ __BCC_PK(m, k); bpf_map_update_elem(&(m), &__pk, (v), BPF_NOEXIST); })
#define __bcc_pdelete(m, k) ({ __BCC_PK(m, k); bpf_map_delete_elem(&(m), &__pk); })
#define __bcc_plookup_or_try_init(m, k, z) ({ \
	__BCC_PK(m, k); \
	__typeof__((m).value) __bl = bpf_map_lookup_elem(&(m), &__pk); \
	if (!__bl) { bpf_map_update_elem(&(m), &__pk, (z), BPF_NOEXIST); __bl = bpf_map_lookup_elem(&(m), &__pk); } \
	__bl; })
#define __bcc_plookup_or_init __bcc_plookup_or_try_init
#define __bcc_pincrement(m, ...) __BCC_PICK2(__VA_ARGS__, __bcc_padd, __bcc_pinc)(m, __VA_ARGS__)
#define __bcc_patomic_increment __bcc_pincrement
#define __bcc_pinc(m, k) __bcc_padd(m, k, 1)
#define __bcc_padd(m, k, n) ({ \
	__typeof__(((__typeof__(*(m).key) *)0)->__key) __pkv = (k); \
	__BCC_PK(m, &__pkv); \
	__typeof__(*(m).value) *__bv = bpf_map_lookup_elem(&(m), &__pk); \
	if (__bv) { \
		__sync_fetch_and_add(__bv, (n)); \
	} else { \
		__typeof__(*(m).value) __bz = (n); \
		if (bpf_map_update_elem(&(m), &__pk, &__bz, BPF_NOEXIST) != 0) { \
			__bv = bpf_map_lookup_elem(&(m), &__pk); \
			if (__bv) __sync_fetch_and_add(__bv, (n)); \
		} \
	} })

/* bcc's printk takes the format alone. */
#define bpf_trace_printk(fmt, ...) bpf_printk(fmt, ##__VA_ARGS__)

/* USDT arguments, 1-based as in bcc, read with libbpf's usdt.bpf.h. */
#define bpf_usdt_readarg(n, ctx, p) ({ \
	long __ba = 0; \
	int __be = bpf_usdt_arg((ctx), (n) - 1, &__ba); \
	*(p) = (__typeof__(*(p)))__ba; \
	__be; })
#define bpf_usdt_readarg_p(n, ctx, buf, len) ({ \
	long __ba = 0; \
	int __be = bpf_usdt_arg((ctx), (n) - 1, &__ba); \
	if (__be == 0) __be = bpf_probe_read_user((buf), (len), (const void *)__ba); \
	__be; })

/* Implicit kernel reads, as bcc's rewriter does them: a CO-RE relocated
   bpf_probe_read_kernel of an lvalue reached through a kernel pointer. */
#define __bcc_read(e) ({ \
	__typeof__(e) __br; \
	__builtin_memset((void *)&__br, 0, sizeof(__br)); \
	bpf_probe_read_kernel((void *)&__br, sizeof(__br), (const void *)&(e)); \
	__br; })

/* floor(log2(v)), 0 for 0, as bcc's bpf_log2. */
static __always_inline unsigned int bpf_log2(unsigned int v)
{
	unsigned int r = 0;
	if (v >= 1u << 16) { v >>= 16; r += 16; }
	if (v >= 1u << 8) { v >>= 8; r += 8; }
	if (v >= 1u << 4) { v >>= 4; r += 4; }
	if (v >= 1u << 2) { v >>= 2; r += 2; }
	if (v >= 1u << 1) { r += 1; }
	return r;
}

/* floor(log2(v)) + 1 (the bit length of v, 1 for 0 and 1), as bcc's bpf_log2l. */
static __always_inline unsigned int bpf_log2l(unsigned long v)
{
	unsigned int hi = v >> 32;
	if (hi)
		return bpf_log2(hi) + 32 + 1;
	return bpf_log2(v) + 1;
}
`

// headerMacros are the #define macros a dropped kernel header gave that
// vmlinux.h (types and enums only) lacks.
var headerMacros = map[string]string{
	"linux/blk_types.h": "#ifndef REQ_OP_MASK\n#define REQ_OP_BITS 8\n#define REQ_OP_MASK ((1 << REQ_OP_BITS) - 1)\n#endif\n",
	"linux/blkdev.h":    "#ifndef REQ_OP_MASK\n#define REQ_OP_BITS 8\n#define REQ_OP_MASK ((1 << REQ_OP_BITS) - 1)\n#endif\n",
	"linux/sched.h":     "#ifndef PF_KTHREAD\n#define PF_KTHREAD 0x00200000\n#endif\n",
	"net/sock.h":        "#ifndef AF_INET\n#define AF_INET 2\n#define AF_INET6 10\n#endif\n",
}

// kernelHeader reports whether an #include names a kernel header that bcc
// resolved from the kernel's sources and that vmlinux.h stands in for.
func kernelHeader(name string) bool {
	for _, p := range []string{"linux/", "uapi/", "net/", "asm/", "bcc/"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
