package procexit

import (
	"os/exec"
	"testing"
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
