package testkit

// Compiling BPF C for tests against the running kernel.
//
// Objects are CO-RE: the loader relocates them against the BTF of the
// kernel they load on, so one object serves every kernel. That lets the
// kernel matrix (test/kernels) compile on the host and run under qemu,
// where clang would take minutes: with BPFTEST_CACHE=DIR set, CompileBPF
// keeps each object in DIR under a hash of its source and reuses it, and
// with BPFTEST_PREPARE=1 as well it only fills the cache and skips the
// test; with BPFTEST_CACHED_ONLY=1 a miss fails the test instead of
// compiling.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/clang"
)

// Environment variables of the object cache (test/kernels/run.sh and
// guest.sh set them).
const (
	CacheEnv      = "BPFTEST_CACHE"
	PrepareEnv    = "BPFTEST_PREPARE"
	CachedOnlyEnv = "BPFTEST_CACHED_ONLY"
	// ArchEnv names the Go architecture objects are compiled for
	// (default: the test binary's), so that the host prepares the cache
	// of the arm64 guest (test/kernels/arm64.sh): the key is the same
	// flags the guest's arm64 test binary computes.
	ArchEnv = "BPFTEST_ARCH"
)

// bpfArch is the architecture CompileBPF compiles for.
func bpfArch() string {
	if a := os.Getenv(ArchEnv); a != "" {
		return a
	}
	return runtime.GOARCH
}

// vmlinux is vmlinux.h of the running kernel, generated once per test
// binary: its text, kept in memory and written for each test that needs it.
var vmlinux struct {
	once sync.Once
	hdr  []byte
	err  error
}

// BPFIncludeDir returns a directory of the test's holding vmlinux.h
// generated from the running kernel's BTF (once per test binary). The test
// is skipped without bpftool or kernel BTF.
func BPFIncludeDir(t testing.TB) string {
	t.Helper()
	vmlinux.once.Do(func() {
		dir, err := os.MkdirTemp("", "testkit-vmlinux")
		if err != nil {
			vmlinux.err = err
			return
		}
		defer os.RemoveAll(dir)
		hdr := filepath.Join(dir, "vmlinux.h")
		if vmlinux.err = clang.VmlinuxH(context.Background(), "bpftool", "/sys/kernel/btf/vmlinux", hdr); vmlinux.err == nil {
			vmlinux.hdr, vmlinux.err = os.ReadFile(hdr)
		}
	})
	if vmlinux.err != nil {
		t.Skipf("generating vmlinux.h needs bpftool and kernel BTF: %v", vmlinux.err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vmlinux.h"), vmlinux.hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// CompileBPF compiles src (BPF C, which may include "vmlinux.h") into
// dir/name.bpf.o and returns its path. The test is skipped when clang is
// missing and the object is not cached.
func CompileBPF(t testing.TB, src, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name+".bpf.o")
	// What clang.Compile runs, for the cache key.
	arch := bpfArch()
	flags := append([]string{"-g", "-O2"}, clang.TargetFlagsFor(arch)...)
	cache := os.Getenv(CacheEnv)
	var cached string
	if cache != "" {
		sum := sha256.Sum256([]byte(strings.Join(flags, " ") + "\x00" + src))
		cached = filepath.Join(cache, hex.EncodeToString(sum[:16])+".bpf.o")
		if b, err := os.ReadFile(cached); err == nil {
			if os.Getenv(PrepareEnv) != "" {
				t.Skip("object cached; preparing only")
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return out
		}
		if os.Getenv(CachedOnlyEnv) != "" {
			t.Fatalf("object %s is not in %s=%s (%s is set): prepare the cache on the host first", cached, CacheEnv, cache, CachedOnlyEnv)
		}
	}
	cc, err := clang.Look("", "clang")
	if err != nil {
		t.Skip("clang is needed to compile BPF test programs")
	}
	inc := BPFIncludeDir(t)
	includes := []string{inc}
	if arch == "arm64" && runtime.GOARCH != "arm64" {
		addUserPtRegs(t, filepath.Join(inc, "vmlinux.h"))
		// The kernel's uapi headers for arm64 (asm/errno.h, which
		// libbpf's usdt.bpf.h reaches): Debian's cross headers
		// (linux-libc-dev-arm64-cross, with gcc-aarch64-linux-gnu).
		if _, err := os.Stat("/usr/aarch64-linux-gnu/include/asm"); err == nil {
			includes = append(includes, "/usr/aarch64-linux-gnu/include")
		}
	}
	cfile := filepath.Join(dir, name+".bpf.c")
	if err := os.WriteFile(cfile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if stderr, err := clang.CompileFor(context.Background(), arch, cc, cfile, out, includes, nil); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if cached != "" {
		if err := copyFile(out, cached); err != nil {
			t.Fatalf("caching object: %v", err)
		}
		if os.Getenv(PrepareEnv) != "" {
			t.Skip("object compiled and cached; preparing only")
		}
	}
	return out
}

// addUserPtRegs declares arm64's struct user_pt_regs (the ptrace ABI:
// x0..x30, sp, pc, pstate, which no kernel moves) at the end of a
// vmlinux.h generated from another architecture's kernel, so that
// libbpf's bpf_tracing.h and usdt.bpf.h compile for arm64 here (they cast
// the context to it) and the object loads in the arm64 guest.
func addUserPtRegs(t testing.TB, vmlinuxH string) {
	t.Helper()
	f, err := os.OpenFile(vmlinuxH, os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString("\nstruct user_pt_regs { __u64 regs[31]; __u64 sp; __u64 pc; __u64 pstate; };\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// copyFile copies src to dst (writeAtomic).
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeAtomic(dst, b)
}

// writeAtomic writes b to dst through a temporary file, so that
// concurrent test binaries never read a half-written object.
func writeAtomic(dst string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
