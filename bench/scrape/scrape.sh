#!/usr/bin/env bash
# The real binary on a map of N keys, side by side in one run with
# `bpftool map dump -j` of the same map and the raw BatchLookup read of it
# (mapbench): full HTTP scrape as Prometheus makes it (text, gzip), the
# exporter's own collect time (probe_exporter_config_scrape_duration_seconds),
# and its RSS after the scrapes. Root; needs clang, bpftool, curl.
#
#   SIZES="100000 1000000" RUNS=5 bench/scrape/scrape.sh
#
# Prints one line per size; medians of RUNS rounds (each round: one read,
# one bpftool dump, one scrape). rss_MB is the exporter's RSS after its
# first 5 scrapes, rss_long after the rounds and LONG more scrapes
# (5 + 2*RUNS + LONG in all), peak_MB its high-water mark.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
runs=${RUNS:-5}
long=${LONG:-50}
sizes=${SIZES:-100000 1000000}
port=${PORT:-19435}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

inc="$root/include"
[ -f "$inc/vmlinux.h" ] || bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$inc/vmlinux.h"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$work/probe_exporter" ./cmd/probe_exporter &&
	go build -o "$work/mapbench" ./bench/scrape/mapbench)
accept='application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.1'

# cpu_ms PID: user+system CPU time the process has used, in ms.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / hz}' "/proc/$1/stat"; }
# child_cpu CMD...: runs CMD and prints the user+system CPU of it, in ms.
child_cpu() {
	local TIMEFORMAT='%U %S' t
	t=$({ time "$@" >/dev/null; } 2>&1)
	awk -v t="$t" 'BEGIN {split(t, a, " "); print (a[1] + a[2]) * 1000}'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# Wall times depend on the load of a shared machine; the CPU columns
# (the exporter's and curl's CPU for a scrape, bpftool's for a dump) do not.
printf '%-8s %8s %10s %9s %10s %8s %8s %9s %9s %8s %8s %8s %8s\n' keys raw_ms collect_ms scrape_ms bpftool_ms scr/bpf col/raw scr_cpu bpf_cpu cpu_rat rss_MB rss_long peak_MB
for n in $sizes; do
	mkdir -p "$work/$n"
	clang -g -O2 -target bpf -D__TARGET_ARCH_x86 -DMAX_ENTRIES="$n" -I "$inc" -c bench.bpf.c -o "$work/$n/bench.bpf.o"
	cp bench.yaml "$work/$n/bench.yaml"
	"$work/probe_exporter" --config.dir="$work/$n" --config.names=bench --web.listen-address="127.0.0.1:$port" \
		--log.level=warn >"$work/$n/log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/-/ready" && break; sleep 0.1; done
	id=$("$work/mapbench" -pid "$pid" -fill "$n")
	# Measured scrapes go to /dev/null, as bpftool's dump does; the last
	# one is kept to check it and read the exporter's collect time.
	scrape() { curl -sf --compressed -H "Accept: $accept" -o "${1:-/dev/null}" "http://127.0.0.1:$port/metrics"; }
	scrape # first sight of every key: decode and sort, not measured
	for _ in 1 2 3 4; do scrape; done
	rss=$(awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status") # after 5 scrapes
	raw=() col=() scr=() bpf=() scpu=() bcpu=()
	for _ in $(seq "$runs"); do
		raw+=("$("$work/mapbench" -pid "$pid" -read 1 | cut -d' ' -f1)")
		t=$(date +%s%N); bcpu+=("$(child_cpu bpftool map dump -j id "$id")"); bpf+=("$(ms "$t")")
		c0=$(cpu_ms "$pid"); t=$(date +%s%N); cc=$(child_cpu scrape); scr+=("$(ms "$t")")
		scpu+=("$(awk -v a="$c0" -v b="$(cpu_ms "$pid")" -v c="$cc" 'BEGIN {print b - a + c}')")
		scrape "$work/$n/body"
		col+=("$(awk '/^probe_exporter_config_scrape_duration_seconds\{config="bench"\}/ {print $2*1000}' "$work/$n/body")")
	done
	got=$(grep -c '^probe_exporter_bench_total{' "$work/$n/body")
	[ "$got" -eq "$n" ] || { echo "scrape had $got series, want $n" >&2; exit 1; }
	for _ in $(seq "$long"); do scrape; done
	rssl=$(awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status")
	hwm=$(awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$pid/status")
	r=$(printf '%s\n' "${raw[@]}" | median); c=$(printf '%s\n' "${col[@]}" | median)
	s=$(printf '%s\n' "${scr[@]}" | median); b=$(printf '%s\n' "${bpf[@]}" | median)
	sc=$(printf '%s\n' "${scpu[@]}" | median); bc=$(printf '%s\n' "${bcpu[@]}" | median)
	awk -v n="$n" -v r="$r" -v c="$c" -v s="$s" -v b="$b" -v sc="$sc" -v bc="$bc" -v rss="$rss" -v rssl="$rssl" -v hwm="$hwm" \
		'BEGIN {printf "%-8s %8.1f %10.1f %9s %10s %8.2f %8.2f %9s %9s %8.2f %8s %8s %8s\n", n, r, c, s, b, s/b, c/r, sc, bc, sc/bc, rss, rssl, hwm}'
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
