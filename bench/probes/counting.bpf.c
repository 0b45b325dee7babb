// Counting uprobe and USDT programs (a per-CPU counter, like @ = count()).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 2); __type(key, u32); __type(value, u64); } bench_calls_total SEC(".maps");
static int bump(u32 k) { u64 *v = bpf_map_lookup_elem(&bench_calls_total, &k); if (v) *v += 1; return 0; }
SEC("uprobe") int on_work(void *ctx) { return bump(0); }
SEC("usdt") int on_tick(void *ctx) { return bump(1); }
char LICENSE[] SEC("license") = "GPL";
