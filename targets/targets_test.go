package targets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// recorder collects events.
type recorder struct {
	mu     sync.Mutex
	starts map[int]Process
	exits  map[int]int
}

func newRecorder() *recorder { return &recorder{starts: map[int]Process{}, exits: map[int]int{}} }

func (r *recorder) event(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Kind == Start {
		r.starts[e.Process.PID] = e.Process
	} else {
		r.exits[e.Process.PID]++
	}
}

func (r *recorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.exits {
		n += c
	}
	return len(r.starts), n
}

func watcher(t *testing.T, opts WatcherOptions) *Watcher {
	t.Helper()
	w, err := NewWatcher(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// sleeper copies sleep under a unique name.
func sleeper(t *testing.T, name string) string {
	t.Helper()
	return copyOf(t, "/bin/sleep", name)
}

// copyOf copies the executable src under a unique name, so that the
// tests select its processes alone.
func copyOf(t *testing.T, src, name string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Skipf("no %s", src)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStartAndExit(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run("poll="+strconv.FormatBool(poll), func(t *testing.T) {
			w := watcher(t, WatcherOptions{NoBPF: poll, PollInterval: 50 * time.Millisecond})
			if !poll && w.Polling() {
				t.Fatal("exec/exit tracepoints unavailable on this kernel")
			}
			name := "tgt" + strconv.Itoa(os.Getpid()%100000) + strconv.FormatBool(poll)[:1]
			bin := sleeper(t, name)
			rec := newRecorder()
			unsub, err := w.Subscribe(config.Selector{Comm: name}, rec.event)
			if err != nil {
				t.Fatal(err)
			}
			defer unsub()
			cmd := exec.Command(bin, "0.5")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			testkit.Eventually(t, "start", func() bool { s, _ := rec.counts(); return s == 1 })
			rec.mu.Lock()
			p := rec.starts[pid]
			rec.mu.Unlock()
			if p.Comm != name || p.Exe != bin || p.PID != pid || p.StartTime == 0 {
				t.Fatalf("process %+v", p)
			}
			cmd.Wait()
			deadline := time.Now().Add(20 * time.Second)
			for {
				if _, e := rec.counts(); e == 1 && w.Tracked() == 0 {
					break
				}
				if time.Now().After(deadline) {
					rec.mu.Lock()
					t.Fatalf("want one exit, none tracked: pid %d, starts %v, exits %v, tracked %d", pid, rec.starts, rec.exits, w.Tracked())
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestManyShortLived: 200 short-lived processes; every one seen starting is
// seen exiting, and none is left tracked. (The kernel selects them at exec;
// one that exits before userspace reads its exec is only seen exiting.)
func TestManyShortLived(t *testing.T) {
	w := watcher(t, WatcherOptions{})
	name := "tgm" + strconv.Itoa(os.Getpid()%100000)
	bin := sleeper(t, name)
	rec := newRecorder()
	unsub, err := w.Subscribe(config.Selector{Comm: name}, rec.event)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	const n = 200
	var pids []int
	for i := 0; i < n; i++ {
		cmd := exec.Command(bin, "0")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	testkit.Eventually(t, "every exit", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, pid := range pids {
			if rec.exits[pid] == 0 {
				return false
			}
		}
		return w.Tracked() == 0
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for pid := range rec.starts {
		if rec.exits[pid] != 1 {
			t.Errorf("pid %d started, exited %d times", pid, rec.exits[pid])
		}
	}
	t.Logf("%d of %d processes seen alive", len(rec.starts), n)
}

// TestKernelSelection: the kernel's selection map holds a process selected
// at exec, a fork child of it, a process userspace selected by cmdline, and
// forgets each at exit or at an exec of something unselected.
func TestKernelSelection(t *testing.T) {
	w := watcher(t, WatcherOptions{})
	if w.Polling() {
		t.Skip("no tracepoints")
	}
	name := "tgk" + strconv.Itoa(os.Getpid()%100000)
	sh := copyOf(t, "/bin/sh", name)

	type sub struct {
		rec *recorder
		mu  sync.Mutex
		sel Selected
	}
	subscribe := func(sel config.Selector) *sub {
		s := &sub{rec: newRecorder()}
		unsub, err := w.Subscribe(sel, func(e Event) {
			if e.Kind == Start {
				s.mu.Lock()
				s.sel = e.Selected
				s.mu.Unlock()
			}
			s.rec.event(e)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(unsub)
		return s
	}
	inMap := func(s *sub, pid int) bool {
		s.mu.Lock()
		sel := s.sel
		s.mu.Unlock()
		if sel.Map == nil {
			return false
		}
		var v uint8
		return sel.Map.Lookup(pidKey{uint32(pid), sel.Slot}, &v) == nil
	}
	byComm := subscribe(config.Selector{Comm: name})
	byCmdline := subscribe(config.Selector{Cmdline: regexp.QuoteMeta(name) + " -c read x"})

	// The shell forks a subshell (same image, inherits the selection),
	// which forks cat (a new image: deselected), then waits for a line.
	cmd := exec.Command(sh, "-c", "read x; (cat >/dev/null; true)")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	testkit.Eventually(t, "selection at exec", func() bool { return inMap(byComm, pid) && inMap(byCmdline, pid) })
	in.Write([]byte("go\n"))
	in.Close()
	cmd.Wait()
	// The shell, its subshell and the subshell's child before it execs
	// cat are selected; cat is not.
	testkit.Eventually(t, "exits", func() bool {
		for _, s := range []*sub{byComm, byCmdline} {
			s.rec.mu.Lock()
			done := len(s.rec.starts) >= 2
			for p := range s.rec.starts {
				done = done && s.rec.exits[p] == 1
			}
			s.rec.mu.Unlock()
			if !done {
				return false
			}
		}
		return w.Tracked() == 0
	})
	for _, s := range []*sub{byComm, byCmdline} {
		s.rec.mu.Lock()
		for p, proc := range s.rec.starts {
			if inMap(s, p) {
				t.Errorf("pid %d still selected after exit", p)
			}
			if p == pid && proc.Comm != name {
				t.Errorf("started %+v", proc)
			}
		}
		s.rec.mu.Unlock()
	}
}

// TestLoadProcEvents: the process event programs pass this kernel's
// verifier, as loaded for an exporter in the host's pid namespace and in
// a child one (pids translated in the kernel). The kernel matrix runs it
// on every guest kernel: a program refused there would leave the
// exporter polling /proc, missing short-lived processes. A refusal
// prints the verifier's whole log.
func TestLoadProcEvents(t *testing.T) {
	for _, level := range []uint32{0, 1} {
		t.Run(fmt.Sprintf("pid namespace level %d", level), func(t *testing.T) {
			spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(procEventsObject))
			if err != nil {
				t.Fatal(err)
			}
			if level > 0 {
				if err := spec.Variables["pidns_level"].Set(level); err != nil {
					t.Fatal(err)
				}
				if err := spec.Variables["pidns_ino"].Set(uint32(4026532000)); err != nil {
					t.Fatal(err)
				}
			}
			coll, err := ebpf.NewCollection(spec)
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				t.Fatalf("%v\n%+v", err, ve)
			}
			if err != nil {
				t.Fatal(err)
			}
			coll.Close()
		})
	}
}

// hasExeVerdict reports whether the kernel holds a verdict on the file f
// for any slot.
func hasExeVerdict(w *Watcher, f FileKey) bool {
	w.mu.Lock()
	k := w.k
	w.mu.Unlock()
	if k == nil {
		return false
	}
	var key fileKey
	var v uint8
	it := k.coll.Maps["slot_exes"].Iterate()
	for it.Next(&key, &v) {
		if key.Dev == f.Dev && key.Ino == f.Ino {
			return true
		}
	}
	return false
}

// TestExeInodeReused: the verdict on a deleted executable does not pass to
// a new file that gets its inode number (ext4 reuses them at once; the
// inode's generation tells the two apart). Other packages' tests run and
// delete executables beside ours: before, one of them could make a file
// at the selected path go unselected for good.
func TestExeInodeReused(t *testing.T) {
	w := watcher(t, WatcherOptions{})
	if w.Polling() {
		t.Skip("no tracepoints")
	}
	data, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Skip("no /bin/sleep")
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "pe-reused")
	rec := newRecorder()
	unsub, err := w.Subscribe(config.Selector{Exe: target}, rec.event)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	reused := false
	for i := 0; i < 50 && !reused; i++ {
		other := filepath.Join(dir, "other"+strconv.Itoa(i))
		if err := os.WriteFile(other, data, 0o755); err != nil {
			t.Fatal(err)
		}
		if fileGen(other) == genAny {
			t.Skip("the test directory's filesystem gives no inode generation")
		}
		f, err := StatKey(other)
		if err != nil {
			t.Fatal(err)
		}
		// Not the target: userspace says no (from the running
		// process's /proc/PID/exe), and the kernel keeps that.
		run := exec.Command(other, "30")
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, "a verdict on "+other, func() bool { return hasExeVerdict(w, f) })
		run.Process.Kill()
		run.Wait()
		os.Remove(other)
		if err := os.WriteFile(target, data, 0o755); err != nil {
			t.Fatal(err)
		}
		if g, err := StatKey(target); err == nil && g == f {
			reused = true
			break
		}
		os.Remove(target)
	}
	if !reused {
		t.Skip("the filesystem gave the target no deleted executable's inode number in 50 tries")
	}
	cmd := exec.Command(target, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	testkit.Eventually(t, "the new file at the selected path to be selected", func() bool {
		starts, _ := rec.counts()
		return starts == 1
	})
}
