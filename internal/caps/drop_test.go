package caps

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDropWithoutSetpcap runs Drop in a process whose bounding set lacks
// CAP_SETPCAP, as in a container that drops ALL and adds what the exporter
// uses: the bounding set cannot shrink, so Drop sets no_new_privs, still
// narrows the permitted and effective sets, and says so.
func TestDropWithoutSetpcap(t *testing.T) {
	keep := Mask(BPF, Perfmon)
	if os.Getenv("CAPS_TEST_CHILD") == "1" {
		err := Drop(keep)
		status, _ := os.ReadFile("/proc/self/status")
		fmt.Printf("err=%v\n%s", err, status)
		if !errors.Is(err, ErrBoundingKept) {
			os.Exit(3)
		}
		os.Exit(0)
	}
	// Not testkit's RequireRoot: importing testkit (net/http, os/user)
	// links cgo into this test binary, and with cgo Go cannot set
	// capabilities on every thread (syscall.AllThreadsSyscall).
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("capsh"); err != nil {
		t.Skip("capsh (libcap2-bin) is not installed")
	}
	// The child holds CAP_SYS_ADMIN and others it does not keep, but not
	// CAP_SETPCAP.
	cmd := exec.Command("capsh", "--drop=cap_setpcap", "--shell="+os.Args[0], "--", "-test.run=^TestDropWithoutSetpcap$")
	cmd.Env = append(os.Environ(), "CAPS_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	field := func(name string) string {
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, name+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("no %s in\n%s", name, out)
		return ""
	}
	want := fmt.Sprintf("%016x", keep)
	for _, f := range []string{"CapPrm", "CapEff"} {
		if got := field(f); got != want {
			t.Errorf("%s %s, want %s", f, got, want)
		}
	}
	if got := field("NoNewPrivs"); got != "1" {
		t.Errorf("NoNewPrivs %s, want 1", got)
	}
	if got := field("CapBnd"); got == want {
		t.Errorf("the bounding set shrank without CAP_SETPCAP? %s", got)
	}
}
