/*
 * Ring buffers whose full-buffer drops probe_exporter counts. The kernel
 * keeps no count of the records bpf_ringbuf_output could not write, so
 * RINGBUF_WITH_LOST(name, bytes) declares the ring buffer and, next to
 * it, name_lost: a per-CPU counter that events_output adds to when the
 * ring is full. probe_exporter serves the sum as
 * probe_exporter_event_records_lost_total{config, map="name"}.
 */
#ifndef PROBE_EXPORTER_EVENTS_BPF_H
#define PROBE_EXPORTER_EVENTS_BPF_H

#include <bpf/bpf_helpers.h>

#define RINGBUF_WITH_LOST(name, bytes)                   \
	struct {                                         \
		__uint(type, BPF_MAP_TYPE_RINGBUF);      \
		__uint(max_entries, bytes);              \
	} name SEC(".maps");                             \
	struct {                                         \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); \
		__uint(max_entries, 1);                  \
		__type(key, u32);                        \
		__type(value, u64);                      \
	} name##_lost SEC(".maps")

/* Count one record lost in lost (a name_lost map). */
static __always_inline void events_lost(void *lost)
{
	u32 zero = 0;
	u64 *n = bpf_map_lookup_elem(lost, &zero);
	if (n)
		*n += 1; /* per-CPU: no other CPU writes it */
}

/* Copy size bytes of data into ring buffer ring as one record, or count
 * it in lost when the ring is full. */
static __always_inline long events_output(void *ring, void *lost, void *data, u64 size)
{
	long err = bpf_ringbuf_output(ring, data, size, 0);
	if (err)
		events_lost(lost);
	return err;
}

#endif
