package attach

import (
	"debug/elf"
	"strings"
	"testing"
)

// symbolOffset (elfread, bounded) finds the same file offsets as the
// unbounded debug/elf reading cilium/ebpf does, on Debian's libc.
func TestSymbolOffsetAsDebugELF(t *testing.T) {
	const libc = "/lib/x86_64-linux-gnu/libc.so.6"
	ref, err := elf.Open(libc)
	if err != nil {
		t.Skipf("no %s: %v", libc, err)
	}
	defer ref.Close()
	syms, err := ref.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	want := func(name string) uint64 {
		for _, s := range syms {
			if s.Name == name && s.Value != 0 {
				for _, p := range ref.Progs {
					if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Memsz {
						return s.Value - p.Vaddr + p.Off
					}
				}
			}
		}
		t.Fatalf("%s not in %s", name, libc)
		return 0
	}
	for _, tc := range []struct {
		symbol string
		offset uint64
	}{{"getpid", 0}, {"malloc", 0}, {"write", 4}} {
		got, err := symbolOffset(libc, tc.symbol, tc.offset)
		if err != nil {
			t.Fatalf("%s: %v", tc.symbol, err)
		}
		if w := want(tc.symbol) + tc.offset; got != w {
			t.Errorf("%s+%d: offset %#x, debug/elf gives %#x", tc.symbol, tc.offset, got, w)
		}
	}
	if _, err := symbolOffset(libc, "no_such_function_here", 0); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("a missing symbol: %v", err)
	}
	if _, err := symbolOffset(libc, "getpid", 1<<20); err == nil {
		t.Error("an offset past the function was accepted")
	}
}
