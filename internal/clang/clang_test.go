package clang

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
)

const prog = `#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

SEC("tracepoint/syscalls/sys_enter_getpid")
int count(void *ctx) {
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(t, pid) > 0;
}
char LICENSE[] SEC("license") = "GPL";
`

// TestCompile generates vmlinux.h from the running kernel and compiles a
// CO-RE program reading a kernel struct with it.
func TestCompile(t *testing.T) {
	cc, err := Look("", "clang")
	if err != nil {
		t.Skip(err)
	}
	bpftool, err := Look("", "bpftool")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	hdr := filepath.Join(dir, "inc", "vmlinux.h")
	ctx := context.Background()
	if err := VmlinuxH(ctx, bpftool, "/sys/kernel/btf/vmlinux", hdr); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(hdr); err != nil || !strings.Contains(string(b), "struct task_struct {") {
		t.Fatalf("vmlinux.h has no task_struct: %v", err)
	}
	src := filepath.Join(dir, "p.bpf.c")
	if err := os.WriteFile(src, []byte(prog), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "p.bpf.o")
	if stderr, err := Compile(ctx, cc, src, out, []string{filepath.Dir(hdr)}, []string{"-Wall"}); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	spec, err := ebpf.LoadCollectionSpec(out)
	if err != nil {
		t.Fatal(err)
	}
	if p := spec.Programs["count"]; p == nil || p.SectionName != "tracepoint/syscalls/sys_enter_getpid" {
		t.Fatalf("object holds %v", spec.Programs)
	}

	if err := os.WriteFile(src, []byte("int f(void) { return undeclared; }"), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr, err := Compile(ctx, cc, src, out, nil, nil)
	if err == nil || !strings.Contains(stderr, "undeclared") {
		t.Errorf("broken C: %v, stderr %q", err, stderr)
	}
	if err := VmlinuxH(ctx, bpftool, filepath.Join(dir, "no-btf"), filepath.Join(dir, "x.h")); err == nil || !strings.Contains(err.Error(), "bpftool btf dump") {
		t.Errorf("missing BTF: %v", err)
	}
	if _, err := Look("", "no-such-tool-here"); err == nil || !strings.Contains(err.Error(), "no-such-tool-here not found") {
		t.Errorf("Look: %v", err)
	}
}

// TestVmlinuxHPlantedNames: names planted where vmlinux.h is written (the
// header itself, the temporary name older versions used) are replaced or
// left alone, never written through: a root-only file they point to stays
// as it was, and the header is whole.
func TestVmlinuxHPlantedNames(t *testing.T) {
	bpftool, err := Look("", "bpftool")
	if err != nil {
		t.Skip(err)
	}
	const btf = "/sys/kernel/btf/vmlinux"
	if _, err := os.Stat(btf); err != nil {
		t.Skip("the kernel has no BTF")
	}
	for _, c := range []struct {
		name  string
		plant func(dir, hdr, secret string) error
	}{
		{"nothing", func(dir, hdr, secret string) error { return nil }},
		{"symlink at the old temporary name", func(dir, hdr, secret string) error { return os.Symlink(secret, hdr+".tmp") }},
		{"symlink at the header", func(dir, hdr, secret string) error { return os.Symlink(secret, hdr) }},
		{"dangling symlink at the header", func(dir, hdr, secret string) error {
			return os.Symlink(filepath.Join(dir, "made-through"), hdr)
		}},
		{"FIFO at the old temporary name", func(dir, hdr, secret string) error { return syscall.Mkfifo(hdr+".tmp", 0o666) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			secret := filepath.Join(dir, "secret")
			if err := os.WriteFile(secret, []byte("secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			hdr := filepath.Join(dir, "vmlinux.h")
			if err := c.plant(dir, hdr, secret); err != nil {
				t.Fatal(err)
			}
			if err := VmlinuxH(context.Background(), bpftool, btf, hdr); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(secret); err != nil || string(b) != "secret\n" {
				t.Errorf("the secret file became %.40q (%v)", b, err)
			}
			if _, err := os.Lstat(filepath.Join(dir, "made-through")); err == nil {
				t.Error("a file was made through a dangling symlink")
			}
			fi, err := os.Lstat(hdr)
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
				t.Fatalf("vmlinux.h is %v (%v)", fi, err)
			}
			if b, _ := os.ReadFile(hdr); !strings.Contains(string(b), "struct task_struct {") {
				t.Error("vmlinux.h has no task_struct")
			}
		})
	}
}
