package symtab

import "testing"

func TestLookup(t *testing.T) {
	tab := New([]Symbol{{0x300, "c"}, {0x100, "a"}, {0x200, "b"}, {0x200, "b2"}})
	for _, tc := range []struct {
		addr uint64
		want string
		ok   bool
	}{
		{0x0ff, "", false},
		{0x100, "a", true},
		{0x1ff, "a", true},
		{0x200, "b2", true}, // the last of equal addresses
		{0x2ff, "b2", true},
		{0xffff, "c", true},
	} {
		got, ok := tab.Lookup(tc.addr)
		if got != tc.want || ok != tc.ok {
			t.Errorf("0x%x: %q %v, want %q %v", tc.addr, got, ok, tc.want, tc.ok)
		}
	}
	var none *Table
	if _, ok := none.Lookup(1); ok || none.Len() != 0 {
		t.Error("nil table")
	}
}
