#!/usr/bin/env bash
# Cost of naming CPython frames (issue 27), side by side in one run: the
# same Python workload (profile/testdata/work.py split ROUNDS under PYTHON,
# default Debian's python3.11) profiled by the built binary
#   on:  the interpreter's file named python3.11: the Python walk runs;
#   off: the same file copied under another name, which the profiler does
#        not take for an interpreter: the native walk alone, same stacks;
# and perf record at the same 100 Hz on the same workload (-g frame
# pointers, and --call-graph dwarf), its record and its report timed.
# Per window: the exporter's CPU, the workload's CPU, and the BPF program's
# time (kernel.bpf_stats_enabled=1, bpftool's run_time_ns) per sample of
# the workload and per run of the program. RUNS windows each, medians.
# py-spy, the usual sampler of Python stacks, is a PyPI package that cannot
# be installed here: not compared.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
rounds=${ROUNDS:-3000}
python=${PYTHON:-/usr/bin/python3.11}
addr=127.0.0.1:${PORT:-19937}
work=$(mktemp -d)
stats=$(sysctl -n kernel.bpf_stats_enabled)
pe=
cleanup() {
	[ -n "$pe" ] && kill "$pe" 2>/dev/null && wait "$pe" 2>/dev/null
	sysctl -qw kernel.bpf_stats_enabled="$stats"
	rm -rf "$work"
}
trap cleanup EXIT
sysctl -qw kernel.bpf_stats_enabled=1
make -s build >/dev/null
base=$(basename "$python")
mkdir "$work/on" "$work/off"
cp "$python" "$work/on/$base"
ln -s "$base" "$work/on/pyon"
cp "$python" "$work/off/pyoff"
cp profile/testdata/work.py "$work/"
cat > "$work/targets.yaml" <<Y
targets:
  - {app: pyon, comm: pyon}
  - {app: pyoff, comm: pyoff}
Y
cat > "$work/rules.yaml" <<Y
metrics-export-rules:
  on_slow_seconds: {expr: 'pyon.cpu', node: 'slow_function'}
  off_slow_seconds: {expr: 'pyoff.cpu', node: 'slow_function'}
Y
hz=$(getconf CLK_TCK)
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
samples() { curl -s "http://$addr/metrics" | awk '$1 == "probe_exporter_profiler_samples_total" {print $2}'; }
# bpf_time: run_time_ns and run_cnt of the exporter's do_sample program
# (its file descriptors name the programs it holds).
bpf_time() {
	local fd id
	for fd in /proc/"$pe"/fdinfo/*; do
		id=$(awk '$1 == "prog_id:" {print $2}' "$fd" 2>/dev/null)
		[ -n "$id" ] || continue
		if bpftool prog show id "$id" 2>/dev/null | grep -q ' name do_sample '; then
			awk '$1 == "run_time_ns:" {t = $2} $1 == "run_cnt:" {n = $2} END {print t + 0, n + 0}' "$fd"
			return
		fi
	done
	echo 0 0
}
./probe_exporter --web.listen-address="$addr" --config.dir="$work" --config.names=none \
	--profile.config="$work/targets.yaml" --rules.file="$work/rules.yaml" --profile.interval=1s --log.level=error 2>/dev/null &
pe=$!
for _ in $(seq 100); do curl -sf "http://$addr/-/healthy" >/dev/null && break; sleep 0.1; done

# window MODE BIN: one run of the workload under the exporter.
window() {
	local mode=$1 bin=$2 c0 c1 s0 s1 r0 n0 r1 n1 w
	c0=$(cpu_of "$pe"); s0=$(samples); read -r r0 n0 < <(bpf_time)
	w=$( { /usr/bin/time -f '%U %S' sh -c "echo | '$bin' '$work/work.py' split $rounds >/dev/null"; } 2>&1 | awk '{print $1 + $2}')
	sleep 2.5 # two drains (--profile.interval=1s): the window's samples are in
	c1=$(cpu_of "$pe"); s1=$(samples); read -r r1 n1 < <(bpf_time)
	awk -v m="$mode" -v c=$((c1 - c0)) -v hz="$hz" -v w="$w" -v s=$((s1 - s0)) -v r=$((r1 - r0)) -v n=$((n1 - n0)) \
		'BEGIN { printf "%s %.3f %.2f %d %.0f %.0f\n", m, c / hz, w, s, (s ? r / s : 0), (n ? r / n : 0) }'
}
# perfwin MODE ARGS: perf record of one run (attached to the process, so
# its time is perf's own), and perf report of it.
perfwin() {
	local mode=$1 wp c0 w rec rep
	shift
	rm -f "$work/fifo" "$work/wout"
	mkfifo "$work/fifo"
	"$work/on/pyon" "$work/work.py" split "$rounds" <"$work/fifo" >"$work/wout" &
	wp=$!
	exec 3>"$work/fifo"
	sleep 0.5 # started, waiting for its line
	/usr/bin/time -f '%U %S' -o "$work/perftime" perf record -q -F 100 "$@" -p "$wp" -o "$work/perf.data" >/dev/null 2>&1 3>&- &
	local pp=$!
	sleep 1 # attached
	c0=$(cpu_of "$wp")
	echo >&3
	until grep -q done "$work/wout"; do sleep 0.1; done
	w=$(awk -v a="$c0" -v b="$(cpu_of "$wp")" -v hz="$hz" 'BEGIN {print (b - a) / hz}')
	exec 3>&-
	wait "$wp" "$pp" || true
	rec=$(tail -1 "$work/perftime" | awk '{print $1 + $2}')
	/usr/bin/time -f '%U %S' -o "$work/reporttime" perf report -i "$work/perf.data" --stdio >/dev/null 2>&1
	rep=$(tail -1 "$work/reporttime" | awk '{print $1 + $2}')
	echo "$mode $rec $w $rep"
}

out=$work/results
for i in $(seq "$runs"); do
	window on "$work/on/pyon" >>"$out"
	window off "$work/off/pyoff" >>"$out"
	perfwin perf-fp -g >>"$out"
	perfwin perf-dwarf --call-graph dwarf >>"$out"
done
kill "$pe"; wait "$pe" 2>/dev/null || true; pe=

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
col() { awk -v m="$1" -v c="$2" '$1 == m {print $c}' "$out" | median; }
echo "$runs runs of work.py split $rounds under $python, medians"
printf '%-44s %14s %12s %10s %18s %18s\n' "profiler" "its CPU (s)" "work CPU (s)" "samples" "BPF ns/sample" "BPF ns/run"
for m in on off; do
	label="probe_exporter, Python walk ($m)"
	printf '%-44s %14s %12s %10s %18s %18s\n' "$label" "$(col $m 2)" "$(col $m 3)" "$(col $m 4)" "$(col $m 5)" "$(col $m 6)"
done
printf '%-44s %14s %12s %10s\n' "" "record (s)" "work CPU (s)" "report (s)"
for m in perf-fp perf-dwarf; do
	printf '%-44s %14s %12s %10s\n' "perf record -F 100 ($m)" "$(col $m 2)" "$(col $m 3)" "$(col $m 4)"
done
