#!/usr/bin/env bash
# make test-kernels: boot Debian kernels under qemu (TCG: no KVM needed) with
# this machine's root shared read-only over 9p, and run there the tests that
# skip on this machine's kernel (kprobes, fentry, kprobe.multi, lsm, ...).
# Exits non-zero if a test failed, a guest did not finish, or an attach-type
# test skipped on a kernel that has the feature.
#
#   KERNELS        Debian packages (meta-packages are resolved), default
#                  "linux-image-amd64 linux-image-6.12-amd64"
#   KERNELS_CACHE  where kernels are downloaded and unpacked
#   KERNELS_OUT    results, initramfs and test binaries (not under /tmp,
#                  /run, /var/tmp or /root: the guest mounts tmpfs there)
#   TESTS_LIST     the guest's test list (default test/kernels/tests.list)
#   STAP_KERNELS   of KERNELS, those systemtap's scripts test runs on (default
#                  linux-image-amd64, Debian 12's 6.1; its systemtap 4.8
#                  builds no modules for 6.12, where the test skips saying
#                  so); "" runs it nowhere
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
KERNELS=${KERNELS:-"linux-image-amd64 linux-image-6.12-amd64"}
CACHE=${KERNELS_CACHE:-/var/cache/probe_exporter/kernels}
OUT=${KERNELS_OUT:-$CACHE/run}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-900}
export DEBIAN_FRONTEND=noninteractive

log() { echo "test-kernels: $*"; }

# What the host needs; the kernels themselves are unpacked, not installed.
need=""
for p in qemu-system-x86 busybox-static cpio xz-utils; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
	log "installing$need"
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# A fresh machine may have no package lists yet.
apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt-get update -qq

# kernel PKG: download and unpack a kernel package (a meta-package names
# its image), print its version.
kernel() {
	local pkg=$1 dep
	dep=$(apt-cache depends "$pkg" 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
	[ -n "$dep" ] && pkg=$dep
	case "$pkg" in linux-image-[0-9]*) ;; *)
		echo "test-kernels: $1 names no kernel image package (apt-cache depends $1)" >&2
		return 1
		;;
	esac
	local v=${pkg#linux-image-}
	if [ ! -f "$CACHE/$v/boot/vmlinuz-$v" ]; then
		# Called where set -e does not apply: every step is checked.
		rm -rf "$CACHE/$v.tmp" && mkdir -p "$CACHE/$v.tmp" || return 1
		(cd "$CACHE" && apt-get download -q -o APT::Sandbox::User=root "$pkg") >&2 || return 1
		dpkg-deb -x "$CACHE/${pkg}_"*.deb "$CACHE/$v.tmp" || return 1
		rm -f "$CACHE/${pkg}_"*.deb
		rm -rf "$CACHE/$v" && mv "$CACHE/$v.tmp" "$CACHE/$v" || return 1
	fi
	echo "$v"
}

# modfile V NAME: the module file of NAME in kernel V.
modfile() {
	find "$CACHE/$1/lib/modules/$1/kernel" \( -name "$2.ko" -o -name "$2.ko.xz" \) | head -n1
}

# moddeps V NAME: NAME's dependencies, then NAME, each once, for insmod.
moddeps() {
	local f deps d
	f=$(modfile "$1" "$2")
	[ -z "$f" ] && return 0 # built in
	case "$f" in *.xz) deps=$(xz -dc "$f" | tr '\0' '\n' | sed -n 's/^depends=//p') ;; *) deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p') ;; esac
	for d in ${deps//,/ }; do moddeps "$1" "${d//-/_}"; done
	echo "$2"
}

# initramfs V: busybox, /init and the modules mounting the 9p root needs.
initramfs() {
	local v=$1 d=$OUT/$1/initramfs m f
	rm -rf "$d" && mkdir -p "$d/bin" "$d/modules"
	cp /bin/busybox "$d/bin/busybox"
	cp "$REPO/test/kernels/init" "$d/init"
	: >"$d/modules.order"
	for m in $( (for x in virtio_pci 9pnet_virtio 9p; do moddeps "$v" $x; done) | awk '!seen[$0]++'); do
		f=$(modfile "$v" "$m")
		case "$f" in *.xz) xz -dc "$f" >"$d/modules/$m.ko" ;; *) cp "$f" "$d/modules/$m.ko" ;; esac
		echo "$m.ko" >>"$d/modules.order"
	done
	(cd "$d" && find . | cpio -o -H newc --quiet | gzip -1) >"$OUT/$v/initrd.img"
}

