# Shared rules for building BPF objects: NAME.bpf.o from $(SRCDIR)/NAME.bpf.c
# with clang against a vmlinux.h generated from the running kernel's BTF.
# Include it after setting SRCDIR (default: bpf).
CLANG  ?= clang
SRCDIR ?= bpf
ARCH   := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
INC    := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
SRC    := $(wildcard $(SRCDIR)/*.bpf.c)
OBJ    := $(patsubst $(SRCDIR)/%.bpf.c,%.bpf.o,$(SRC))
CFLAGS := -g -O2 -Wall -target bpf -D__TARGET_ARCH_$(ARCH) -I$(INC)

all: $(OBJ)

$(INC)/vmlinux.h:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

%.bpf.o: $(SRCDIR)/%.bpf.c $(INC)/vmlinux.h $(INC)/maps.bpf.h $(INC)/events.bpf.h
	$(CLANG) $(CFLAGS) -c $< -o $@
	llvm-strip --strip-debug $@ 2>/dev/null || true

clean:
	rm -f $(OBJ)

.PHONY: all clean
