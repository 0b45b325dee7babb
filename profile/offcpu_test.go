package profile

import (
	"bytes"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// TestPrepareOffCPU: without an off-CPU target the sched_switch program
// is not loaded and its maps shrink to one entry (the CPU profiler's are
// untouched); with one, the minimum blocked time is set; a negative one is
// refused.
func TestPrepareOffCPU(t *testing.T) {
	for _, tc := range []struct {
		name    string
		targets []Target
		min     time.Duration
		loaded  bool
		wantErr bool
	}{
		{"cpu only", []Target{{App: "a"}}, 0, false, false},
		{"off-cpu", []Target{{App: "a"}, {App: "b", OffCPU: true}}, 5 * time.Millisecond, true, false},
		{"negative minimum", []Target{{App: "b", OffCPU: true}}, -time.Millisecond, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(profileObject))
			if err != nil {
				t.Fatal(err)
			}
			err = prepareOffCPU(spec, Options{Targets: tc.targets, OffCPUMin: tc.min})
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want one: %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if _, ok := spec.Programs[offCPUProgram]; ok != tc.loaded {
				t.Errorf("%s in the spec: %v, want %v", offCPUProgram, ok, tc.loaded)
			}
			for _, name := range offCPUMaps {
				n := spec.Maps[name].MaxEntries
				if !tc.loaded && n != 1 || tc.loaded && n == 1 && name != "offcpu_scratch" {
					t.Errorf("%s: %d entries", name, n)
				}
			}
			if n := spec.Maps["counts"].MaxEntries; n != 16384 {
				t.Errorf("CPU counts map: %d entries", n)
			}
			if tc.loaded {
				var min uint64
				if err := spec.Variables["offcpu_min_ns"].Get(&min); err != nil || min != uint64(tc.min) {
					t.Errorf("offcpu_min_ns %d (%v), want %d", min, err, tc.min)
				}
			}
		})
	}
}
