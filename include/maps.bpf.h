/* Small helpers shared by probe_exporter's BPF programs. */
#ifndef PROBE_EXPORTER_MAPS_BPF_H
#define PROBE_EXPORTER_MAPS_BPF_H

#include <bpf/bpf_helpers.h>

/* Add delta to the u64 at key, creating it if absent. */
static __always_inline void increment_map(void *map, void *key, u64 delta)
{
	u64 *count = bpf_map_lookup_elem(map, key);
	if (count) {
		__sync_fetch_and_add(count, delta);
		return;
	}
	if (bpf_map_update_elem(map, key, &delta, BPF_NOEXIST) == 0)
		return;
	/* Another CPU created it first (or the map is full): add to theirs. */
	count = bpf_map_lookup_elem(map, key);
	if (count)
		__sync_fetch_and_add(count, delta);
}

/*
 * Bucket of an exp2 histogram: the smallest k with v <= 2^k (0 for 0 and
 * 1), capped at max, so that bucket k holds exactly the values Prometheus's
 * le="2^k" bucket adds to the one below it (ebpf_exporter puts exact powers
 * of two in their own bucket the same way since its issue #488).
 */
static __always_inline u64 exp2_bucket(u64 v, u64 max)
{
	u64 b = 0, shift;
	if (v <= 1)
		return 0;
	/* floor(log2(v - 1)) + 1 without loops. */
	v -= 1;
	shift = (v > 0xFFFFFFFFULL) << 5; v >>= shift; b |= shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; b |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; b |= shift;
	shift = (v > 0xF) << 2; v >>= shift; b |= shift;
	shift = (v > 0x3) << 1; v >>= shift; b |= shift;
	b |= (v >> 1);
	b += 1;
	return b > max ? max : b;
}

/* The kernel's dev_t (major << 20 | minor) as userspace sees it
 * (new_encode_dev), which the majorminor decoder reads. */
static __always_inline u32 encode_dev(u32 dev)
{
	u32 major = dev >> 20, minor = dev & ((1U << 20) - 1);
	return (minor & 0xff) | (major << 8) | ((minor & ~0xffU) << 12);
}

#endif
