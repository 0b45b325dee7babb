package decoder

import (
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

func TestKsym(t *testing.T) {
	env := &Env{Kallsyms: symbols(t)}
	runDecodeCases(t, config.Decoder{Name: "ksym"}, env, []decodeCase{
		{name: "exact", in: le64(0xffffffff81000100), want: "do_one"},
		{name: "inside", in: le64(0xffffffff81000250), want: "do_two"},
		{name: "below", in: le64(0x1000), want: "unknown_addr:0x1000"},
		{name: "size", in: le32(1), wantErr: "8 bytes"},
	})
	if _, err := New(config.Decoder{Name: "ksym"}, &Env{}); err == nil {
		t.Error("ksym without symbols should fail")
	}
}

// TestHostKallsyms checks the host's table serves kaddrs and the ksym
// decoder alike.
func TestHostKallsyms(t *testing.T) {
	testkit.RequireRoot(t) // addresses in /proc/kallsyms are zero for non-root
	env := HostEnv()
	addr, err := env.KernelAddr("do_nanosleep")
	if err != nil {
		t.Skipf("kernel has no do_nanosleep symbol: %v", err)
	}
	runDecodeCases(t, config.Decoder{Name: "ksym"}, env, []decodeCase{
		{name: "do_nanosleep+1", in: le64(addr + 1), want: "do_nanosleep"},
	})
}
