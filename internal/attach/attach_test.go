package attach

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/internal/cpus"
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

// workC calls work() as many times as each line of stdin says.
const workC = `#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) int work(int i) { asm volatile(""); return 2 * i; }
int main(void) {
	char line[64];
	printf("ready\n"); fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		int n = atoi(line);
		for (int i = 0; i < n; i++) work(i);
		printf("done\n"); fflush(stdout);
	}
	return 0;
}
`

type worker struct {
	cmd *exec.Cmd
	in  io.Writer
	out *bufio.Reader
}

func startWorker(t *testing.T, bin string) *worker {
	t.Helper()
	cmd := exec.Command(bin)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	w := &worker{cmd: cmd, in: in, out: bufio.NewReader(out)}
	w.expect(t, "ready")
	return w
}

func (w *worker) expect(t *testing.T, want string) {
	t.Helper()
	line, err := w.out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != want {
		t.Fatalf("worker %d said %q (%v), want %q", w.cmd.Process.Pid, line, err, want)
	}
}

// call has the worker call work() n times, and waits until it did.
func (w *worker) call(t *testing.T, n int) {
	t.Helper()
	fmt.Fprintf(w.in, "%d\n", n)
	w.expect(t, "done")
}

// TestUprobe counts the calls of a function of a real binary exactly, in
// every process running the file or in one.
func TestUprobe(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang is needed to build the probed program")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "worker with space")
	src := filepath.Join(dir, "worker.c")
	if err := os.WriteFile(src, []byte(workC), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("clang", "-O1", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("clang: %v\n%s", err, out)
	}
	a, b := startWorker(t, bin), startWorker(t, bin)
	for _, tc := range []struct {
		name   string
		ret    bool
		pid    int
		offset uint64
		want   uint64
	}{
		{name: "every process", want: 5 + 3},
		{name: "return", ret: true, want: 5 + 3},
		{name: "one process", pid: a.cmd.Process.Pid, want: 5},
		{name: "the other process", pid: b.cmd.Process.Pid, want: 3},
		{name: "a process not running the file", pid: os.Getpid(), want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, prog := counter(t, ebpf.Kprobe, ebpf.Array)
			l, err := Uprobe{Path: bin, Symbol: "work", Return: tc.ret, PID: tc.pid}.Attach(prog)
			if err != nil {
				t.Fatal(err)
			}
			a.call(t, 5)
			b.call(t, 3)
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
			a.call(t, 2)
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