# btf V: kernel V's BTF (the .BTF section of the image, as the kernel
# gives it at /sys/kernel/btf/vmlinux), so that inline code is compiled on
# this machine for each guest into the compiler cache the guests read.
btf() {
	local img=$CACHE/$1/boot/vmlinuz-$1 out=$OUT/$1/btf m off
	[ -s "$out" ] && return 0
	mkdir -p "$OUT/$1"
	for m in 'xz -dcq:\xfd\x37\x7a\x58\x5a\x00' 'zstd -dcq:\x28\xb5\x2f\xfd' 'gzip -dcq:\x1f\x8b\x08'; do
		for off in $(LC_ALL=C grep -obUaP "${m#*:}" "$img" | cut -d: -f1); do
			tail -c +$((off + 1)) "$img" | ${m%%:*} >"$out.elf" 2>/dev/null || true
			if [ "$(head -c 4 "$out.elf" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] &&
				objcopy -O binary --only-section=.BTF "$out.elf" "$out.tmp" 2>/dev/null && [ -s "$out.tmp" ]; then
				mv "$out.tmp" "$out" && rm -f "$out.elf"
				return 0
			fi
		done
	done
	rm -f "$out.elf" "$out.tmp"
	echo "test-kernels: no BTF in $img" >&2
	return 1
}

# kallsyms V: kernel V's symbol table, read from /proc/kallsyms in a short
# boot without KASLR (so the addresses are the link-time ones a System.map
# has): systemtap resolves kprobe.function() probes, and so syscall.read,
# with it when it compiles for a kernel it does not run on. Debian ships
# only a placeholder System.map; without the table, stap falls back to the
# sys_enter tracepoint and compiles ~170 tracepoint-query modules first.
kallsyms() {
	local v=$1 out=$CACHE/$1/kallsyms res=$OUT/$1/kallsyms.share t0
	[ -s "$out" ] && return 0
	t0=$(date +%s)
	rm -rf "$res" && mkdir -p "$res" || return 1
	initramfs "$v" || return 1
	timeout --foreground -k 10 300 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 1 \
		-kernel "$CACHE/$v/boot/vmlinuz-$v" -initrd "$OUT/$v/initrd.img" \
		-append "console=ttyS0 panic=-1 quiet loglevel=3 nokaslr PE_KALLSYMS=1" \
		-virtfs local,path="$res",mount_tag=results,security_model=none \
		-display none -no-reboot -serial file:"$OUT/$v/kallsyms.console.log" -monitor none -nic none || true
	# System.map's form: the kernel's own symbols, no module ones; the
	# addresses must be there (not zeroed by kptr_restrict).
	if ! grep -Eq '^0*[1-9a-f][0-9a-f]* [Tt] _stext$' "$res/kallsyms" 2>/dev/null; then
		echo "test-kernels: no symbol table from $v's /proc/kallsyms (console: $OUT/$v/kallsyms.console.log)" >&2
		return 1
	fi
	awk 'NF == 3' "$res/kallsyms" >"$out.tmp" && mv "$out.tmp" "$out" && rm -rf "$res" || return 1
	log "symbol table of $v read in a $(($(date +%s) - t0))s boot"
}

start=$(date +%s)
mkdir -p "$OUT/bin" "$OUT/bpf"
versions=""
for k in $KERNELS; do
	v=$(kernel "$k") || exit 1
	versions="$versions $v"
done
log "kernels:$versions"

# systemtap modules for TestKernelStap, compiled here (stap compiling under
# TCG takes many minutes) with the exporter's module names
# (probe_exporter_PORT_NAME): stap -m leaves MODULE.ko in $OUT/stap/V/build,
# which the test puts in its scripts directory, and the exporter loads it
# with staprun (stap 4.8 caches no module under -m). stap's caches of
# tracepoint queries and autoconf results for the kernel, in SYSTEMTAP_DIR,
# are keyed on the kernel build tree, the runtime, gcc and stap: the same
# in the guest (this machine's root), so its stap hits them too. The
# kernel's symbol table comes from a short boot (kallsyms above).
STAP_KERNELS=${STAP_KERNELS-linux-image-amd64}
STAP_PORT=19922 # stapPort of TestKernelStap
STAP_SCRIPTS="examples/scripts/example.stp cmd/probe_exporter/testdata/stap/arrays-autostart.stp"
stap_versions=""
for k in $STAP_KERNELS; do
	v=$(kernel "$k") || exit 1
	case " $versions " in *" $v "*) stap_versions="$stap_versions $v" ;; esac
