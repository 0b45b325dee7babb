package loader

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/bpftest"
)

// missingFunction is a kernel function no kernel has.
const missingFunction = "probe_exporter_no_such_function"

// TestAttachErrors checks that a program aimed at a function the kernel
// does not have says so, on kernels where the attach type works.
func TestAttachErrors(t *testing.T) {
	for _, kind := range []string{"kprobe", "kretprobe", "fentry", "fexit", "kprobe.multi"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			// The attach type works here: this very program on a real
			// function attaches (TestAttachTypes makes it run).
			good := bpftest.Compile(t, strings.Replace(attachProg, "%s", kind+"/do_nanosleep", 1), dir, "good")
			bad := bpftest.Compile(t, strings.Replace(attachProg, "%s", kind+"/"+missingFunction, 1), dir, "bad")
			g := Load(context.Background(), config.Config{Name: "good", BPFPath: good}, Options{})
			defer g.Close()
			if errs := g.Errors(); len(errs) > 0 {
				if requiredAttach(kind + "/") {
					t.Fatal(errs)
				}
				t.Skipf("this kernel cannot attach %s: %v", kind, errs[len(errs)-1])
			}
			o := Load(context.Background(), config.Config{Name: "bad", BPFPath: bad}, Options{})
			defer o.Close()
			if o.Programs[0].Attached() {
				t.Fatalf("%s/%s attached", kind, missingFunction)
			}
			err := o.Programs[0].Err
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
	obj := bpftest.Compile(t, strings.Replace(attachProg, "%s", "kprobe/do_nanosleep", 1), dir, "p")
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
