// Package testkit holds the helpers the tests of every package share:
// waiting for a condition, HTTP fetches, requirements (root, tools),
// building C programs and the worker program, compiling BPF C against the
// running kernel, network namespaces, and an unprivileged local user to
// attack the exporter with. It is imported by tests only.
package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// WaitLimit bounds every wait of Eventually. It is not an assertion on
// speed: conditions are expected to hold long before, even on a loaded
// machine, and the limit only turns a hang into a failure that says what
// was awaited.
const WaitLimit = 60 * time.Second

// Eventually polls cond until it holds, failing the test with what was
// awaited if it does not within WaitLimit.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyWithin(t, what, WaitLimit, cond)
}

// EventuallyWithin is Eventually for a wait known to take longer than
// WaitLimit on a slow machine (compiling a kernel module under emulation).
func EventuallyWithin(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	if !Poll(limit, cond) {
		t.Fatalf("timed out after %v waiting for %s", limit, what)
	}
}

// Poll polls cond until it holds or limit has passed, and reports whether
// it held, for a test that says more than Eventually when it did not. It
// polls often at first and then every 100 ms, so that a condition that is
// costly to check does not load the machine during a long wait.
func Poll(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for pause := 10 * time.Millisecond; !cond(); pause = min(2*pause, 100*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
	return true
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// RequireTools skips the test unless every tool is in PATH.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is needed (make deps installs it)", tool)
		}
	}
}

// StatusKiB is a size field of /proc/PID/status ("VmHWM:", "VmRSS:"), in
// KiB. A process or field that cannot be read fails the test (with
// t.Errorf, so goroutines may call it) and gives 0.
func StatusKiB(t testing.TB, pid int, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Errorf("status of %d: %v", pid, err)
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Errorf("%s of %d: %v", field, pid, err)
			}
			return n
		}
	}
	t.Errorf("no %s for %d", field, pid)
	return 0
}