done

# stap_prebuild V: the modules of STAP_SCRIPTS for kernel V.
stap_prebuild() {
	local v=$1 d=$OUT/stap/$1 s m pids="" p
	rm -f "$OUT/stap/$v.skip"
	mkdir -p "$d/systemtap" "$d/build" || return 1
	if [ ! -e "$d/runtime.ok" ]; then
		rm -rf "$d/runtime" && cp -a /usr/share/systemtap/runtime "$d/runtime" || return 1
		# Linux 6.11 renamed task_work_cancel() to task_work_cancel_func()
		# and 6.1.y took that (Debian's 6.1.0-57 has it): systemtap 5.2
		# handles it, 4.8's runtime does not compile. Its copy here is
		# fixed for the kernel; stap reads it from SYSTEMTAP_RUNTIME.
		if grep -qw task_work_cancel_func "/lib/modules/$v/source/include/linux/task_work.h" &&
			! grep -q TASK_WORK_CANCEL_FUNC "$d/runtime/stp_task_work.c"; then
			sed -i -e 's/typeof(&task_work_cancel)/typeof(\&task_work_cancel_func)/' \
				-e 's/kallsyms_lookup_name("task_work_cancel")/kallsyms_lookup_name("task_work_cancel_func")/' \
				"$d/runtime/stp_task_work.c" || return 1
		fi
		touch "$d/runtime.ok"
	fi
	for s in $STAP_SCRIPTS; do
		m=probe_exporter_${STAP_PORT}_$(basename "$s" .stp | sed 's/[^A-Za-z0-9_]/_/g')
		# stap reads the symbol table from /boot/System.map-V: a
		# tmpfs /boot in a mount namespace of its own holds it.
		(cd "$d/build" && SYSTEMTAP_DIR=$d/systemtap SYSTEMTAP_RUNTIME=$d/runtime \
			unshare -m sh -c 'mount -t tmpfs tmpfs /boot && cp "$1" "/boot/System.map-$2" && shift 2 && exec "$@"' sh \
			"$CACHE/$v/kallsyms" "$v" stap -r "$v" -p4 -m "$m" "$REPO/$s") >"$d/$m.log" 2>&1 &
		pids="$pids $!:$m"
	done
	for p in $pids; do
		wait "${p%%:*}" || { echo "stap -r $v -p4 -m ${p#*:} failed:"; tail -n 20 "$d/${p#*:}.log"; return 1; }
	done
}
stap_pid=""
if [ -n "${stap_versions// /}" ]; then
	need=""
	for p in systemtap systemtap-runtime $(for v in $stap_versions; do echo "linux-headers-$v"; done); do
		dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
	done
	if [ -n "$need" ]; then
		log "installing$need"
		apt-get install -y -qq --no-install-recommends $need >/dev/null
	fi
	mkdir -p "$OUT/stap"
	(
		t0=$(date +%s)
		for v in $stap_versions; do kallsyms "$v" && stap_prebuild "$v" || exit 1; done
		log "systemtap modules for$stap_versions built in $(($(date +%s) - t0))s"
	) >"$OUT/stap/build.log" 2>&1 &
	stap_pid=$!
