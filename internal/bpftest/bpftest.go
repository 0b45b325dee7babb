// Package bpftest compiles BPF C for tests against the running kernel.
//
// Objects are CO-RE: the loader relocates them against the BTF of the
// kernel they load on, so one object serves every kernel. That lets the
// kernel matrix (test/kernels) compile on the host and run under qemu,
// where clang would take minutes: with BPFTEST_CACHE=DIR set, Compile keeps
// each object in DIR under a hash of its source and reuses it, and with
// BPFTEST_PREPARE=1 as well it only fills the cache and skips the test;
// with BPFTEST_CACHED_ONLY=1 a miss fails the test instead of compiling.
package bpftest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/clang"
)

// Environment variables of the object cache.
const (
	CacheEnv      = "BPFTEST_CACHE"
	PrepareEnv    = "BPFTEST_PREPARE"
	CachedOnlyEnv = "BPFTEST_CACHED_ONLY"
)

var (
	vmlinuxOnce sync.Once
	vmlinuxDir  string
	vmlinuxErr  error
)

// IncludeDir returns a directory holding vmlinux.h generated from the
// running kernel's BTF, generated once per test binary.
func IncludeDir(t testing.TB) string {
	t.Helper()
	vmlinuxOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bpftest-vmlinux")
		if err != nil {
			vmlinuxErr = err
			return
		}
		vmlinuxErr = clang.VmlinuxH(context.Background(), "bpftool", "/sys/kernel/btf/vmlinux", filepath.Join(dir, "vmlinux.h"))
		vmlinuxDir = dir
	})
	if vmlinuxErr != nil {
		t.Skipf("generating vmlinux.h needs bpftool and kernel BTF: %v", vmlinuxErr)
	}
	return vmlinuxDir
}

// Compile compiles src (BPF C) into dir/name.bpf.o and returns its path.
// The test is skipped when clang is missing and the object is not cached.
func Compile(t testing.TB, src, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name+".bpf.o")
	// What clang.Compile runs, for the cache key.
	flags := append([]string{"-g", "-O2"}, clang.TargetFlags()...)
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
	inc := IncludeDir(t)
	cfile := filepath.Join(dir, name+".bpf.c")
	if err := os.WriteFile(cfile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if stderr, err := clang.Compile(context.Background(), cc, cfile, out, []string{inc}, nil); err != nil {
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

// copyFile copies src to dst through a temporary file, so that concurrent
// test binaries never read a half-written object.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
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
