package userspace

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/procfs"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
	"github.com/probe-exporter/probe_exporter/loader"
	"github.com/probe-exporter/probe_exporter/targets"
)

// countC counts the probe's hits per process.
const countC = `#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u32);
	__type(value, u64);
} counts SEC(".maps");

SEC("%s")
int count(void *ctx) {
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	u64 one = 1, *n = bpf_map_lookup_elem(&counts, &pid);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&counts, &pid, &one, BPF_NOEXIST);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
`

// dropped records the pids the attacher tells to drop.
type dropped struct {
	mu   sync.Mutex
	pids map[int]int
}

func (d *dropped) DropPID(_ string, pid int) {
	d.mu.Lock()
	d.pids[pid]++
	d.mu.Unlock()
}

func (d *dropped) count(pid int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pids[pid]
}

// attached reports whether the attacher placed prog's probes for pid.
func (a *Attacher) attached(prog *loader.Program, pid int) bool {
	a.mu.Lock()
	st := a.progs[prog]
	a.mu.Unlock()
	if st == nil {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.pids[pid]
	return ok
}

// TestAttach loads a uprobe counting calls of work() per process with the
// attacher following real processes, and checks the counts exactly: for
// selections the kernel makes at exec (comm, exe, pid) and one only
// userspace makes (cmdline), for processes running before the config
// loads and started after, and for a file probed in every process.
func TestAttach(t *testing.T) {
	dir := t.TempDir()
	name := "uw" + strconv.Itoa(os.Getpid()%100000)
	bin := testkit.BuildWorker(t, name)
	// A copy under another name: the same code, another file and comm.
	other := testkit.BuildWorker(t, "ot"+strconv.Itoa(os.Getpid()%100000))
	// An object whose section names no file, attached through explicit
	// attach points (as v1-layout configs are), and one per named file.
	objects := map[string][]byte{}
	for i, sec := range []string{"uprobe", "uprobe/" + bin + ":work", "uretprobe/" + other + ":work"} {
		data, err := os.ReadFile(testkit.CompileBPF(t, fmt.Sprintf(countC, sec), dir, "count"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		objects[sec] = data
	}

	w, err := targets.NewWatcher(targets.WatcherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	for _, tc := range []struct {
		name string
		sel  *config.Selector
		// kind is that of the explicit attach point, or empty to
		// attach by section.
		kind    config.AttachKind
		section string
		// args of the workers of bin.
		args []string
		// want are the calls counted of the worker of bin running
		// before the config loads, the one started after, and the
		// worker of the other file.
		before, after, others int
	}{
		{name: "comm", sel: &config.Selector{Comm: name}, kind: config.AttachUprobe, before: 5, after: 4},
		{name: "exe glob", sel: &config.Selector{Exe: filepath.Join(filepath.Dir(bin), "uw*")}, kind: config.AttachUretprobe, before: 5, after: 4},
		{name: "pid", sel: &config.Selector{PIDs: []int{0}}, kind: config.AttachUprobe, before: 5},
		{name: "cmdline", sel: &config.Selector{Cmdline: "^" + bin + " selected$"}, args: []string{"selected"}, kind: config.AttachUprobe, before: 5, after: 4},
		{name: "file for every process", section: "uprobe/" + bin + ":work", before: 5, after: 4},
		{name: "named file, comm", sel: &config.Selector{Comm: filepath.Base(other)}, section: "uretprobe/" + other + ":work", others: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testkit.StartWorker(t, bin, tc.args...)
			unselected := testkit.StartWorker(t, other)
			sel := tc.sel
			if sel != nil && len(sel.PIDs) > 0 {
				sel = &config.Selector{PIDs: []int{before.Pid()}}
			}
			drops := &dropped{pids: map[int]int{}}
			a := New(w, drops, nil, slog.New(slog.DiscardHandler))
			cfg := config.Config{Name: "count", Attachments: sel}
			if tc.kind != "" {
				cfg.Object = objects["uprobe"]
				cfg.Attach = []config.AttachPoint{{Kind: tc.kind, Target: "work", Program: "count"}}
			} else {
				cfg.Object = objects[tc.section]
			}
			obj := loader.Load(ctx, cfg, loader.Options{Userspace: a})
			if err := obj.Err; err != nil {
				t.Fatal(err)
			}
			defer obj.Close()
			prog := obj.Programs[0]
			if prog.Err != nil {
				t.Fatal(prog.Err)
			}
			for _, wk := range []struct {
				w    *testkit.Worker
				want int
			}{{before, tc.before}, {unselected, tc.others}} {
				if sel != nil && wk.want > 0 {
					testkit.Eventually(t, "attaching to a running worker", func() bool { return a.attached(prog, wk.w.Pid()) })
				}
			}
			after := testkit.StartWorker(t, bin, tc.args...)
			if sel != nil && sel.Cmdline != "" {
				// Only userspace selects by command line, once it
				// reads the exec event.
				testkit.Eventually(t, "attaching to the new worker", func() bool { return a.attached(prog, after.Pid()) })
			}
			before.Call(t, 5)
			after.Call(t, 4)
			unselected.Call(t, 3)
			m := obj.Map("counts")
			for _, c := range []struct {
				w    *testkit.Worker
				want int
			}{{before, tc.before}, {after, tc.after}, {unselected, tc.others}} {
				var got uint64
				_ = m.Lookup(uint32(c.w.Pid()), &got)
				if got != uint64(c.want) {
					t.Errorf("worker %d counted %d calls, want %d", c.w.Pid(), got, c.want)
				}
			}
			if sel != nil && tc.before > 0 {
				pid := before.Pid()
				before.Stop()
				testkit.Eventually(t, "dropping the exited worker's series", func() bool { return drops.count(pid) > 0 })
				if a.attached(prog, pid) {
					t.Errorf("exited worker %d still attached", pid)
				}
			}
		})
	}
}

// TestFileFor finds the file a probe goes into for a live process: its
// executable, a file by path in its root, a library it maps by name or
// prefix, and its executable after the file was deleted.
func TestFileFor(t *testing.T) {
	bin := testkit.BuildWorker(t, "gone worker")
	wk := testkit.StartWorker(t, bin)
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	p, err := procfs.Read("/proc", wk.Pid())
	if err != nil {
		t.Fatal(err)
	}
	maps, err := p.Mappings()
	if err != nil {
		t.Fatal(err)
	}
	var libc, text procfs.Mapping
	for _, m := range maps {
		switch {
		case m.Executable() && strings.HasPrefix(filepath.Base(m.Path), "libc.so"):
			libc = m
		case m.Executable() && m.Path == bin:
			text = m
		}
	}
	if libc.Path == "" || !text.Deleted {
		t.Fatalf("worker maps no libc or its deleted executable: %+v", maps)
	}
	dirOf := "/proc/" + strconv.Itoa(wk.Pid())
	for _, tc := range []struct {
		name, section, want, wantErr string
	}{
		{name: "own executable", section: "", want: dirOf + "/exe"},
		{name: "absolute path", section: "/usr/bin/true", want: dirOf + "/root/usr/bin/true"},
		{name: "library by name", section: filepath.Base(libc.Path), want: dirOf + "/root" + libc.Path},
		{name: "library by prefix", section: "libc", want: dirOf + "/root" + libc.Path},
		{name: "deleted executable by name", section: filepath.Base(bin), want: fmt.Sprintf("%s/map_files/%x-%x", dirOf, text.Start, text.End)},
		{name: "unknown library", section: "libnope-at-all.so", wantErr: "libnope-at-all.so"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fileFor(p, tc.section)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("fileFor = %v, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.Name() != tc.want {
				t.Fatalf("fileFor = %v, %v; want %q", got, err, tc.want)
			}
			defer got.Close()
			if st, err := os.Stat(got.Name()); err != nil || st.Sys().(*syscall.Stat_t).Ino != got.Stat.Ino {
				t.Errorf("the file found is not the file opened: %v", err)
			}
		})
	}
}

// gcWorker collects garbage as many times as each line of stdin says;
// automatic collections are off, so each gc.collect() fires python's
// gc__start USDT probe once.
const gcWorker = `import gc, sys
gc.disable()
print("ready", flush=True)
for line in sys.stdin:
    for _ in range(int(line)):
        gc.collect()
    print("done", flush=True)
`

// TestAttachUSDT counts python3.11's gc__start probe (which has a
// semaphore) in one selected interpreter exactly.
func TestAttachUSDT(t *testing.T) {
	const python = "/usr/bin/python3.11"
	if _, err := os.Stat(python); err != nil {
		t.Skip("needs " + python + " (built with USDT probes)")
	}
	dir := t.TempDir()
	object, err := os.ReadFile(testkit.CompileBPF(t, fmt.Sprintf(countC, "usdt"), dir, "count"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := targets.NewWatcher(targets.WatcherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	selected := testkit.StartWorker(t, python, "-c", gcWorker)
	other := testkit.StartWorker(t, python, "-c", gcWorker)
	a := New(w, nil, nil, slog.New(slog.DiscardHandler))
	obj := loader.Load(ctx, config.Config{
		Name:        "gc",
		Object:      object,
		Attachments: &config.Selector{PIDs: []int{selected.Pid()}},
		Attach:      []config.AttachPoint{{Kind: config.AttachUSDT, Target: "python:gc__start", Program: "count"}},
	}, loader.Options{Userspace: a})
	if obj.Err != nil {
		t.Fatal(obj.Err)
	}
	defer obj.Close()
	prog := obj.Programs[0]
	if prog.Err != nil {
		t.Fatal(prog.Err)
	}
	testkit.Eventually(t, "attaching to the interpreter", func() bool { return a.attached(prog, selected.Pid()) })
	selected.Call(t, 7)
	other.Call(t, 2)
	for _, c := range []struct {
		w    *testkit.Worker
		want uint64
	}{{selected, 7}, {other, 0}} {
		var got uint64
		_ = obj.Map("counts").Lookup(uint32(c.w.Pid()), &got)
		if got != c.want {
			t.Errorf("interpreter %d: gc__start fired %d times, want %d", c.w.Pid(), got, c.want)
		}
	}
}

// TestAttachErrors: what cannot be attached says why.
func TestAttachErrors(t *testing.T) {
	object, err := os.ReadFile(testkit.CompileBPF(t, fmt.Sprintf(countC, "uprobe"), t.TempDir(), "count"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := targets.NewWatcher(targets.WatcherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		sel     *config.Selector
		wantErr string
	}{
		{"no selection, no file", nil, "uprobe work names no binary: give attachments"},
		{"empty selection, no file", &config.Selector{}, "uprobe work names no binary: give attachments"},
		{"bad cmdline", &config.Selector{Cmdline: "("}, "attachments: cmdline: error parsing regexp"},
		{"bad exe glob", &config.Selector{Exe: "/bin/["}, `attachments: exe "/bin/[": syntax error in pattern`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := loader.Load(context.Background(), config.Config{
				Name:        "bad",
				Object:      object,
				Attachments: tc.sel,
				Attach:      []config.AttachPoint{{Kind: config.AttachUprobe, Target: "work", Program: "count"}},
			}, loader.Options{Userspace: New(w, nil, nil, slog.New(slog.DiscardHandler))})
			defer obj.Close()
			if len(obj.Programs) != 1 || obj.Programs[0].Err == nil || !strings.Contains(obj.Programs[0].Err.Error(), tc.wantErr) {
				t.Fatalf("programs %+v, want error %q", obj.Programs, tc.wantErr)
			}
		})
	}
}
