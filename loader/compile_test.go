package loader

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
)

// copyTree copies the regular files under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCompilerCacheElsewhere: a cache filled for a kernel's BTF serves
// from another path without clang or bpftool, with the same translation;
// a cache filled for other BTF is never used.
func TestCompilerCacheElsewhere(t *testing.T) {
	for _, tool := range []string{"clang", "bpftool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("filling the cache needs %s", tool)
		}
	}
	const vmlinux = "/sys/kernel/btf/vmlinux"
	if _, err := os.Stat(vmlinux); err != nil {
		t.Skip("the kernel has no BTF")
	}
	cfg := config.Config{Name: "getppid", Code: `#include <linux/sched.h>
BPF_HASH(calls, u32);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    calls.increment(pid);
    return 0;
}
`}
	ctx := context.Background()
	filled := &Compiler{CacheDir: t.TempDir(), BTF: vmlinux}
	want, err := filled.CompileAll(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(t.TempDir(), "elsewhere")
	copyTree(t, filled.CacheDir, moved)
	noTools := &Compiler{Clang: "/nonexistent/clang", Bpftool: "/nonexistent/bpftool", CacheDir: moved, BTF: vmlinux}
	got, err := noTools.CompileAll(ctx, cfg)
	if err != nil {
		t.Fatalf("the moved cache did not serve: %v", err)
	}
	if !bytes.Equal(got.Object, want.Object) {
		t.Error("the moved cache gave another object")
	}

	// The same code for another kernel's BTF misses: without bpftool
	// vmlinux.h cannot be made for it.
	data, err := os.ReadFile(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other-btf")
	os.WriteFile(other, append(data, 0), 0o600)
	noTools.BTF = other
	if _, err := noTools.CompileAll(ctx, cfg); err == nil || !strings.Contains(err.Error(), "bpftool") {
		t.Errorf("a cache of other BTF served: %v", err)
	}
}
