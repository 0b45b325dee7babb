#!/usr/bin/env bash
# CPU overhead of the built-in profiler at 100 Hz with both CPUs busy and
# PROCS (default 20) profiled processes, side by side with bpftrace
# 'profile:hz:100 { @[ustack, kstack] = count(); }' in one run: the profiler
# process's own CPU time over a window, and the work the busy loops got done
# (their throughput) against an unprofiled window.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECS:-10}
interval=${INTERVAL:-10s} # --profile.interval: how often profiles are drained
procs=${PROCS:-20}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/busy.c" <<'C'
#include <stdio.h>
#include <time.h>
int main(int argc, char **argv) {
	int secs = argc > 1 ? atoi(argv[1]) : 10; volatile unsigned long n = 0;
	time_t end = time(0) + secs;
	while (time(0) < end) for (int i = 0; i < 100000; i++) n++;
	printf("%lu\n", n / secs);
	return 0;
}
C
gcc -O1 -include stdlib.h -o "$work/busyloop" "$work/busy.c"
make -s build >/dev/null
cat > "$work/targets.yaml" <<Y
targets:
  - app: busy
    comm: busyloop
Y
echo 'metrics-export-rules: {busy_seconds: {expr: "busy.cpu"}}' > "$work/rules.yaml"
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
window() { # label pid: busy throughput, and the pid's CPU over the window
	# (from WARM seconds after the loops start: start-up of 20 processes,
	# reading their unwind rows and symbols, is reported apart)
	local label=$1 pid=${2:-} start before after i
	local warm=${WARM:-5}
	for i in $(seq "$procs"); do "$work/busyloop" $((secs + warm)) > "$work/out.$i" & done
	[ -n "$pid" ] && start=$(cpu_of "$pid")
	sleep "$warm"
	[ -n "$pid" ] && before=$(cpu_of "$pid")
	wait $(jobs -p | tail -n "$procs")
	local thr=$(cat "$work"/out.* | awk '{s += $1} END {printf "%.3g", s}')
	local cpu="-" startup="-"
	if [ -n "$pid" ]; then
		after=$(cpu_of "$pid")
		cpu=$(awk -v a="$before" -v b="$after" -v s="$secs" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f%%", (b-a)/hz/s*100}')
		startup=$(awk -v a="$start" -v b="$before" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2fs", (b-a)/hz}')
	fi
	printf '%-28s %d busy loops %10s iter/s in all   profiler CPU %s of one CPU (first %ss: %s)\n' "$label" "$procs" "$thr" "$cpu" "$warm" "$startup"
}
window "no profiler"
./probe_exporter --web.listen-address=127.0.0.1:19932 --config.dir="$work" --config.names=none \
	--profile.config="$work/targets.yaml" --rules.file="$work/rules.yaml" --profile.interval="$interval" --log.level=error 2>/dev/null &
pe=$!; sleep 2
window "probe_exporter 100 Hz" "$pe"
kill $pe; wait $pe 2>/dev/null || true
bpftrace -e 'profile:hz:100 { @[ustack, kstack] = count(); }' >/dev/null 2>&1 &
bt=$!; sleep 3
window "bpftrace profile:hz:100" "$bt"
kill -INT $bt; wait $bt 2>/dev/null || true
