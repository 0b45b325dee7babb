package targets

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
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

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	data, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Skip("no /bin/sleep")
	}
	p := filepath.Join(t.TempDir(), name)
	os.WriteFile(p, data, 0o755)
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
			unsub, err := w.Subscribe(Selector{Comm: name}, rec.event)
			if err != nil {
				t.Fatal(err)
			}
			defer unsub()
			cmd := exec.Command(bin, "0.5")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			eventually(t, "start", func() bool { s, _ := rec.counts(); return s == 1 })
			rec.mu.Lock()
			p := rec.starts[pid]
			rec.mu.Unlock()
			if p.Comm != name || p.Exe != bin || p.PID != pid || p.StartTime == 0 {
				t.Fatalf("process %+v", p)
			}
			cmd.Wait()
			eventually(t, "exit", func() bool { _, e := rec.counts(); return e == 1 })
			if w.Tracked() != 0 {
				t.Fatalf("%d processes still tracked", w.Tracked())
			}
		})
	}
}

func TestSelectors(t *testing.T) {
	self, err := ReadProcess("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sel  Selector
		want bool
	}{
		{"comm", Selector{Comm: self.Comm}, true},
		{"other comm", Selector{Comm: "nope"}, false},
		{"exe path", Selector{Exe: self.Exe}, true},
		{"exe glob", Selector{Exe: filepath.Dir(self.Exe) + "/*"}, true},
		{"cmdline", Selector{Cmdline: `-test\.`}, true},
		{"cgroup", Selector{Cgroup: "^" + self.Cgroup + "$"}, true},
		{"pid", Selector{PIDs: []int{os.Getpid()}}, true},
		{"pid and other comm", Selector{PIDs: []int{os.Getpid()}, Comm: "nope"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.sel.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := tc.sel.Matches(self); got != tc.want {
				t.Fatalf("Matches = %v, want %v (process %+v)", got, tc.want, self)
			}
		})
	}
	for _, bad := range []Selector{{}, {Cmdline: "("}, {Cgroup: "["}, {Exe: "["}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

// TestManyShortLived: 200 short-lived processes, each seen start and exit,
// none left tracked.
func TestManyShortLived(t *testing.T) {
	w := watcher(t, WatcherOptions{})
	name := "tgm" + strconv.Itoa(os.Getpid()%100000)
	bin := sleeper(t, name)
	rec := newRecorder()
	unsub, err := w.Subscribe(Selector{Comm: name}, rec.event)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	const n = 200
	for i := 0; i < n; i++ {
		if err := exec.Command(bin, "0").Run(); err != nil {
			t.Fatal(err)
		}
	}
	// A process may exit before its exec is handled; then it is never
	// started (nothing to attach) and must not linger either.
	eventually(t, "every exit", func() bool { s, e := rec.counts(); return s == e && s > 0 && w.Tracked() == 0 })
	s, _ := rec.counts()
	t.Logf("%d of %d processes seen alive", s, n)
}
