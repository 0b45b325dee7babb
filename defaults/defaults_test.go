package defaults

import (
	"context"
	"testing"

	"github.com/probe-exporter/probe_exporter/loader"
)

// Every embedded default must load and attach on this kernel.
func TestDefaultsLoad(t *testing.T) {
	cfgs, err := Configs()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfgs) != 3 {
		t.Fatalf("%d embedded configs, want 3", len(cfgs))
	}
	for _, c := range cfgs {
		t.Run(c.Name, func(t *testing.T) {
			obj := loader.Load(context.Background(), c, loader.Options{})
			defer obj.Close()
			for _, err := range obj.Errors() {
				t.Error(err)
			}
			for _, p := range obj.Programs {
				if !p.Attached() {
					t.Errorf("program %s (%s) not attached", p.Name, p.Section)
				}
			}
		})
	}
}
