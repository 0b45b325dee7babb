#!/usr/bin/env bash
# Runs the benchmarks behind bench/README.md on this machine, side by side
# with the peers they are compared to, in one run. Needs root (BPF maps,
# probes), bpftool and bpftrace. Output goes to bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
mkdir -p "$out"
count=${COUNT:-5}

echo "== scrape cost: raw BatchLookup vs collect vs HTTP scrape vs bpftool map dump" | tee "$out/scrape.txt"
go test -run '^$' -bench 'BenchmarkSideBySide|BenchmarkRawBatchLookup|BenchmarkCollect|BenchmarkScrape|BenchmarkBpftoolDump|BenchmarkHistogramCollect|BenchmarkMultiValue|BenchmarkExpiry' \
	-benchtime "${BENCHTIME:-3x}" -count "$count" ./collector/ | tee -a "$out/scrape.txt"

echo "== native histograms: scrape and writer cost with and without the native form" | tee "$out/native.txt"
go test -run '^$' -bench 'BenchmarkNativeHistogram' -benchtime "${BENCHTIME:-20x}" -count "$count" ./collector/ | tee -a "$out/native.txt"

echo "== scrape of the real binary beside bpftool and the raw read (100k, 1M keys)" | tee "$out/scrape-binary.txt"
bench/scrape/scrape.sh | tee -a "$out/scrape-binary.txt"

for pkg in decoder scripts usdt profile rules ingest; do
	if ls "$pkg"/*_test.go >/dev/null 2>&1 && grep -q 'func Benchmark' "$pkg"/*_test.go; then
		echo "== $pkg" | tee "$out/$pkg.txt"
		go test -run '^$' -bench . -benchtime "${BENCHTIME:-3x}" -count "$count" "./$pkg/" | tee -a "$out/$pkg.txt"
	fi
done
if [ -x bench/probes/probes.sh ]; then bench/probes/probes.sh | tee "$out/probes.txt"; fi
if [ -x bench/profiler.sh ]; then bench/profiler.sh | tee "$out/profiler.txt"; fi
if [ -x bench/tables.sh ]; then bench/tables.sh | tee "$out/tables.txt"; fi
if command -v benchstat >/dev/null; then benchstat "$out/scrape.txt" > "$out/scrape.benchstat" || true; fi