fi
for v in $versions; do
	case " $stap_versions " in *" $v "*) ;; *)
		mkdir -p "$OUT/stap" && rm -rf "$OUT/stap/$v"
		echo "systemtap scripts run only on the kernels STAP_KERNELS names (STAP_KERNELS=\"$STAP_KERNELS\":${stap_versions:- none}): Debian 12's systemtap 4.8 builds no modules for Linux 6.12 (see docs/kernels.md)" >"$OUT/stap/$v.skip"
		;;
	esac
done

# Test binaries and objects, built here: the guest has no time for clang.
make -s build examples
cp probe_exporter "$OUT/bin/probe_exporter"
go build -o "$OUT/bin/summarize" ./test/kernels/summarize
tests=$OUT/tests.list
sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "${TESTS_LIST:-test/kernels/tests.list}" >"$tests"
# One test binary per package the list names (BINARY is its base name).
for b in $(awk '{print $3}' "$tests" | sort -u); do
	go test -c -o "$OUT/bin/$(basename $b).test" "./$b"
done
# Fill the object cache and, for each kernel's BTF, the compiler cache of
# inline code: run each test list entry in prepare mode.
btfs=""
for v in $versions; do
	btf "$v" || exit 1
	btfs="$btfs $OUT/$v/btf"
done
export PROBE_EXPORTER_TEST_KERNEL_BTF="${btfs# }"
while read -r label bin dir run envs; do
	(cd "$dir" && PROBE_EXPORTER_TEST_BINARY=$OUT/bin/probe_exporter BPFTEST_CACHE=$OUT/bpf BPFTEST_PREPARE=1 "$OUT/bin/$bin.test" -test.count=1 -test.run "$run" >/dev/null) ||
		{ log "preparing $label failed"; exit 1; }
done < <(awk -v repo="$REPO" '{ $3 = repo "/" $3; print }' "$tests")
awk -v repo="$REPO" '{ $3 = repo "/" $3; print }' "$tests" >"$tests.abs"
if [ -n "$stap_pid" ] && ! wait "$stap_pid"; then
	cat "$OUT/stap/build.log"
	exit 1
fi
[ -n "$stap_pid" ] && cat "$OUT/stap/build.log"
log "built in $(($(date +%s) - start))s"

dirs=""
for v in $versions; do
	res=$OUT/$v/results
	rm -rf "$res" && mkdir -p "$res"
	initramfs "$v"
	log "booting $v (TCG)"
	t0=$(date +%s)
	rc=0
	# thread=single: one host thread runs both vCPUs. With multi-threaded
	# TCG, 6.12 once took an int3 Oops in syscall_trace_enter while a
	# tracepoint's jump label was patched on one vCPU and run on the other
	# (cross-modifying code); single-threaded it is no slower here.
	timeout --foreground -k 10 "$GUEST_TIMEOUT" qemu-system-x86_64 -accel tcg,thread=single -cpu max -m 2048 -smp 2 \
		-kernel "$CACHE/$v/boot/vmlinuz-$v" -initrd "$OUT/$v/initrd.img" \
		-append "console=ttyS0 panic=-1 quiet loglevel=3 PE_RESULTS=$res PE_GUEST=$REPO/test/kernels/guest.sh PE_CONFIG=$CACHE/$v/boot/config-$v PE_BIN=$OUT/bin PE_BPFCACHE=$OUT/bpf PE_TESTS=$tests.abs" \
		-virtfs local,path=/,mount_tag=hostroot,readonly=on,security_model=none,multidevs=remap \
		-virtfs local,path="$res",mount_tag=results,security_model=none \
		-display none -no-reboot -serial file:"$OUT/$v/console.log" -monitor none -nic none || rc=$?
	log "$v: guest ran $(($(date +%s) - t0))s (qemu exit $rc); console: $OUT/$v/console.log"
	echo "$(($(date +%s) - t0))" >"$res/seconds"
	dirs="$dirs $res"
done
for res in $dirs; do
	for f in "$res"/*.out; do
		[ -e "$f" ] && go tool test2json -p "$(basename "$f" .out)" <"$f" >"${f%.out}.json"
	done
done
log "total $(($(date +%s) - start))s"
if ! "$OUT/bin/summarize" $dirs; then
	for v in $versions; do
		echo "--- last lines of $v's console:"
		tail -n 30 "$OUT/$v/console.log"
	done
	exit 1
fi
