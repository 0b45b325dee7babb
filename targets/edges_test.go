package targets

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// heldRecorder records the Start events with whether the process was held.
type heldRecorder struct {
	mu    sync.Mutex
	held  map[int]bool
	exits map[int]int
}

func newHeldRecorder() *heldRecorder {
	return &heldRecorder{held: map[int]bool{}, exits: map[int]int{}}
}

func (r *heldRecorder) event(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Kind == Start {
		r.held[e.Process.PID] = e.Held
	} else {
		r.exits[e.Process.PID]++
	}
}

func (r *heldRecorder) get(pid int) (started, held bool, exits int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	held, started = r.held[pid]
	return started, held, r.exits[pid]
}

// TestCmdlineDecidedAtExec: a process whose arguments match a cmdline
// selector is held at exec and selected before it runs; one whose
// arguments only contain the selector's literal is held and continued,
// not selected; an unrelated one is neither held nor selected.
func TestCmdlineDecidedAtExec(t *testing.T) {
	w := watcher(t, WatcherOptions{})
	if w.Polling() {
		t.Skip("no tracepoints")
	}
	name := "tgc" + strconv.Itoa(os.Getpid()%100000)
	bin := sleeper(t, name)
	rec := newHeldRecorder()
	unsub, err := w.Subscribe(config.Selector{Cmdline: regexp.QuoteMeta(name) + ` 0\.2$`}, rec.event)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	run := func(arg string) int {
		t.Helper()
		cmd := exec.Command(bin, arg)
		if err := cmd.Run(); err != nil { // it returns: it was continued
			t.Fatal(err)
		}
		return cmd.Process.Pid
	}
	before := w.Stats().Held
	unrelated := run("0.1")
	almost := run("0.25")
	match := run("0.2")
	testkit.Eventually(t, "the matching process selected", func() bool { s, _, _ := rec.get(match); return s })
	if _, held, _ := rec.get(match); !held {
		t.Error("the matching process was selected without being held at exec")
	}
	for what, pid := range map[string]int{"unrelated": unrelated, "almost matching": almost} {
		if s, _, _ := rec.get(pid); s {
			t.Errorf("%s process %d selected", what, pid)
		}
	}
	// Events are handled in order: the matching one was last.
	if got := w.Stats().Held - before; got != 2 {
		t.Errorf("%d processes held at exec, want 2 (the candidates, not the unrelated one)", got)
	}
}

