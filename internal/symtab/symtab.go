// Package symtab resolves addresses to symbol names: a sorted
// address-to-name table (ELF function symbols for the profiler's user
// frames) and the kernel's table from /proc/kallsyms, read once for the
// ksym and kstack decoders, kaddrs, the profiler and the loader.
package symtab

import "sort"

// Symbol is a name at an address.
type Symbol struct {
	Addr uint64
	Name string
}

// Table resolves an address to the symbol at or below it.
type Table struct {
	addrs []uint64
	names []string
}

// New sorts syms into a table; of symbols at one address the last given
// wins (in /proc/kallsyms, the later of aliases).
func New(syms []Symbol) *Table {
	sort.SliceStable(syms, func(i, j int) bool { return syms[i].Addr < syms[j].Addr })
	t := &Table{addrs: make([]uint64, len(syms)), names: make([]string, len(syms))}
	for i, s := range syms {
		t.addrs[i], t.names[i] = s.Addr, s.Name
	}
	return t
}

// Lookup returns the symbol at or below addr.
func (t *Table) Lookup(addr uint64) (string, bool) {
	if t == nil {
		return "", false
	}
	i := sort.Search(len(t.addrs), func(i int) bool { return t.addrs[i] > addr })
	if i == 0 {
		return "", false
	}
	return t.names[i-1], true
}

// Len is the number of symbols.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.addrs)
}
