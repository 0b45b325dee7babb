package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// The end-to-end tests run the binary `make build` produces, as a user
// would: a subprocess with the flags the README gives, default
// capabilities included. binaryPath is set by runTests.
var binaryPath string

// runTests builds the shipped binary with `make build` (so the tests never
// run a stale one) and then the tests.
func runTests(m interface{ Run() int }) int {
	// The kernel-matrix guest shares the repository read only and has no
	// time to compile: test/kernels/run.sh builds the binary on the host
	// with `make build` and names it here.
	if bin := os.Getenv("PROBE_EXPORTER_TEST_BINARY"); bin != "" {
		binaryPath = bin
		return m.Run()
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	build := exec.Command("make", "-s", "-C", root, "build")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "make build: %v\n%s", err, out)
		return 1
	}
	binaryPath = filepath.Join(root, "probe_exporter")
	return m.Run()
}

// proc is one running exporter.
type proc struct {
	cmd  *exec.Cmd
	log  *testkit.LogBuffer
	done chan struct{}
	err  error
}

// Pid is the exporter's process id.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

// Log is what the exporter wrote so far.
func (p *proc) Log() string { return p.log.String() }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the exit; a process still running after
// the grace period is killed and reported.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("exporter did not exit within 30 s of SIGTERM; log:\n%s", tail(p.Log(), 40))
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	if p.err != nil {
		t.Errorf("exporter: %v", p.err)
		return -1
	}
	return 0
}

// startExporter runs the binary with args until up() says it serves. When
// the test ends it is stopped with SIGTERM and must exit 0; its log is
// printed if the test failed.
func startExporter(t *testing.T, up func() bool, args ...string) *proc {
	t.Helper()
	return startBinary(t, binaryPath, up, args...)
}

// startBinary is startExporter running the binary at path (a link to it
// under another name).
func startBinary(t *testing.T, path string, up func() bool, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(path, args...), log: &testkit.LogBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	// A test binary killed by a timeout takes its exporter with it. The
	// death signal follows the thread that forked, not the process, so
	// that thread is held until the exporter has exited (other tests lock
	// threads into network namespaces, and the runtime ends those).
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.exited() {
			return
		}
		if code := p.stop(t); code != 0 {
			t.Errorf("exporter exited %d", code)
		}
		if t.Failed() {
			t.Logf("exporter %v log:\n%s", args, tail(p.Log(), 60))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if up() {
			return p
		}
		if p.exited() {
			t.Fatalf("exporter %v exited before serving (%v):\n%s", args, p.err, tail(p.Log(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("exporter %v did not start serving:\n%s", args, tail(p.Log(), 40))
	return nil
}

// runBinary runs the binary to its end (--config.check and the like) and
// returns its exit code.
func runBinary(t *testing.T, args ...string) int {
	t.Helper()
	cmd := exec.Command(binaryPath, args...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		t.Logf("probe_exporter %s: exit %d\n%s", strings.Join(args, " "), exit.ExitCode(), tail(string(out), 20))
		return exit.ExitCode()
	case err != nil:
		t.Fatalf("probe_exporter: %v", err)
	}
	return 0
}

// tail is the last n lines of s.
func tail(s string, n int) string { return testkit.Tail(s, n) }

// runMany runs n processes made by newCmd, 20 at a time, and waits for
// all of them; a failure of any is a test error.
func runMany(t *testing.T, n int, newCmd func() *exec.Cmd) {
	t.Helper()
	sem := make(chan struct{}, 20)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := newCmd().Run(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}
