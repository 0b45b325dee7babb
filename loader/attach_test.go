package loader

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// attachProg is a program that counts its runs in "runs", under a section
// given by the test.
const attachProg = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} runs SEC(".maps");
SEC("%s")
int prog(void *ctx)
{
	u32 zero = 0;
	u64 *v = bpf_map_lookup_elem(&runs, &zero);
	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
`

// TestAttachTypes loads and attaches a program of every attach type the
// loader knows on this kernel, makes it fire and reads its counter. Types
// the kernel refuses (kprobes, fentry here) skip with the kernel's reason.
func TestAttachTypes(t *testing.T) {
	for _, tc := range []struct {
		sec string
		// fire makes the program run.
		fire func(t *testing.T)
		// optional marks attach types kernels may lack.
		optional bool
	}{
		{sec: "tracepoint/syscalls/sys_enter_getppid", fire: runTrue},
		{sec: "tp/sched/sched_process_exec", fire: runTrue},
		{sec: "raw_tp/sys_enter", fire: runTrue},
		{sec: "raw_tracepoint/sched_process_exec", fire: runTrue},
		{sec: "tp_btf/sched_process_exec", fire: runTrue},
		{sec: "perf_event/type=1,config=0,frequency=1000", fire: spin},
		{sec: "uprobe/libc.so.6:getppid", fire: runTrue},
		{sec: "uretprobe/libc.so.6:getppid", fire: runTrue},
		{sec: "kprobe/do_nanosleep", fire: sleepShort, optional: true},
		{sec: "kretprobe/do_nanosleep", fire: sleepShort, optional: true},
		// The syscall wrapper of this architecture (__x64_sys_getppid,
		// __arm64_sys_getppid), through a kprobe.
		{sec: "ksyscall/getppid", fire: runTrue, optional: true},
		{sec: "kretsyscall/getppid", fire: runTrue, optional: true},
		{sec: "fentry/do_nanosleep", fire: sleepShort, optional: true},
		{sec: "fexit/do_nanosleep", fire: sleepShort, optional: true},
		{sec: "kprobe.multi/do_nanosleep", fire: sleepShort, optional: true},
		{sec: "kretprobe.multi/do_nanosle?p", fire: sleepShort, optional: true},
		{sec: "uprobe.multi/libc.so.6:getppid", fire: runTrue, optional: true},
		{sec: "uretprobe.multi/libc.so.6:getpp*", fire: runTrue, optional: true},
		{sec: "lsm/file_open", fire: runTrue, optional: true},
	} {
		t.Run(strings.ReplaceAll(tc.sec, "/", "_"), func(t *testing.T) {
			dir := t.TempDir()
			src := strings.Replace(attachProg, "%s", tc.sec, 1)
			obj := testkit.CompileBPF(t, src, dir, "p")
			o := Load(context.Background(), config.Config{Name: "p", Path: dir + "/p.yaml", BPFPath: obj}, Options{})
			defer o.Close()
			if errs := o.Errors(); len(errs) > 0 {
				if tc.optional && !requiredAttach(tc.sec) {
					reason := errs[len(errs)-1]
					if p := o.Programs; len(p) == 1 && p[0].Err != nil {
						reason = p[0].Err
					}
					t.Skipf("this kernel cannot attach %s: %v", tc.sec, reason)
				}
				t.Fatal(errs)
			}
			if !o.Programs[0].Attached() {
				t.Fatal("not attached")
			}
			tc.fire(t)
			var runs uint64
			if err := o.Map("runs").Lookup(uint32(0), &runs); err != nil {
				t.Fatal(err)
			}
			if runs == 0 {
				t.Fatalf("%s attached but never ran", tc.sec)
			}
		})
	}
}

// RequireAttachEnv lists attach types (kprobe kretprobe fentry fexit
// kprobe.multi uprobe.multi lsm) the kernel is known to have, as the kernel
// matrix (test/kernels) sets it: their tests then fail instead of skipping.
const RequireAttachEnv = "PROBE_EXPORTER_REQUIRE_ATTACH"

// requiredAttach reports whether the attach type of section sec is listed
// in RequireAttachEnv; the return flavours of the multi types count as
// their entry type.
func requiredAttach(sec string) bool {
	kind, _, _ := strings.Cut(sec, "/")
	switch kind {
	case "kretprobe.multi":
		kind = "kprobe.multi"
	case "uretprobe.multi":
		kind = "uprobe.multi"
	case "ksyscall", "kretsyscall":
		kind = "kprobe"
	}
	for _, f := range strings.Fields(os.Getenv(RequireAttachEnv)) {
		if f == kind {
			return true
		}
	}
	return false
}

// runTrue runs a process that execs and calls getppid through libc.
func runTrue(t *testing.T) {
	if out, err := exec.Command("sh", "-c", "echo $PPID >/dev/null; /bin/true").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := exec.Command("python3", "-c", "import os; os.getppid()").CombinedOutput(); err != nil {
		t.Logf("python3: %v: %s", err, out)
	}
}

func sleepShort(t *testing.T) {
	if err := exec.Command("sleep", "0.01").Run(); err != nil {
		t.Fatal(err)
	}
}

func spin(t *testing.T) {
	if err := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done").Run(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	// A verifier rejection: reading past the stack.
	bad := testkit.CompileBPF(t, `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
SEC("tracepoint/syscalls/sys_enter_getppid")
int bad(void *ctx)
{
	volatile char buf[8];
	int i = *(volatile int *)ctx;
	return buf[i & 0xffff];
}
char LICENSE[] SEC("license") = "GPL";
`, dir, "bad")
	o := Load(context.Background(), config.Config{Name: "bad", Path: dir + "/bad.yaml", BPFPath: bad}, Options{})
	defer o.Close()
	errs := o.Errors()
	if len(errs) == 0 {
		t.Fatal("verifier rejection not reported")
	}
	msg := errs[len(errs)-1].Error()
	for _, want := range []string{`config "bad"`, `program "bad"`, "verifier log (last"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if o.Programs[0].Attached() {
		t.Error("rejected program reported attached")
	}

	// A missing object names itself, and how to build it when its source
	// is beside it (a checkout whose examples were not built).
	for _, tc := range []struct {
		name  string
		files []string
		hint  string
	}{
		{"no source", nil, ""},
		{"source beside it", []string{"m.bpf.c"}, "its source m.bpf.c is beside it, not yet compiled: clang -O2 -g -target bpf -c "},
		{"source and a Makefile", []string{"m.bpf.c", "Makefile"}, "its source m.bpf.c is beside it, not yet compiled: make -C "},
	} {
		d := t.TempDir()
		for _, f := range tc.files {
			if err := os.WriteFile(filepath.Join(d, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		missing := Load(context.Background(), config.Config{Name: "m", BPFPath: filepath.Join(d, "m.bpf.o")}, Options{})
		if missing.Err == nil || !strings.Contains(missing.Err.Error(), "m.bpf.o: no such file") {
			t.Errorf("%s: missing object: %v", tc.name, missing.Err)
			continue
		}
		if got := missing.Err.Error(); tc.hint == "" && strings.Contains(got, "not yet compiled") || !strings.Contains(got, tc.hint) {
			t.Errorf("%s: %v, want the hint %q", tc.name, got, tc.hint)
		}
	}

	tp := testkit.CompileBPF(t, strings.Replace(attachProg, "%s", "tracepoint/nosuchcat/nosuchtp", 1), dir, "tp")
	o2 := Load(context.Background(), config.Config{Name: "tp", BPFPath: tp}, Options{})
	defer o2.Close()
	if o2.Err == nil || o2.Programs[0].Err == nil || !strings.Contains(o2.Programs[0].Err.Error(), "tracepoint nosuchcat/nosuchtp") {
		t.Errorf("missing tracepoint: %v / %v", o2.Err, o2.Programs[0].Err)
	}
}

func TestInlineCodeWithoutClang(t *testing.T) {
	c := &Compiler{Clang: "/nonexistent/clang", CacheDir: t.TempDir(), BTF: "/sys/kernel/btf/vmlinux"}
	_, err := c.Compile(context.Background(), config.Config{Name: "x", Code: "int x;"})
	if err == nil || !strings.Contains(err.Error(), "inline code needs clang") {
		t.Fatalf("error %v", err)
	}
}
