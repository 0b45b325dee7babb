#!/usr/bin/env bash
# Builds the probe_exporter container images with buildah from Debian's
# packages only (no registry is pulled from).
#
#   build.sh rootfs    the build context: build/image/rootfs
#   build.sh minimal   IMAGE:VERSION and IMAGE:latest, FROM scratch
#   build.sh full      IMAGE:VERSION-full and IMAGE:full, on a Debian base
#                      that mmdebstrap makes from Debian's packages
#
# Environment: IMAGE (localhost/probe_exporter), VERSION, REVISION, OUT
# (build/image), SUITE (bookworm), MIRROR (the host's Debian mirror).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
IMAGE=${IMAGE:-localhost/probe_exporter}
VERSION=${VERSION:-$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)}
REVISION=${REVISION:-$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)}
OUT=${OUT:-$root/build/image}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
FULL_PACKAGES=clang,llvm,libbpf-dev,bpftool,bpftrace,ca-certificates,pci.ids
export DEBIAN_FRONTEND=noninteractive

# need installs the Debian packages whose commands are missing.
need() {
	local missing=()
	for pair in "$@"; do
		command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "installing: ${missing[*]}"
		apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

# rootfs lays out the image's files: everything world-readable, nothing
# written outside /tmp, a passwd with nobody for --runas.user=nobody, the
# links named ebpf_exporter.
rootfs() {
	[ -f /usr/share/misc/pci.ids ] || { apt-get update -qq && apt-get install -y -qq pci.ids >/dev/null; }
	[ -f /etc/ssl/certs/ca-certificates.crt ] || { apt-get update -qq && apt-get install -y -qq ca-certificates >/dev/null; }
	make -s -C "$root" build VERSION="$VERSION" REVISION="$REVISION"
	local r=$OUT/rootfs
	rm -rf "$r"
	mkdir -p "$r"
	install -D -m 0755 "$root/probe_exporter" "$r/usr/bin/probe_exporter"
	# The drop-in for ebpf_exporter (docs/ebpf_exporter.md): a DaemonSet
	# whose command is ebpf_exporter (found on PATH) or /ebpf_exporter
	# (ebpf_exporter's own image) runs the binary under that name.
	ln -s probe_exporter "$r/usr/bin/ebpf_exporter"
	ln -s usr/bin/probe_exporter "$r/ebpf_exporter"
	# The full image copies /ebpf_exporter from a directory of its own:
	# COPY of a symlink named as the source copies its target, COPY of a
	# directory keeps the links inside.
	rm -rf "$OUT/top" && mkdir -p "$OUT/top" && ln -s usr/bin/probe_exporter "$OUT/top/ebpf_exporter"
	install -D -m 0644 /usr/share/misc/pci.ids "$r/usr/share/misc/pci.ids"
	install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
	printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$r/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
	chmod 0644 "$r/etc/passwd" "$r/etc/group"
	# Mount points: the runtime's /proc, /sys and /dev, the DaemonSet's
	# emptyDir /tmp and compiler cache, and ConfigMaps for configs and
	# scripts. Without a volume the cache is the image's: root's, 0700.
	mkdir -p "$r/proc" "$r/sys" "$r/dev" "$r/etc/probe_exporter/configs" "$r/etc/probe_exporter/scripts"
	install -d -m 1777 "$r/tmp"
	install -d -m 0755 "$r/var" "$r/var/cache"
	install -d -m 0700 "$r/var/cache/probe_exporter"
	echo "$r"
}

# annotations are the OCI image annotations, given as labels too.
annotations() {
	local created
	created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	for kv in \
		"org.opencontainers.image.title=probe_exporter" \
		"org.opencontainers.image.description=eBPF programs, userspace probes, scripts and profiles as Prometheus metrics" \
		"org.opencontainers.image.version=$VERSION" \
		"org.opencontainers.image.revision=$REVISION" \
		"org.opencontainers.image.created=$created" \
		"org.opencontainers.image.source=https://github.com/probe-exporter/probe_exporter"; do
		printf -- '--annotation\0%s\0--label\0%s\0' "$kv" "$kv"
	done
}

bud() {
	local target=$1 tag=$2
	shift 2
	local args=()
	while IFS= read -r -d '' a; do args+=("$a"); done < <(annotations)
	buildah bud --format oci --layers=false --target "$target" "${args[@]}" "$@" \
		-f "$root/deploy/container/Containerfile" -t "$IMAGE:$tag" "$OUT"
}

# base makes the full image's Debian base with mmdebstrap and imports it.
base() {
	local ref=localhost/probe_exporter-base:$SUITE
	if podman image exists "$ref"; then
		echo "$ref exists (podman rmi $ref to rebuild it)"
		return
	fi
	need mmdebstrap:mmdebstrap podman:podman
	mkdir -p "$OUT"
	mmdebstrap --variant=apt --include="$FULL_PACKAGES" \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		"$SUITE" "$OUT/base.tar" "$MIRROR"
	podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$OUT/base.tar" "$ref"
	rm -f "$OUT/base.tar"
}

case ${1:-minimal} in
rootfs)
	rootfs
	;;
minimal)
	need buildah:buildah podman:podman
	rootfs >/dev/null
	bud minimal "$VERSION"
	buildah tag "$IMAGE:$VERSION" "$IMAGE:latest"
	echo "built $IMAGE:$VERSION ($IMAGE:latest)"
	;;
full)
	need buildah:buildah podman:podman
	rootfs >/dev/null
	base
	bud full "$VERSION-full" --build-arg "FULL_BASE=localhost/probe_exporter-base:$SUITE"
	buildah tag "$IMAGE:$VERSION-full" "$IMAGE:full"
	echo "built $IMAGE:$VERSION-full ($IMAGE:full)"
	;;
*)
	echo "usage: $0 rootfs|minimal|full" >&2
	exit 2
	;;
esac
