package testkit

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// WorkerC is the worker program's source (testdata/worker.c): it says
// "ready", then for each line n of its input calls its function work() n
// times and says "done".
//
//go:embed testdata/worker.c
var WorkerC string

// BuildWorker builds the worker program as name (its comm) and returns the
// path of the executable, the test's own copy (see BuildC).
func BuildWorker(t testing.TB, name string) string {
	t.Helper()
	return BuildC(t, name, WorkerC, "-O1")
}

// Worker is a running worker program, or any program speaking its
// protocol, driven through its standard input and output.
type Worker struct {
	Cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// StartWorker starts bin with args and waits until it says "ready". Its
// standard error is the test binary's. When the test ends its input is
// closed and it is waited for.
func StartWorker(t testing.TB, bin string, args ...string) *Worker {
	t.Helper()
	cmd := exec.Command(bin, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting worker %s: %v", bin, err)
	}
	w := &Worker{Cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(w.Stop)
	w.expect(t, "ready")
	return w
}

// Pid is the worker's process id.
func (w *Worker) Pid() int { return w.Cmd.Process.Pid }

// Call has the worker call work() n times and waits until it did.
func (w *Worker) Call(t testing.TB, n int) {
	t.Helper()
	if reply := w.Send(t, strconv.Itoa(n)); reply != "done" {
		t.Fatalf("worker %d said %q, want %q", w.Pid(), reply, "done")
	}
}

// Send writes line to the worker and returns its answer, the next line it
// writes (without spaces around it).
func (w *Worker) Send(t testing.TB, line string) string {
	t.Helper()
	if _, err := fmt.Fprintln(w.in, line); err != nil {
		t.Fatalf("worker %d: %v", w.Pid(), err)
	}
	reply, err := w.out.ReadString('\n')
	if err != nil {
		t.Fatalf("worker %d said %q (%v) to %q", w.Pid(), reply, err, line)
	}
	return strings.TrimSpace(reply)
}

// Stop closes the worker's input, which ends it, and waits for it; one
// that has not ended within WaitLimit is killed. Stopping a stopped worker
// does nothing.
func (w *Worker) Stop() {
	w.in.Close()
	done := make(chan struct{})
	go func() { _ = w.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(WaitLimit):
		_ = w.Cmd.Process.Kill()
		<-done
	}
}

func (w *Worker) expect(t testing.TB, want string) {
	t.Helper()
	line, err := w.out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != want {
		t.Fatalf("worker %d said %q (%v), want %q", w.Pid(), line, err, want)
	}
}
