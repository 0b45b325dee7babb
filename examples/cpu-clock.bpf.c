// Samples of the software cpu-clock perf event, per CPU. The section names
// the event: libbpf's plain SEC("perf_event") leaves opening it to the
// loader; probe_exporter opens type=1 (PERF_TYPE_SOFTWARE) config=0
// (PERF_COUNT_SW_CPU_CLOCK) at 99 Hz on every online CPU.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} cpu_clock_samples_total SEC(".maps");

SEC("perf_event/type=1,config=0,frequency=99")
int on_sample(void *ctx)
{
	u32 zero = 0;
	u64 *count = bpf_map_lookup_elem(&cpu_clock_samples_total, &zero);
	if (count)
		*count += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
