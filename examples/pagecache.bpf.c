// ebpf_exporter v1's page cache example (cachestat) on tracepoints instead of
// kprobes: pages added to and deleted from the page cache and folios
// dirtied, by operation and command.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "maps.bpf.h"

enum pagecache_op { PC_ADD = 1, PC_DELETE = 2, PC_DIRTY = 3 };

struct key_t {
	u64 op;
	char command[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct key_t);
	__type(value, u64);
} page_cache_ops_total SEC(".maps");

static __always_inline int count(u64 op)
{
	struct key_t key = { .op = op };
	bpf_get_current_comm(&key.command, sizeof(key.command));
	increment_map(&page_cache_ops_total, &key, 1);
	return 0;
}

SEC("tracepoint/filemap/mm_filemap_add_to_page_cache")
int add_to_page_cache(void *ctx) { return count(PC_ADD); }

SEC("tracepoint/filemap/mm_filemap_delete_from_page_cache")
int delete_from_page_cache(void *ctx) { return count(PC_DELETE); }

SEC("tracepoint/writeback/writeback_dirty_folio")
int dirty_folio(void *ctx) { return count(PC_DIRTY); }

char LICENSE[] SEC("license") = "GPL";
