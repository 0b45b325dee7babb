# Shared rules for building BPF objects: NAME.bpf.o from $(SRCDIR)/NAME.bpf.c
# with clang against a vmlinux.h generated from the running kernel's BTF.
# Include it after setting SRCDIR (default: bpf).
#
# An object is built for one architecture, BPF_ARCH (x86 or arm64; the
# host's by default), which sets __TARGET_ARCH_ for libbpf's bpf_tracing.h
# and include/regs.bpf.h. Objects that touch no registers (tracepoints,
# raw_tp, tp_btf, CO-RE reads) are the same for both and committed once;
# a directory whose program reads registers sets PER_ARCH = 1 and gets
# NAME_x86.bpf.o and NAME_arm64.bpf.o, and its Go package embeds the one of
# the GOARCH it is built for.
CLANG    ?= clang
SRCDIR   ?= bpf
BPF_ARCH ?= $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
INC      := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
SRC      := $(wildcard $(SRCDIR)/*.bpf.c)
CFLAGS   := -g -O2 -Wall -target bpf -I$(INC)
HDRS     := $(INC)/vmlinux.h $(INC)/maps.bpf.h $(INC)/events.bpf.h $(INC)/regs.bpf.h $(wildcard $(SRCDIR)/*.h)

ifeq ($(PER_ARCH),1)
OBJ := $(foreach a,x86 arm64,$(patsubst $(SRCDIR)/%.bpf.c,%_$(a).bpf.o,$(SRC)))
else
OBJ := $(patsubst $(SRCDIR)/%.bpf.c,%.bpf.o,$(SRC))
endif

all: $(OBJ)

$(INC)/vmlinux.h:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

%.bpf.o: $(SRCDIR)/%.bpf.c $(HDRS)
	$(CLANG) $(CFLAGS) -D__TARGET_ARCH_$(BPF_ARCH) -c $< -o $@
	llvm-strip --strip-debug $@ 2>/dev/null || true

%_x86.bpf.o: $(SRCDIR)/%.bpf.c $(HDRS)
	$(CLANG) $(CFLAGS) -D__TARGET_ARCH_x86 -c $< -o $@
	llvm-strip --strip-debug $@ 2>/dev/null || true

%_arm64.bpf.o: $(SRCDIR)/%.bpf.c $(HDRS)
	$(CLANG) $(CFLAGS) -D__TARGET_ARCH_arm64 -c $< -o $@
	llvm-strip --strip-debug $@ 2>/dev/null || true

clean:
	rm -f $(OBJ)

.PHONY: all clean
