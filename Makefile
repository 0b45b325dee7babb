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
DEPS := clang llvm libbpf-dev bpftool bpftrace systemtap-sdt-dev gcc pci.ids prometheus util-linux linux-perf libcap2-bin prometheus-node-exporter-collectors chromium

.PHONY: all build release bpf examples run test test-kernels fuzz deps vet fmt bench clean image image-full image-rootfs

all: build examples

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BINARY) ./cmd/probe_exporter

# The static binary for each architecture the committed BPF objects are
# built for, as build/probe_exporter-linux-GOARCH (`GOARCH=arm64 make build`
# builds one in place).
RELEASE_ARCHES ?= amd64 arm64
release:
	@mkdir -p build
	@for a in $(RELEASE_ARCHES); do \
		echo "build/$(BINARY)-linux-$$a"; \
		GOOS=linux GOARCH=$$a CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o build/$(BINARY)-linux-$$a ./cmd/probe_exporter || exit 1; \
	done

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
test-kernels: deps
	./test/kernels/run.sh
	./test/kernels/arm64.sh

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
