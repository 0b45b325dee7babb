#!/usr/bin/env bash
# The arm64 guest of make test-kernels: Debian's arm64 kernel booted under
# qemu-system-aarch64 (TCG, -cpu max), with an arm64 userland in its
# initramfs (static busybox, Debian's arm64 libc6 and dash), the static
# exporter and the Go test binaries cross-built here, and the BPF objects
# of the tests compiled here for arm64 (BPFTEST_ARCH).
#
#   ARM64_KERNELS  Debian arm64 packages (meta-packages are resolved),
#                  default "linux-image-arm64 linux-image-6.12-arm64" (Debian 12's 6.1 and
#                  bookworm-security's 6.12); "" skips
#   KERNELS_CACHE, KERNELS_OUT, GUEST_TIMEOUT as for run.sh
#   ARM64_TESTS_LIST  the guest's test list (test/kernels/tests-arm64.list)
#
# The arm64 packages are downloaded with an apt state of their own (arm64
# lists under KERNELS_CACHE/arm64-apt): the host's dpkg never learns the
# architecture, apt-get download only fetches and nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
KERNELS=${ARM64_KERNELS-"linux-image-arm64 linux-image-6.12-arm64"}
CACHE=${KERNELS_CACHE:-/var/cache/probe_exporter/kernels}
OUT=${KERNELS_OUT:-$CACHE/run}/arm64
GUEST_TIMEOUT=${GUEST_TIMEOUT:-900}
export DEBIAN_FRONTEND=noninteractive
log() { echo "test-kernels arm64: $*"; }
[ -z "${KERNELS// /}" ] && { log "ARM64_KERNELS is empty: skipped"; exit 0; }

need=""
for p in qemu-system-arm cpio xz-utils gcc-aarch64-linux-gnu libc6-dev-arm64-cross e2fsprogs; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
	log "installing$need"
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# One run at a time: a second would rebuild the initramfs, disk and test
# binaries under the first one's guest.
mkdir -p "$CACHE"
exec 9>"$CACHE/arm64.lock"
flock -n 9 || { log "another arm64.sh is running (lock $CACHE/arm64.lock)"; exit 1; }

A=$CACHE/arm64-apt
mkdir -p "$A/lists/partial" "$A/archives/partial" "$A/debs"
[ -e "$A/status" ] || : >"$A/status"
APT=(-o APT::Architecture=arm64 -o APT::Architectures=arm64 -o "Dir::State::Lists=$A/lists"
	-o "Dir::State::status=$A/status" -o "Dir::Cache=$A" -o APT::Sandbox::User=root -o Debug::NoLocking=1)
