# probe_exporter build. The BPF objects the binary embeds are committed, so
# `make build` needs only Go; `make bpf` rebuilds every object with clang.
GO        ?= go
BINARY    ?= probe_exporter
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=main
TEST_FLAGS ?= -count=1 -timeout 20m
DEPS := clang llvm libbpf-dev bpftool bpftrace systemtap-sdt-dev gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross pci.ids prometheus util-linux linux-perf libcap2-bin prometheus-node-exporter-collectors chromium

.PHONY: all build release install bpf examples run test test-kernels fuzz deps vet fmt bench clean image image-full image-rootfs

all: build examples

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BINARY) ./cmd/probe_exporter

# The static binary for each architecture the committed BPF objects are
# built for, as build/probe_exporter-linux-GOARCH (`GOARCH=arm64 make build`
# builds one in place), and its release tarball in ebpf_exporter's and
# Prometheus' naming, build/probe_exporter-VERSION.linux-GOARCH.tar.gz: a
# top directory of that name holding the binary, the link ebpf_exporter ->
# probe_exporter (the drop-in, docs/ebpf_exporter.md), README.md and the
# docs/ pages it links to, LICENSE when there is one, and deploy/systemd's
# units and defaults under systemd/.
# Entries sorted, owned by root, dated by the last commit, gzip without a
# name or time: the same commit gives the same bytes.
RELEASE_ARCHES ?= amd64 arm64
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
SYSTEMD_FILES := $(wildcard deploy/systemd/*.service deploy/systemd/*.socket deploy/systemd/*.default)
DOC_FILES := $(wildcard docs/*.md docs/*.png)
release:
	@mkdir -p build
	@for a in $(RELEASE_ARCHES); do \
		echo "build/$(BINARY)-linux-$$a"; \
		GOOS=linux GOARCH=$$a CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o build/$(BINARY)-linux-$$a ./cmd/probe_exporter || exit 1; \
		d=$(BINARY)-$(VERSION).linux-$$a; \
		rm -rf build/$$d && mkdir -p build/$$d/systemd build/$$d/docs && \
		install -m 0755 build/$(BINARY)-linux-$$a build/$$d/$(BINARY) && \
		ln -s $(BINARY) build/$$d/ebpf_exporter && \
		install -m 0644 README.md $(wildcard LICENSE) build/$$d/ && \
		install -m 0644 $(DOC_FILES) build/$$d/docs/ && \
		install -m 0644 $(SYSTEMD_FILES) build/$$d/systemd/ && \
		chmod 0755 build/$$d build/$$d/systemd build/$$d/docs && \
		tar -C build --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$(SOURCE_DATE_EPOCH) \
			--format=gnu -cf build/$$d.tar $$d && \
		gzip -n -9 -f build/$$d.tar || exit 1; \
		rm -rf build/$$d; \
		echo "build/$$d.tar.gz"; \
	done

# Install the binary as $(PREFIX)/bin/probe_exporter and deploy/systemd's
# units into $(UNITDIR), /etc/systemd/system (the administrator's place,
# which a package's /usr/lib/systemd/system would not overwrite; a
# packager sets UNITDIR), their ExecStart naming the installed binary;
# /etc/default/probe_exporter only when absent. EBPF_EXPORTER=1 adds the
# drop-in: the link $(PREFIX)/bin/ebpf_exporter -> probe_exporter (in place
# of an ebpf_exporter binary there) and ebpf_exporter.service, kept when
# the node has one already (its ExecStart then must name the link),
# with /etc/default/ebpf_exporter when absent. DESTDIR is prepended to all.
PREFIX  ?= /usr/local
UNITDIR ?= /etc/systemd/system
EBPF_EXPORTER ?=
install:
	@test -x $(BINARY) || { echo "$(BINARY) is not built: run make build first (as your user; sudo's PATH may lack Go)"; exit 1; }
	install -D -m 0755 $(BINARY) $(DESTDIR)$(PREFIX)/bin/probe_exporter
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)/etc/default
	for f in probe_exporter.service probe_exporter.socket; do \
		sed 's|^ExecStart=/usr/local/bin/|ExecStart=$(PREFIX)/bin/|' deploy/systemd/$$f >$(DESTDIR)$(UNITDIR)/$$f && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$f || exit 1; \
	done
	@if [ -e $(DESTDIR)/etc/default/probe_exporter ]; then echo "kept $(DESTDIR)/etc/default/probe_exporter"; \
	else install -m 0644 deploy/systemd/probe_exporter.default $(DESTDIR)/etc/default/probe_exporter; fi
	@if [ -n "$(EBPF_EXPORTER)" ] && [ "$(EBPF_EXPORTER)" != 0 ]; then \
		echo "ln -sfn probe_exporter $(DESTDIR)$(PREFIX)/bin/ebpf_exporter"; \
		ln -sfn probe_exporter $(DESTDIR)$(PREFIX)/bin/ebpf_exporter || exit 1; \
		u=$(DESTDIR)$(UNITDIR)/ebpf_exporter.service; \
		if [ -e $$u ]; then \
			echo "kept $$u: $$(grep '^ExecStart=' $$u) (the drop-in is $(PREFIX)/bin/ebpf_exporter)"; \
		else \
			sed 's|^ExecStart=/usr/local/bin/|ExecStart=$(PREFIX)/bin/|' deploy/systemd/ebpf_exporter.service >$$u && chmod 0644 $$u || exit 1; \
			echo "installed $$u"; \
		fi; \
		if [ -e $(DESTDIR)/etc/default/ebpf_exporter ]; then echo "kept $(DESTDIR)/etc/default/ebpf_exporter"; \
		else install -m 0644 deploy/systemd/ebpf_exporter.default $(DESTDIR)/etc/default/ebpf_exporter; fi; \
	fi

# Regenerate the committed objects (defaults, profiler, targets, process exits).
bpf:
	$(MAKE) -C defaults
	@for d in profile targets procexit; do if [ -f $$d/Makefile ]; then $(MAKE) -C $$d || exit 1; fi; done

examples:
	@if command -v clang >/dev/null; then $(MAKE) -C examples; else echo "clang missing: skipping examples (make deps)"; fi

run: deps-run build
	./$(BINARY)

# deps installs what building and testing need, when missing (Debian, root).
deps:
	@missing=""; for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; apt-get update -qq && apt-get install -y -qq $$missing; \
	fi

deps-run:
	@command -v $(GO) >/dev/null || { echo "Go is needed to build: https://go.dev/dl/"; exit 1; }

test: deps examples
	@mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || true
	$(GO) test $(TEST_FLAGS) ./...
	cd deploy && $(GO) test $(TEST_FLAGS) ./...

# Boot Debian kernels under qemu (TCG, no KVM) with this machine's root
# shared read-only and run there the tests that need kprobes, fentry,
# kprobe.multi or BPF LSM (test/kernels/run.sh; KERNELS=... picks kernels),
# then Debian's arm64 kernel under qemu-system-aarch64 with the cross-built
# binaries (test/kernels/arm64.sh; ARM64_KERNELS= skips it).
#
# The two run at once (the guests are single- or two-threaded TCG): the
# packages both need are installed first, and arm64's output follows
# x86's.
KERNEL_DEPS := qemu-system-x86 qemu-system-arm busybox-static cpio xz-utils e2fsprogs gcc-aarch64-linux-gnu libc6-dev-arm64-cross
test-kernels: deps
	@missing=""; for p in $(KERNEL_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@log=$$(mktemp); setsid ./test/kernels/arm64.sh >$$log 2>&1 & arm=$$!; \
	trap 'kill -TERM -$$arm 2>/dev/null; rm -f $$log; exit 130' INT TERM; \
	./test/kernels/run.sh; x86=$$?; wait $$arm; a=$$?; cat $$log; rm -f $$log; \
	[ $$x86 -eq 0 ] && [ $$a -eq 0 ]

# Run every Go fuzz target briefly (FUZZTIME=2000x inputs each by default).
fuzz:
	./test/fuzz.sh

vet:
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

bench:
	./bench/run.sh

# Container images (buildah, from Debian's packages; see deploy/container).
IMAGE ?= localhost/probe_exporter
image:
	IMAGE=$(IMAGE) VERSION=$(VERSION) REVISION=$(REVISION) deploy/container/build.sh minimal
image-full:
	IMAGE=$(IMAGE) VERSION=$(VERSION) REVISION=$(REVISION) deploy/container/build.sh full
image-rootfs:
	VERSION=$(VERSION) REVISION=$(REVISION) deploy/container/build.sh rootfs

clean:
	rm -f $(BINARY)
	rm -rf build
	$(MAKE) -C examples clean || true
