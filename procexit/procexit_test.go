package procexit

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

func watcher(t *testing.T, logSize int) *Watcher {
	t.Helper()
	w := New(nil, logSize)
	t.Cleanup(func() { w.Close() })
	if err := w.start(); err != nil {
		t.Skipf("the exit tracepoint needs BPF privileges and tracefs: %v", err)
	}
	return w
}

func runTrue(t *testing.T, n int) map[uint32]bool {
	t.Helper()
	pids := map[uint32]bool{}
	for i := 0; i < n; i++ {
		cmd := exec.Command("/bin/true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pids[uint32(cmd.Process.Pid)] = true
	}
	return pids
}

func TestExits(t *testing.T) {
	w := watcher(t, 0)
	w.Sync()
	seq, _ := w.Since(^uint64(0), func(uint32) {})
	pids := runTrue(t, 50)
	// Exits are in the ring when wait() returns; Sync makes them visible.
	w.Sync()
	seen := map[uint32]int{}
	next, complete := w.Since(seq, func(pid uint32) { seen[pid]++ })
	if !complete {
		t.Errorf("incomplete with %d kernel losses", w.Lost())
	}
	for pid := range pids {
		if seen[pid] != 1 {
			t.Errorf("pid %d reported %d times", pid, seen[pid])
		}
	}
	// Nothing new: nothing reported again.
	n := 0
	w.Since(next, func(pid uint32) {
		if pids[pid] {
			n++
		}
	})
	if n != 0 {
		t.Errorf("%d exits reported twice", n)
	}
}

func TestLogOverflow(t *testing.T) {
	w := watcher(t, 64)
	w.Sync()
	seq, _ := w.Since(^uint64(0), func(uint32) {})
	runTrue(t, 100)
	w.Sync()
	n := 0
	next, complete := w.Since(seq, func(uint32) { n++ })
	if complete || n != 64 {
		t.Errorf("complete %v with %d pids; want incomplete with the last 64", complete, n)
	}
	if _, complete := w.Since(next, func(uint32) {}); !complete {
		t.Error("caught up but still incomplete")
	}
}

// leaderFirst's main thread exits first (pthread_exit); the other thread
// lives on until its stdin closes.
const leaderFirst = `#include <pthread.h>
#include <unistd.h>
static void *worker(void *arg) { char c; while (read(0, &c, 1) > 0) {} return 0; }
int main(void) { pthread_t t; pthread_create(&t, 0, worker, 0); pthread_exit(0); }
`

// TestLastThread: a process's exit is reported when its last thread
// exits, not when its main thread does.
func TestLastThread(t *testing.T) {
	w := watcher(t, 0)
	bin := testkit.BuildC(t, "lf", leaderFirst, "-pthread")
	w.Sync()
	seq, _ := w.Since(^uint64(0), func(uint32) {})
	cmd := exec.Command(bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// The main thread is a zombie once it has exited; the worker runs.
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, pid))
		if err == nil && strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("main thread did not exit: %s %v", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	count := func() int {
		w.Sync()
		n := 0
		w.Since(seq, func(p uint32) {
			if int(p) == pid {
				n++
			}
		})
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("exit reported %d times while a thread still runs", n)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("exit reported %d times after the last thread exited, want 1", n)
	}
}