# Lists older than a day are refreshed (a kernel update removes the old
# image from the archive).
if [ -z "$(find "$A/lists" -maxdepth 1 -name '*_Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
	apt-get "${APT[@]}" update -qq
fi

# fetch PKG DIR: download arm64 package PKG and unpack it into DIR (once).
fetch() {
	local pkg=$1 dir=$2
	[ -e "$dir/.ok" ] && return 0
	rm -rf "$dir" "$A/debs/${pkg}_"*.deb && mkdir -p "$dir" || return 1
	(cd "$A/debs" && apt-get "${APT[@]}" download -q "$pkg") >&2 || return 1
	dpkg-deb -x "$A/debs/${pkg}_"*.deb "$dir" && rm -f "$A/debs/${pkg}_"*.deb && touch "$dir/.ok"
}

start=$(date +%s)
versions=""
for k in $KERNELS; do
	pkg=$k
	dep=$(apt-cache "${APT[@]}" depends "$pkg" 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
	[ -n "$dep" ] && pkg=$dep
	v=${pkg#linux-image-}
	fetch "$pkg" "$CACHE/$v"
	versions="$versions $v"
done
U=$CACHE/arm64-userland
for p in busybox-static libc6 dash; do fetch "$p" "$U/$p"; done
log "kernels:$versions"

# Cross-built binaries (static, CGO off) and the arm64 objects of the tests.
mkdir -p "$OUT/bin" "$OUT/bpf"
GOARCH=arm64 make -s build BINARY="$OUT/bin/probe_exporter"
# The host's binary for the prepare runs, apart from the repository's
# (run.sh may be running that one meanwhile).
make -s build BINARY="$OUT/bin/probe_exporter.host"
tests=$OUT/tests.list
sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "${ARM64_TESTS_LIST:-test/kernels/tests-arm64.list}" |
	awk -v repo="$REPO" '{ $3 = repo "/" $3; print }' >"$tests"
# One arm64 test binary per package the list names (BINARY is its base name).
for b in $(awk '{print $3}' "$tests" | sort -u); do
	GOARCH=arm64 CGO_ENABLED=0 go test -c -o "$OUT/bin/$(basename $b).test" "./${b#$REPO/}"
done
while read -r label bin dir run envs; do
	go test -c -o "$OUT/bin/$bin.host.test" "./${dir#$REPO/}"
	(cd "$dir" && PROBE_EXPORTER_TEST_BINARY=$OUT/bin/probe_exporter.host BPFTEST_ARCH=arm64 BPFTEST_CACHE=$OUT/bpf BPFTEST_PREPARE=1 "$OUT/bin/$bin.host.test" -test.count=1 -test.run "$run" >/dev/null) ||
		{ log "preparing $label failed"; exit 1; }
done <"$tests"
log "built in $(($(date +%s) - start))s"

# modfile V NAME: the module file of NAME in kernel V.
modfile() {
	find "$CACHE/$1/lib/modules/$1/kernel" \( -name "$2.ko" -o -name "$2.ko.xz" \) | head -n1
}
moddeps() {
	local f deps d
	f=$(modfile "$1" "$2")
	[ -z "$f" ] && return 0
	case "$f" in *.xz) deps=$(xz -dc "$f" | tr '\0' '\n' | sed -n 's/^depends=//p') ;; *) deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p') ;; esac
	for d in ${deps//,/ }; do moddeps "$1" "${d//-/_}"; done
	echo "$2"
}

dirs=""
for v in $versions; do
	res=$OUT/$v/results d=$OUT/$v/initramfs
	rm -rf "$res" "$d" && mkdir -p "$res" "$d/bin" "$d/modules" "$d/lib"
	cp "$U/busybox-static/bin/busybox" "$d/bin/busybox"
	cp -a "$U/libc6/lib/." "$d/lib/" 2>/dev/null || true
	cp -a "$U/libc6/usr" "$d/"
	cp "$U/dash/bin/dash" "$d/bin/dash" && ln -s dash "$d/bin/sh"
	install -m 0755 "$REPO/test/kernels/init-arm64" "$d/init"
	# The kernel's config where libbpf-style programs look for it (the
	# __kconfig externs of usdt.bpf.h), as on an installed system.
	mkdir -p "$d/boot" && cp "$CACHE/$v/boot/config-$v" "$d/boot/"
	: >"$d/modules.order"
	for m in $( (for x in virtio_pci 9pnet_virtio 9p virtio_blk crc32c_generic ext4 overlay; do moddeps "$v" $x; done) | awk '!seen[$0]++'); do
		f=$(modfile "$v" "$m")
		case "$f" in *.xz) xz -dc "$f" >"$d/modules/$m.ko" ;; *) cp "$f" "$d/modules/$m.ko" ;; esac
		echo "$m.ko" >>"$d/modules.order"
	done
	(cd "$d" && find . | cpio -o -H newc --quiet | gzip -1) >"$OUT/$v/initrd.img"
	# A disk of the guest's own under the repository's writable layer, so
	# that tests writing there (TestDefaults' block IO) make real IO.
	rm -f "$OUT/$v/scratch.img" && truncate -s 256M "$OUT/$v/scratch.img" && mkfs.ext4 -q -F "$OUT/$v/scratch.img"
	log "booting $v (qemu-system-aarch64, TCG)"
	t0=$(date +%s)
	rc=0
	timeout --foreground -k 10 "$GUEST_TIMEOUT" qemu-system-aarch64 -machine virt -accel tcg -cpu max -m 2048 -smp 2 \
		-kernel "$CACHE/$v/boot/vmlinuz-$v" -initrd "$OUT/$v/initrd.img" \
		-append "console=ttyAMA0 panic=-1 quiet loglevel=3 PE_REPO=$REPO PE_OUT=$OUT PE_RESULTS=$res PE_GUEST=$REPO/test/kernels/guest-arm64.sh PE_CONFIG=$CACHE/$v/boot/config-$v PE_BIN=$OUT/bin PE_BPFCACHE=$OUT/bpf PE_TESTS=$tests" \
		-virtfs local,path=/,mount_tag=hostroot,readonly=on,security_model=none,multidevs=remap \
		-virtfs local,path="$res",mount_tag=results,security_model=none \
		-drive file="$OUT/$v/scratch.img",if=virtio,format=raw \
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
go build -o "$OUT/bin/summarize" ./test/kernels/summarize
if ! "$OUT/bin/summarize" $dirs; then
	for v in $versions; do
		echo "--- last lines of $v's console:"
		tail -n 30 "$OUT/$v/console.log"
	done
	exit 1
fi
