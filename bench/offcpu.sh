#!/usr/bin/env bash
# Cost of off-CPU profiling per context switch: a ping-pong of PAIRS
# (default 2) thread pairs over pipes (each round trip blocks each thread
# once: every context switch is a thread blocking or waking), run for SECS
# seconds in three windows: untraced, profiled by probe_exporter
# (off_cpu: true), and traced by bpftrace with the equivalent of bcc's
# offcputime (stacks taken when a thread blocks, the time summed by stack
# when it runs again). Reported: the round trips the workload got done, and
# each sched_switch program's own run time per call and per second from the
# kernel's BPF statistics (kernel.bpf_stats_enabled, turned on for the run
# and restored after).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECS:-10}
pairs=${PAIRS:-2}
work=$(mktemp -d)
stats=$(sysctl -n kernel.bpf_stats_enabled)
trap 'kill $(jobs -p) 2>/dev/null || true; sysctl -qw kernel.bpf_stats_enabled=$stats; rm -rf "$work"' EXIT
sysctl -qw kernel.bpf_stats_enabled=1
cat > "$work/pingpong.c" <<'C'
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
struct pair { int ping[2], pong[2]; long trips; };
static volatile int stop;
__attribute__((noinline)) static void wait_for(int fd) { char c; if (read(fd, &c, 1) != 1) exit(1); }
static void *echo(void *arg) { struct pair *p = arg; for (;;) { wait_for(p->ping[0]); if (write(p->pong[1], "x", 1) != 1) exit(1); } return 0; }
static void *serve(void *arg) { struct pair *p = arg; while (!stop) { if (write(p->ping[1], "x", 1) != 1) exit(1); wait_for(p->pong[0]); p->trips++; } return 0; }
int main(int argc, char **argv) {
	int secs = atoi(argv[1]), n = atoi(argv[2]);
	struct pair *ps = calloc(n, sizeof *ps);
	pthread_t t[2 * 64];
	for (int i = 0; i < n; i++) {
		if (pipe(ps[i].ping) || pipe(ps[i].pong)) return 1;
		pthread_create(&t[2 * i], 0, echo, &ps[i]);
		pthread_create(&t[2 * i + 1], 0, serve, &ps[i]);
	}
	sleep(secs);
	stop = 1;
	long trips = 0;
	for (int i = 0; i < n; i++) { pthread_join(t[2 * i + 1], 0); trips += ps[i].trips; }
	printf("%ld\n", trips / secs);
	return 0;
}
C
gcc -O2 -pthread -o "$work/pingpong" "$work/pingpong.c"
make -s build >/dev/null
cat > "$work/targets.yaml" <<Y
targets:
  - app: pingpong
    comm: pingpong
    off_cpu: true
Y
echo 'metrics-export-rules: {pingpong_blocked_seconds: {expr: "pingpong.off_cpu"}}' > "$work/rules.yaml"
prog_stats() { # name pid: run_cnt run_time_ns of pid's programs so named
	bpftool prog show -j | python3 -c '
import glob, json, sys
ids = set()
for f in glob.glob("/proc/%s/fdinfo/*" % sys.argv[2]):
    try:
        for line in open(f):
            if line.startswith("prog_id:"):
                ids.add(int(line.split()[1]))
    except OSError:
        pass
cnt = ns = 0
for p in json.load(sys.stdin):
    if p["id"] in ids and sys.argv[1] in p.get("name", ""):
        cnt += p.get("run_cnt", 0); ns += p.get("run_time_ns", 0)
print(cnt, ns)' "$1" "$2"
}
window() { # label [program-name pid]
	local label=$1 name=${2:-} owner=${3:-} before after
	"$work/pingpong" "$secs" "$pairs" > "$work/out" &
	local pp=$!
	[ -n "$name" ] && before=$(prog_stats "$name" "$owner")
	wait $pp
	local trips cost
	trips=$(cat "$work/out")
	cost="-"
	if [ -n "$name" ]; then
		after=$(prog_stats "$name" "$owner")
		cost=$(echo "$before $after $secs" | awk '{c = $3 - $1; ns = $4 - $2; printf "%d calls, %.0f ns per call, %.2f%% of one CPU", c, c ? ns / c : 0, ns / $5 / 1e7}')
	fi
	printf '%-34s %10s round trips/s   sched_switch program: %s\n' "$label" "$trips" "$cost"
}
window "untraced"
./probe_exporter --web.listen-address=127.0.0.1:19933 --config.dir="$work" --config.names=none \
	--profile.config="$work/targets.yaml" --rules.file="$work/rules.yaml" --log.level=error 2>/dev/null &
pe=$!; sleep 2
window "probe_exporter off_cpu: true" off_cpu_switch $pe
kill $pe; wait $pe 2>/dev/null || true
# bcc's offcputime, in bpftrace (no kprobes needed): a blocking thread's
# stacks and time at sched_switch, summed by stack when it is switched in.
cat > "$work/offcpu.bt" <<'BT'
tracepoint:sched:sched_switch
{
	if (comm == "pingpong" && (args->prev_state & 3)) {
		@start[tid] = nsecs;
		@kstk[tid] = kstack;
		@ustk[tid] = ustack;
	}
	$s = @start[args->next_pid];
	if ($s) {
		@off[@kstk[args->next_pid], @ustk[args->next_pid]] = sum(nsecs - $s);
		delete(@start[args->next_pid]);
	}
}
BT
bpftrace "$work/offcpu.bt" >/dev/null 2>&1 &
bt=$!; sleep 3
window "bpftrace offcputime equivalent" sched_switch $bt
kill -TERM $bt; wait $bt 2>/dev/null || true
window "untraced, again"
