#!/usr/bin/env bash
# Per-call overhead of uprobes and USDT probes (empty and counting) and the
# time from exec to the first counted event, for probe_exporter and for
# bpftrace attaching the same probes, in one run. Root; needs gcc, clang,
# bpftool, bpftrace. Prints one line per case; medians of RUNS runs.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
runs=${RUNS:-5}
n=${CALLS:-2000000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
gcc -O2 -o "$work/benchtgt" target.c
make -s -C "$root" build >/dev/null
inc="$root/include"; [ -f "$inc/vmlinux.h" ] || bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$inc/vmlinux.h"
for p in empty counting; do
	clang -g -O2 -target bpf -D__TARGET_ARCH_x86 -I "$inc" -c $p.bpf.c -o "$work/$p.bpf.o"
	cat > "$work/$p.yaml" <<YAML
programs:
  - name: $p
    metrics:
      counters:
        - name: bench_calls_total
          help: calls
          table: $( [ $p = counting ] && echo bench_calls_total || echo unused )
          labels:
            - name: probe
              size: 4
              decoders: [{name: uint}]
    uprobes: {work: on_work}
    usdt: {"bench:tick": on_tick}
    attachments: {binary_name: benchtgt}
    code: |
$(sed 's/^/      /' $p.bpf.c)
YAML
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
measure() { # label: runs the target runs times, prints medians
	local label=$1 wait=${2:-} u=() s=()
	for i in $(seq "$runs"); do
		out=$("$work/benchtgt" calls "$n" $wait)
		u+=("$(sed 's/.*uprobe_ns=\([0-9.]*\).*/\1/' <<<"$out")")
		s+=("$(sed 's/.*usdt_ns=\([0-9.]*\).*/\1/' <<<"$out")")
	done
	printf '%-34s uprobe %7.1f ns/call   usdt %7.1f ns/call\n' "$label" \
		"$(printf '%s\n' "${u[@]}" | median)" "$(printf '%s\n' "${s[@]}" | median)"
}
attach_time() {
	local label=$1 a=()
	for i in $(seq "$runs"); do
		a+=("$("$work/benchtgt" attach | sed 's/attach_ms=//')")
	done
	printf '%-34s exec -> first event %8.3f ms\n' "$label" "$(printf '%s\n' "${a[@]}" | median)"
}
wait_metric() { for i in $(seq 100); do curl -sf "http://127.0.0.1:$1/metrics" | grep -q "$2" && return 0; sleep 0.1; done; echo "timeout waiting for $2"; return 1; }

measure "baseline (no probe)"
port=19931
for p in empty counting; do
	"$root/probe_exporter" --config.dir="$work" --config.names=$p --web.listen-address=127.0.0.1:$port --log.level=error &
	pe=$!
	wait_metric $port 'probe_exporter_config_up{config="'$p'"} 1'
	measure "probe_exporter $p" wait
	attach_time "probe_exporter $p (comm selector)"
	kill $pe; wait $pe 2>/dev/null || true
done
for p in "{}" "{ @ = count(); }"; do
	bpftrace -e "uprobe:$work/benchtgt:work $p usdt:$work/benchtgt:bench:tick $p" >/dev/null 2>&1 &
	bt=$!
	sleep 3
	measure "bpftrace $p" wait
	attach_time "bpftrace $p (attached to file)"
	kill -INT $bt; wait $bt 2>/dev/null || true
done
