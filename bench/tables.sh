#!/usr/bin/env bash
# The profiler's tables under a churn of distinct binaries (issue 26): N
# (default 1000) copies of a small C program, each with a distinct embedded
# string (so a distinct file), run in turn (PAR at a time, 50 ms of CPU
# each) as profiled targets. Reports the exporter's RSS and the kernel
# unwind rows in use before, after N/2 and after N, each read once the
# drain after the last exit has run (DRAIN seconds), and the peak RSS
# (VmHWM). RUNS (default 3) repeats it with a fresh exporter; BIN names the
# binary (default: the one `make build` makes), to compare with an older
# build.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-1000}
par=${PAR:-4}
runs=${RUNS:-3}
drain=${DRAIN:-12}
port=${PORT:-19933}
bin=${BIN:-}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
if [ -z "$bin" ]; then
	make -s build >/dev/null
	bin=./probe_exporter
fi
cat > "$work/churn.c" <<'C'
#include <time.h>
__attribute__((used)) static const char tag[] = "TAG0000000000000000";
__attribute__((noipa)) long spin(long n) { long s = 0; for (long i = 0; i < n; i++) s += i ^ (s >> 3); return s; }
int main(void) {
	struct timespec t0, t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	long s = 0;
	do { s += spin(100000); clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); }
	while ((t.tv_sec - t0.tv_sec) * 1000000000L + t.tv_nsec - t0.tv_nsec < 50000000L);
	return (int)(s & 1);
}
C
gcc -O2 -o "$work/template" "$work/churn.c"
for i in $(seq "$n"); do
	mkdir -p "$work/bin/$i"
	# Same length as the placeholder: the ELF stays valid, the content differs.
	perl -pe "s/TAG0000000000000000/sprintf('TAG%016d', $i)/e" "$work/template" > "$work/bin/$i/churnbin"
	chmod +x "$work/bin/$i/churnbin"
done
cmp -s "$work/bin/1/churnbin" "$work/bin/2/churnbin" && { echo "copies are not distinct" >&2; exit 1; }
printf 'targets:\n  - app: churn\n    comm: churnbin\n' > "$work/targets.yaml"
echo 'metrics-export-rules: {churn_seconds: {expr: "churn.cpu"}}' > "$work/rules.yaml"

metric() { # the value of the first series of name (any labels, state="used" preferred)
	curl -s "http://127.0.0.1:$port/metrics" | awk -v n="$1" '
		!found && ($1 == n || $1 == n "{state=\"used\"}") { v = $2; found = 1 }
		END { print found ? v : 0 }'
}
status() { awk -v f="$2" '$1 == f { print $2 }' "/proc/$1/status"; }
churn() { # from to: PAR at a time (waiting for those, not the exporter)
	local i pids=()
	for i in $(seq "$1" "$2"); do
		"$work/bin/$i/churnbin" &
		pids+=($!)
		if (( ${#pids[@]} == par )); then
			if (( i % (par * 10) == 0 )); then # the most rows in use while churning
				sleep 0.03
				maxrows=$(awk -v a="$maxrows" -v b="$(metric probe_exporter_profiler_unwind_rows)" 'BEGIN { print (b > a ? b : a) }')
			fi
			wait "${pids[@]}" || true
			pids=()
		fi
	done
	if (( ${#pids[@]} > 0 )); then wait "${pids[@]}" || true; fi
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

printf '%-4s %8s %8s %8s %9s %9s %9s %9s %8s %6s %6s\n' run "rss0" "rss$((n / 2))" "rss$n" "rows0" "rows$((n / 2))" "rows$n" "maxrows" "peak" files heap
for run in $(seq "$runs"); do
	"$bin" --web.listen-address=127.0.0.1:$port --config.dir="$work" --config.names=none \
		--profile.config="$work/targets.yaml" --rules.file="$work/rules.yaml" --log.level=error 2>/dev/null &
	pe=$!
	until curl -sf "http://127.0.0.1:$port/-/healthy" >/dev/null; do sleep 0.2; done
	sleep 2
	rss0=$(status $pe VmRSS:) rows0=$(metric probe_exporter_profiler_unwind_rows) maxrows=0
	churn 1 $((n / 2))
	sleep "$drain"
	rss1=$(status $pe VmRSS:) rows1=$(metric probe_exporter_profiler_unwind_rows)
	churn $((n / 2 + 1)) "$n"
	sleep "$drain"
	rss2=$(status $pe VmRSS:) rows2=$(metric probe_exporter_profiler_unwind_rows)
	files=$(metric probe_exporter_profiler_unwind_files)
	heap=$(metric go_memstats_heap_inuse_bytes)
	peak=$(status $pe VmHWM:)
	printf '%-4s %8s %8s %8s %9s %9s %9s %9s %8s %6s %6s\n' "$run" "$(mib "$rss0")" "$(mib "$rss1")" "$(mib "$rss2")" \
		"$rows0" "$rows1" "$rows2" "$maxrows" "$(mib "$peak")" "$files" "$(awk -v b="$heap" 'BEGIN { printf "%.1f", b / 1048576 }')"
	kill $pe
	wait $pe 2>/dev/null || true
done
echo "(RSS in MiB; rows: kernel unwind rows in use, maxrows the most seen while churning; files: files with rows at the end; heap: Go heap in use at the end, MiB)"