// TestRenameSelects: a process that takes a selected name (a write to
// /proc/self/comm, as prctl(PR_SET_NAME) does) is selected from then on,
// held until its executable is probed; renamed away, it leaves the
// selection.
func TestRenameSelects(t *testing.T) {
	w := watcher(t, WatcherOptions{})
	if w.Polling() {
		t.Skip("no tracepoints")
	}
	name := "tgr" + strconv.Itoa(os.Getpid()%100000)
	sh := copyOf(t, "/bin/sh", "sh-"+name)
	rec := newHeldRecorder()
	var selected Selected
	var mu sync.Mutex
	unsub, err := w.SubscribeWith(config.Selector{Comm: name}, SubscribeOptions{ProbesExe: true}, func(e Event) {
		if e.Kind == Start {
			mu.Lock()
			selected = e.Selected
			mu.Unlock()
		}
		rec.event(e)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	inMap := func(pid int) bool {
		mu.Lock()
		defer mu.Unlock()
		var v uint8
		return selected.Map != nil && selected.Map.Lookup(pidKey{uint32(pid), selected.Slot}, &v) == nil
	}
	// The shell renames itself (the builtin echo writes), waits, renames
	// away and waits again.
	cmd := exec.Command(sh, "-c", "printf "+name+" >/proc/self/comm; read x; printf other >/proc/self/comm; read y")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	testkit.Eventually(t, "selected after the rename", func() bool { s, _, _ := rec.get(pid); return s && inMap(pid) })
	if _, held, _ := rec.get(pid); !held {
		t.Error("renamed into the selection without being held for its probes")
	}
	in.Write([]byte("1\n"))
	testkit.Eventually(t, "deselected after renaming away", func() bool { _, _, e := rec.get(pid); return e == 1 && !inMap(pid) })
	in.Write([]byte("2\n"))
	in.Close()
	cmd.Wait()
}

// TestExeInChroot: an exe selector names the executable as the process
// sees it, inside its chroot as under pivot_root. A static program run
// through chroot(1) from a directory where it is /opt/NAME/NAME is
// selected by exe /opt/NAME/NAME (a path the host does not have) and
// reported with its path in the root (before, the path from the host's
// root was matched, and a chrooted copy never was).
func TestExeInChroot(t *testing.T) {
	testkit.RequireTools(t, "chroot")
	w := watcher(t, WatcherOptions{})
	if w.Polling() {
		t.Skip("no tracepoints")
	}
	name := "tgx" + strconv.Itoa(os.Getpid()%100000)
	root := t.TempDir()
	inside := filepath.Join("/opt", name, name)
	if _, err := os.Stat(inside); err == nil {
		t.Skipf("the host has %s", inside)
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, inside)), 0o755); err != nil {
		t.Fatal(err)
	}
	testkit.BuildCAt(t, filepath.Join(root, inside), []string{"#include <unistd.h>\nint main(void) { char c; return read(0, &c, 1) < 0; }\n"}, "-static", "-O1")
	var mu sync.Mutex
	seen := map[int]Process{}
	rec := newHeldRecorder()
	unsub, err := w.Subscribe(config.Selector{Exe: inside}, func(e Event) {
		if e.Kind == Start {
			mu.Lock()
			seen[e.Process.PID] = e.Process
			mu.Unlock()
		}
		rec.event(e)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	start := func(cmd *exec.Cmd) int {
		t.Helper()
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Close(); cmd.Wait() })
		return cmd.Process.Pid
	}
	chrooted := start(exec.Command("chroot", root, inside))
	testkit.Eventually(t, "the chrooted process selected", func() bool { s, _, _ := rec.get(chrooted); return s })
	mu.Lock()
	p := seen[chrooted]
	mu.Unlock()
	if p.ExeInRoot != inside || p.Exe != filepath.Join(root, inside) {
		t.Errorf("selected with exe %q (in its root %q), want %q (%q)", p.Exe, p.ExeInRoot, filepath.Join(root, inside), inside)
	}
	// Whether it was held at exec is not asserted: a process that
	// chroots itself and then execs is not always held (2 of 30 runs on
	// an idle machine, 9 of 30 under load, in which its first calls can
	// be missed); docs/userspace.md says so.
	_, held, _ := rec.get(chrooted)
	t.Logf("held at exec: %v", held)
}

// TestSelectorsWarnedInexact: the selectors the kernel cannot decide
// exactly at exec are named in a warning when subscribed (a cmdline
// without a literal, an exe with a wildcard in its file name); exact ones
// are not.
func TestSelectorsWarnedInexact(t *testing.T) {
	var logs bytes.Buffer
	w := watcher(t, WatcherOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if w.Polling() {
		t.Skip("no tracepoints")
	}
	for _, tc := range []struct {
		sel  config.Selector
		warn string
	}{
		{config.Selector{Exe: "/opt/*/bin/app"}, ""},
		{config.Selector{Exe: "/opt/app/bin/app*"}, `exe selector has a wildcard in its file name`},
		{config.Selector{Cmdline: "app --serve"}, ""},
		{config.Selector{Cmdline: ".*"}, `cmdline selector has no literal`},
	} {
		logs.Reset()
		if err := tc.sel.Validate(); err != nil {
			t.Fatal(err)
		}
		unsub, err := w.Subscribe(tc.sel, func(Event) {})
		if err != nil {
			t.Fatal(err)
		}
		unsub()
		got := logs.String()
		if tc.warn == "" && strings.Contains(got, "WARN") || tc.warn != "" && !strings.Contains(got, tc.warn) {
			t.Errorf("selector %+v logged %q, want a warning containing %q", tc.sel, got, tc.warn)
		}
	}
}
