#!/usr/bin/env bash
# Measures the exporter's resident memory per series: the binary `make build`
# makes serves one hash map (rss.bpf.c) filled with N series, is scraped
# twice, and its VmRSS and VmHWM are read. Root, clang, libbpf-dev, python3.
#   deploy/measure/rss.sh [N ...]      (default: 0 10000 100000 1000000)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
make -s -C "$root" build
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
clang -g -O2 -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -c "$here/rss.bpf.c" -o "$dir/rss.bpf.o"
cp "$here/rss.yaml" "$dir/rss.yaml"
port=${PORT:-19911}
printf '%10s %10s %10s %12s\n' series VmRSS_kB VmHWM_kB scrape_bytes
for n in "${@:-0 10000 100000 1000000}"; do
	for n1 in $n; do
		"$root/probe_exporter" --config.dir="$dir" --config.names=rss --web.listen-address=127.0.0.1:$port --log.level=warn &
		pid=$!
		until curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null; do
			kill -0 $pid 2>/dev/null || { echo "exporter exited" >&2; exit 1; }
			sleep 0.2
		done
		python3 -c "import os,sys
try: os.getpgid(-int(sys.argv[1]))
except OSError: pass" "$n1"
		curl -s "http://127.0.0.1:$port/metrics" >/dev/null
		bytes=$(curl -s "http://127.0.0.1:$port/metrics" | wc -c)
		got=$(curl -s "http://127.0.0.1:$port/metrics" | grep -c '^probe_exporter_rss_series' || true)
		[ "$got" = "$n1" ] || { echo "scrape has $got series, want $n1" >&2; kill $pid; exit 1; }
		rss=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)
		hwm=$(awk '/^VmHWM/ {print $2}' /proc/$pid/status)
		kill $pid
		wait $pid || true
		printf '%10s %10s %10s %12s\n' "$n1" "$rss" "$hwm" "$bytes"
	done
done
