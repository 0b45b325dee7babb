package loader

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// coreProg reads the current task's tgid with a CO-RE relocation and
// counts whether it matches bpf_get_current_pid_tgid (ok) or not (bad).
const coreProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, u64);
} core_reads SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_getppid")
int core(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	u32 tgid = BPF_CORE_READ(t, tgid);
	u32 k = tgid == (u32)(bpf_get_current_pid_tgid() >> 32) ? 0 : 1;
	u64 *v = bpf_map_lookup_elem(&core_reads, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
`

// TestKernelTypes loads a CO-RE program against BTF from a file, as
// --btf.path does for kernels without /sys/kernel/btf/vmlinux: a copy of
// this kernel's BTF relocates correctly, BTF lacking task_struct fails.
func TestKernelTypes(t *testing.T) {
	dir := t.TempDir()
	obj := testkit.CompileBPF(t, coreProg, dir, "core")
	vmlinux, err := os.ReadFile("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Skipf("kernel BTF: %v", err)
	}
	copied := filepath.Join(dir, "vmlinux.btf")
	if err := os.WriteFile(copied, vmlinux, 0o644); err != nil {
		t.Fatal(err)
	}
	// The program's own object has BTF, but no kernel types.
	other := testkit.CompileBPF(t, strings.Replace(attachProg, "%s", "tracepoint/syscalls/sys_enter_getppid", 1), dir, "other")

	load := func(t *testing.T, path string) *Object {
		spec, err := btf.LoadSpec(path)
		if err != nil {
			t.Fatal(err)
		}
		o := Load(context.Background(), config.Config{Name: "core", BPFPath: obj}, Options{KernelTypes: spec})
		t.Cleanup(func() { o.Close() })
		return o
	}
	t.Run("copy of the kernel's BTF", func(t *testing.T) {
		o := load(t, copied)
		if errs := o.Errors(); len(errs) > 0 {
			t.Fatal(errs)
		}
		for range 100 {
			unix.Getppid()
		}
		var ok, bad uint64
		if err := o.Map("core_reads").Lookup(uint32(0), &ok); err != nil {
			t.Fatal(err)
		}
		if err := o.Map("core_reads").Lookup(uint32(1), &bad); err != nil {
			t.Fatal(err)
		}
		if ok < 100 || bad != 0 {
			t.Fatalf("CO-RE reads of tgid: %d right, %d wrong; want >= 100 and 0", ok, bad)
		}
	})
	t.Run("BTF without the kernel's types", func(t *testing.T) {
		o := load(t, other)
		if o.Programs[0].Attached() {
			t.Fatal("a program relocated against BTF lacking task_struct attached")
		}
		errs := o.Errors()
		if len(errs) == 0 {
			t.Fatal("no error")
		}
		if p := o.Programs[0].Err; p == nil || !strings.Contains(p.Error(), "CO-RE") {
			t.Errorf("program error %v should name the CO-RE relocation", p)
		}
	})
}
