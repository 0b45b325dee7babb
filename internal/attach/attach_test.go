package attach

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/cpus"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// counter returns a map of one u64 and a program of type typ adding 1 to
// it each run (per CPU for a per-CPU map).
func counter(t *testing.T, typ ebpf.ProgramType, mapType ebpf.MapType) (*ebpf.Map, *ebpf.Program) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: mapType, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Skipf("creating a BPF map: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    typ,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "exit"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
			asm.Return(),
		},
	})
	if err != nil {
		t.Skipf("loading a BPF program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return m, prog
}

// TestUprobe counts the calls of a function of a real binary exactly, in
// every process running the file or in one.
func TestUprobe(t *testing.T) {
	bin := testkit.BuildWorker(t, "worker with space")
	a, b := testkit.StartWorker(t, bin), testkit.StartWorker(t, bin)
	for _, tc := range []struct {
		name   string
		ret    bool
		pid    int
		offset uint64
		want   uint64
	}{
		{name: "every process", want: 5 + 3},
		{name: "return", ret: true, want: 5 + 3},
		{name: "one process", pid: a.Pid(), want: 5},
		{name: "the other process", pid: b.Pid(), want: 3},
		{name: "a process not running the file", pid: os.Getpid(), want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, prog := counter(t, ebpf.Kprobe, ebpf.Array)
			l, err := Uprobe{Path: bin, Symbol: "work", Return: tc.ret, PID: tc.pid}.Attach(prog)
			if err != nil {
				t.Fatal(err)
			}
			a.Call(t, 5)
			b.Call(t, 3)
			var got uint64
			if err := m.Lookup(uint32(0), &got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("counted %d calls, want %d", got, tc.want)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			a.Call(t, 2)
			if err := m.Lookup(uint32(0), &got); err != nil || got != tc.want {
				t.Errorf("after detaching: %d calls (%v), want still %d", got, err, tc.want)
			}
		})
	}
}

func TestUprobeErrors(t *testing.T) {
	_, prog := counter(t, ebpf.Kprobe, ebpf.Array)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		u       Uprobe
		wantErr string
	}{
		{"missing file", Uprobe{Path: "/nonexistent/bin", Symbol: "f"}, "uprobe: stat executable: stat /nonexistent/bin"},
		{"missing symbol", Uprobe{Path: exe, Symbol: "no_such_function_anywhere", Return: true}, "uretprobe " + exe + ":no_such_function_anywhere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.u.Attach(prog)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestOnEveryCPU runs a CPU clock sampler and spins on each online CPU in
// turn until the program ran there.
func TestOnEveryCPU(t *testing.T) {
	m, prog := counter(t, ebpf.PerfEvent, ebpf.PerCPUArray)
	evs, err := OnEveryCPU(prog, PerfEvent{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK, Frequency: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer evs.Close()
	online, err := cpus.Online()
	if err != nil {
		t.Fatal(err)
	}
	possible, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, cpu := range online {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			counts := make([]uint64, possible)
			if err := m.Lookup(uint32(0), &counts); err != nil {
				t.Fatal(err)
			}
			if counts[cpu] > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no sample on cpu %d in 60s: %v", cpu, counts)
			}
			for end := time.Now().Add(10 * time.Millisecond); time.Now().Before(end); {
			}
		}
	}
	if err := evs.Close(); err != nil {
		t.Errorf("closing: %v", err)
	}
}
