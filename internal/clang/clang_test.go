package clang

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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
