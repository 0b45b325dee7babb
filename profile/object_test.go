package profile

import (
	"bytes"
	"os"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// TestObjectPerArch checks the committed objects: each holds the sampler,
// the arm64 one reads user_pt_regs by bpf_probe_read_kernel
// (include/regs.bpf.h) and the x86 one reads pt_regs directly, and the
// package embeds the object of the GOARCH it is built for.
func TestObjectPerArch(t *testing.T) {
	for _, tc := range []struct {
		file         string
		readsKernel  bool
		embeddedHere bool
	}{
		{"profile_x86.bpf.o", false, runtime.GOARCH == "amd64"},
		{"profile_arm64.bpf.o", true, runtime.GOARCH == "arm64"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			p := spec.Programs["do_sample"]
			if p == nil {
				t.Fatal("no do_sample program")
			}
			reads := false
			for _, ins := range p.Instructions {
				if ins.IsBuiltinCall() && asm.BuiltinFunc(ins.Constant) == asm.FnProbeReadKernel {
					reads = true
				}
			}
			if reads != tc.readsKernel {
				t.Fatalf("do_sample calls bpf_probe_read_kernel: %v, want %v", reads, tc.readsKernel)
			}
			if got := bytes.Equal(b, profileObject); got != tc.embeddedHere {
				t.Fatalf("embedded in a %s build: %v, want %v", runtime.GOARCH, got, tc.embeddedHere)
			}
		})
	}
}
