#!/bin/bash
# Runs inside the kernel-matrix guest, in a chroot of the host's root (read
# only; /tmp, /run, /var/tmp and /root are tmpfs). Mounts what the tests
# need, records the kernel's features and runs the test binaries the host
# built, each writing its verbose output and exit code to $PE_RESULTS.
set -u
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
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

# A block device of the tests' own: null_blk from the kernel's package
# (writes are discarded, reads give zeros).
mods=${PE_CONFIG%/boot/*}/lib/modules/$(uname -r)/kernel
for m in fs/configfs/configfs drivers/block/null_blk/null_blk; do
	f=$(ls "$mods/$m.ko"* 2>/dev/null | head -n1)
	[ -n "$f" ] && insmod "$f" 2>/dev/null
done

# Attach types this kernel has: a test of one of these must pass, not skip.
cfg=$PE_CONFIG
has() { grep -q "^$1=y" "$cfg"; }
features=""
[ -e /sys/kernel/tracing/kprobe_events ] && features="$features kprobe kretprobe"
has CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS && has CONFIG_BPF_JIT && features="$features fentry fexit"
has CONFIG_FPROBE && features="$features kprobe.multi"
has CONFIG_UPROBES && grep -q ' bpf_uprobe_multi_link_attach$' /proc/kallsyms && features="$features uprobe.multi"
has CONFIG_BPF_LSM && grep -qw bpf /sys/kernel/security/lsm && features="$features lsm"
# systemtap: run.sh compiled TestKernelStap's modules for this kernel, or
# says why it did not.
st=$(dirname "$PE_BIN")/stap/$(uname -r)
if [ -d "$st/systemtap" ]; then
	features="$features stap"
	export PROBE_EXPORTER_STAP_PREBUILT=$st
elif [ -f "$st.skip" ]; then
	export PROBE_EXPORTER_STAP_SKIP="$(cat "$st.skip")"
fi
features=${features# }
echo "$features" >"$R/features"
echo "kernel-matrix: $(uname -r) has: $features" >/dev/console

export PROBE_EXPORTER_REQUIRE_ATTACH="$features"
export BPFTEST_CACHE=$PE_BPFCACHE BPFTEST_CACHED_ONLY=1
export PROBE_EXPORTER_TEST_BINARY=$PE_BIN/probe_exporter
# Each line of the test list: LABEL BINARY PACKAGE-DIR PATTERN [VAR=VALUE ...].
while read -r name bin dir run envs; do
	[ -z "$name" ] && continue
	echo "kernel-matrix: $name -test.run $run" >/dev/console
	(cd "$dir" && env $envs "$PE_BIN/$bin.test" -test.v -test.count=1 -test.timeout=15m -test.run "$run") >"$R/$name.out" 2>&1
	echo $? >"$R/$name.rc"
done <"$PE_TESTS"
echo ok >"$R/done"
