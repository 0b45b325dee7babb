# Runs inside the arm64 guest (busybox sh; test/kernels/init-arm64): mounts
# what the tests need, records the kernel's features and runs the arm64
# test binaries, each writing its verbose output and exit code to
# $PE_RESULTS, as guest.sh does on x86.
export HOME=/root TMPDIR=/tmp
R=$PE_RESULTS
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t securityfs securityfs /sys/kernel/security
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ip link set lo up 2>/dev/null
uname -r >"$R/uname"
echo "$(uname -m)" >"$R/machine"

# Attach types this kernel has: a test of one of these must pass, not skip.
cfg=/host$PE_CONFIG
has() { grep -q "^$1=y" "$cfg"; }
features=""
[ -e /sys/kernel/tracing/kprobe_events ] && features="$features kprobe kretprobe"
# arm64's BPF trampolines (fentry, fexit, lsm) attach through ftrace
# direct calls, which arm64 has from Linux 6.4 on: Debian's 6.1 refuses
# them ("create raw tracepoint: not supported"), and they skip there.
trampoline=""
has CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS && has CONFIG_BPF_JIT && trampoline=1
[ -n "$trampoline" ] && features="$features fentry fexit"
has CONFIG_FPROBE && features="$features kprobe.multi"
has CONFIG_UPROBES && grep -q ' bpf_uprobe_multi_link_attach$' /proc/kallsyms && features="$features uprobe.multi"
[ -n "$trampoline" ] && has CONFIG_BPF_LSM && grep -qw bpf /sys/kernel/security/lsm && features="$features lsm"
features=${features# }
echo "$features" >"$R/features"
echo "kernel-matrix: $(uname -r) has: $features" >/dev/console

export PROBE_EXPORTER_REQUIRE_ATTACH="$features"
export BPFTEST_CACHE=$PE_BPFCACHE BPFTEST_CACHED_ONLY=1
export PROBE_EXPORTER_TEST_BINARY=$PE_BIN/probe_exporter
while read -r name bin dir run envs; do
	[ -z "$name" ] && continue
	echo "kernel-matrix: $name -test.run $run" >/dev/console
	(cd "$dir" && env $envs "$PE_BIN/$bin.test" -test.v -test.count=1 -test.timeout=15m -test.run "$run") >"$R/$name.out" 2>&1
	echo $? >"$R/$name.rc"
done <"$PE_TESTS"
echo ok >"$R/done"
