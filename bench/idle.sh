#!/bin/sh
# Idle CPU beside a process churn: probe_exporter with its embedded
# defaults, probe_exporter with a userspace-probe config whose processes
# never run (the process watcher loaded but idle), and bpftrace with one
# tracepoint. Each runs SECS seconds (default 60) while a shell execs
# /bin/true in a loop; nobody scrapes. Prints the CPU share of one core
# each used (utime+stime from /proc/PID/stat) and the churn's exec rate.
#   bench/idle.sh [path/to/probe_exporter]
set -eu
BIN=${1:-./probe_exporter}
SECS=${SECS:-60}
PORT=${PORT:-19915}
HZ=$(getconf CLK_TCK)
TMP=$(mktemp -d)
trap 'kill $CHURN 2>/dev/null || true; rm -rf "$TMP"' EXIT

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

execs() { awk '/^processes/ { print $2 }' /proc/stat; }

# ready: wait until the exporter serves its configs (inline code is
# compiled at start, which takes a while on a busy machine).
ready() {
	for _ in $(seq 300); do
		if curl -sf "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1; then return; fi
		sleep 0.2
	done
}

# measure NAME PID: CPU of PID over SECS seconds.
measure() {
	sleep 5 # start-up is not idle
	t0=$(ticks "$2"); p0=$(execs)
	sleep "$SECS"
	t1=$(ticks "$2"); p1=$(execs)
	awk -v n="$1" -v d=$((t1 - t0)) -v hz="$HZ" -v s="$SECS" -v p=$((p1 - p0)) \
		'BEGIN { printf "%-45s %6.3f %% of one CPU   (%d forks/s beside it)\n", n, 100 * d / hz / s, p / s }'
	kill "$2"; wait "$2" 2>/dev/null || true
}

cat >"$TMP/idle.yaml" <<'EOF'
programs:
  - name: idle
    metrics:
      counters:
        - name: idle_calls_total
          help: calls
          table: calls
          labels:
            - name: kind
              size: 4
              decoders:
                - name: uint
    uprobes:
      malloc: on_call
    attachments:
      binary_name: "pe-never-runs"
    code: |
      #include "vmlinux.h"
      #include <bpf/bpf_helpers.h>
      struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, u32); __type(value, u64); } calls SEC(".maps");
      SEC("uprobe") int on_call(void *ctx) { u32 k = 0; u64 *v = bpf_map_lookup_elem(&calls, &k); if (v) __sync_fetch_and_add(v, 1); return 0; }
      char LICENSE[] SEC("license") = "GPL";
EOF

(while :; do /bin/true; done) &
CHURN=$!

"$BIN" --web.listen-address=127.0.0.1:$PORT --log.level=warn &
ready
measure "probe_exporter, embedded defaults" $!

"$BIN" --web.listen-address=127.0.0.1:$PORT --log.level=warn --config.dir="$TMP" --config.names=idle &
ready
measure "probe_exporter, a userspace config (idle)" $!

if command -v bpftrace >/dev/null; then
	bpftrace -e 'tracepoint:sched:sched_process_exec { @ = count(); }' >/dev/null &
	measure "bpftrace, one tracepoint (sched_process_exec)" $!
fi
