// Package testkit holds the helpers the tests of every package share:
// waiting for a condition, HTTP fetches, requirements (root, tools),
// building C programs and the worker program, compiling BPF C against the
// running kernel, network namespaces, and an unprivileged local user to
// attack the exporter with. It is imported by tests only.
package testkit

import (
	"os"
	"os/exec"
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
	deadline := time.Now().Add(WaitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
