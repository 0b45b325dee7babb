package decoder

import (
	"os"
	"testing"

	"github.com/probe-exporter/probe_exporter/config"
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

func TestHostKallsyms(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("addresses in /proc/kallsyms are zero for non-root")
	}
	tab, err := LoadKallsyms("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	addr, ok := tab.Addr("do_nanosleep")
	if !ok {
		t.Skip("kernel has no do_nanosleep symbol")
	}
	if name, ok := tab.Sym(addr + 1); !ok || name != "do_nanosleep" {
		t.Fatalf("Sym(do_nanosleep+1) = %q %v", name, ok)
	}
	env := HostEnv()
	if got, err := env.KernelAddr("do_nanosleep"); err != nil || got != addr {
		t.Fatalf("KernelAddr = %#x %v, want %#x", got, err, addr)
	}
}
