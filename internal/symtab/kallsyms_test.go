package symtab

import (
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

func TestParseKallsyms(t *testing.T) {
	k, err := ParseKallsyms(strings.NewReader(`ffffffff81000000 T _stext
ffffffff81000100 t do_one
ffffffff81000200 T do_two
ffffffff81000300 d some_data
ffffffffc0000000 t mod_fn	[mymod]
0000000000000000 T hidden
bogus line
ffffffff81000400 W weak_fn
ffffffff81000500 d do_two
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr uint64
		want string
		ok   bool
	}{
		{0x1000, "", false},
		{0xffffffff81000100, "do_one", true},
		{0xffffffff81000250, "do_two", true},
		{0xffffffff81000350, "do_two", true}, // data is no function
		{0xffffffff81000400, "weak_fn", true},
		{0xffffffffc0000010, "mod_fn", true},
	} {
		if got, ok := k.Sym(tc.addr); got != tc.want || ok != tc.ok {
			t.Errorf("Sym(%#x) = %q %v, want %q %v", tc.addr, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		name    string
		addr    uint64
		wantErr string
	}{
		{"do_two", 0xffffffff81000200, ""}, // the first of the name
		{"some_data", 0xffffffff81000300, ""},
		{"hidden", 0, "shows no addresses"},
		{"nope", 0, "not found"},
	} {
		got, err := k.Addr(tc.name)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Addr(%s) error %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.addr {
			t.Errorf("Addr(%s) = %#x %v, want %#x", tc.name, got, err, tc.addr)
		}
	}
	for name, want := range map[string]bool{"do_one": true, "mod_fn": true, "hidden": true, "some_data": false, "nope": false} {
		if got, err := k.HasFunction(name); err != nil || got != want {
			t.Errorf("HasFunction(%s) = %v %v, want %v", name, got, err, want)
		}
	}
	if k.Len() != 5 {
		t.Errorf("Len = %d, want 5", k.Len())
	}
}

func TestMissingKallsyms(t *testing.T) {
	k := NewKallsyms(t.TempDir() + "/none")
	if _, ok := k.Sym(1); ok {
		t.Error("symbol from a missing file")
	}
	if _, err := k.Addr("x"); err == nil || !strings.Contains(err.Error(), "kernel symbols") {
		t.Errorf("Addr: %v", err)
	}
}

func TestHostKallsyms(t *testing.T) {
	k := NewKallsyms("/proc/kallsyms")
	if ok, err := k.HasFunction("do_nanosleep"); err != nil || !ok {
		t.Skipf("kernel has no do_nanosleep function: %v", err)
	}
	addr, err := k.Addr("do_nanosleep")
	testkit.RequireRoot(t) // addresses in /proc/kallsyms are zero for non-root
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := k.Sym(addr + 1); !ok || name != "do_nanosleep" {
		t.Fatalf("Sym(do_nanosleep+1) = %q %v", name, ok)
	}
}
