// Package bpftest compiles BPF C for tests against the running kernel.
package bpftest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
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
		out, err := exec.Command("bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c").Output()
		if err != nil {
			vmlinuxErr = err
			return
		}
		vmlinuxErr = os.WriteFile(filepath.Join(dir, "vmlinux.h"), out, 0o644)
		vmlinuxDir = dir
	})
	if vmlinuxErr != nil {
		t.Skipf("generating vmlinux.h needs bpftool and kernel BTF: %v", vmlinuxErr)
	}
	return vmlinuxDir
}

// Compile compiles src (BPF C) into dir/name.bpf.o and returns its path.
// The test is skipped when clang is missing.
func Compile(t testing.TB, src, dir, name string) string {
	t.Helper()
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang is needed to compile BPF test programs")
	}
	inc := IncludeDir(t)
	cfile := filepath.Join(dir, name+".bpf.c")
	if err := os.WriteFile(cfile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	arch := "x86"
	if runtime.GOARCH == "arm64" {
		arch = "arm64"
	}
	out := filepath.Join(dir, name+".bpf.o")
	cmd := exec.Command("clang", "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_"+arch, "-I", inc, "-c", cfile, "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("clang: %v\n%s", err, b)
	}
	return out
}
