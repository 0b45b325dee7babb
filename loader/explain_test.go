package loader

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// missingFunction is a kernel function no kernel has.
const missingFunction = "probe_exporter_no_such_function"

// twoProgs is an object with a program on a function every kernel has and
// one on a function no kernel has, under the attach type given by the test.
const twoProgs = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
SEC("%[1]s/do_nanosleep")
int good(void *ctx) { return 0; }
SEC("%[1]s/` + missingFunction + `")
int missing(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
`

// TestAttachErrors checks that a program aimed at a function the kernel
// does not have says so, on kernels where the attach type works (the
// object's other program attaches).
func TestAttachErrors(t *testing.T) {
	for _, kind := range []string{"kprobe", "kretprobe", "fentry", "fexit", "kprobe.multi"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			obj := testkit.CompileBPF(t, fmt.Sprintf(twoProgs, kind), dir, "p")
			o := Load(context.Background(), config.Config{Name: "p", BPFPath: obj}, Options{})
			defer o.Close()
			progs := map[string]*Program{}
			for _, p := range o.Programs {
				progs[p.Name] = p
			}
			if !progs["good"].Attached() {
				if requiredAttach(kind + "/") {
					t.Fatal(progs["good"].Err)
				}
				t.Skipf("this kernel cannot attach %s: %v", kind, progs["good"].Err)
			}
			if progs["missing"].Attached() {
				t.Fatalf("%s/%s attached", kind, missingFunction)
			}
			err := progs["missing"].Err
			if err == nil || !strings.Contains(err.Error(), "kernel has no function "+missingFunction) {
				t.Fatalf("error %v, want it to say the kernel has no function %s", err, missingFunction)
			}
			if strings.Contains(err.Error(), "not supported") {
				t.Errorf("error %v blames support", err)
			}
		})
	}
}

// RaiseLockdownEnv lets TestLockdownError raise the kernel's lockdown to
// confidentiality, which cannot be undone before a reboot: only the kernel
// matrix guest sets it, as its last test.
const RaiseLockdownEnv = "PROBE_EXPORTER_RAISE_LOCKDOWN"

// TestLockdownError raises kernel lockdown to confidentiality and checks
// that the refused kprobe names lockdown, not the memlock limit.
func TestLockdownError(t *testing.T) {
	dir := t.TempDir()
	obj := testkit.CompileBPF(t, strings.Replace(attachProg, "%s", "kprobe/do_nanosleep", 1), dir, "p")
	if os.Getenv(RaiseLockdownEnv) == "" {
		t.Skipf("raising kernel lockdown cannot be undone: set %s=1 (the kernel matrix guest does)", RaiseLockdownEnv)
	}
	before := Load(context.Background(), config.Config{Name: "p", BPFPath: obj}, Options{})
	errs := before.Errors()
	before.Close()
	if len(errs) > 0 {
		t.Fatalf("kprobe fails before lockdown: %v", errs)
	}
	if err := os.WriteFile(LockdownPath, []byte("confidentiality"), 0); err != nil {
		t.Fatalf("raising lockdown: %v", err)
	}
	if m := lockdownMode(); m != "confidentiality" {
		t.Fatalf("lockdown mode %q after raising it", m)
	}
	o := Load(context.Background(), config.Config{Name: "p", BPFPath: obj}, Options{})
	defer o.Close()
	err := o.Programs[0].Err
	if err == nil {
		t.Fatal("kprobe attached under lockdown confidentiality")
	}
	if msg := err.Error(); !strings.Contains(msg, "kernel lockdown (confidentiality mode") || strings.Contains(msg, "MEMLOCK") {
		t.Fatalf("error %q: want it to name lockdown, not MEMLOCK", msg)
	}
	t.Logf("under lockdown: %v", err)
}
