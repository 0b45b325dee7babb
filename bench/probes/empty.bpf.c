// An empty uprobe and USDT program: the cost of the probe itself.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } unused SEC(".maps");
SEC("uprobe") int on_work(void *ctx) { return 0; }
SEC("usdt") int on_tick(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
