package decoder

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// KallsymsTable is a sorted kernel symbol table.
type KallsymsTable struct {
	addrs  []uint64
	names  []string
	byName map[string]uint64
}

// LoadKallsyms reads a kallsyms file (/proc/kallsyms; root sees addresses).
func LoadKallsyms(path string) (*KallsymsTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel symbols: %w", err)
	}
	defer f.Close()
	t, err := ParseKallsyms(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseKallsyms parses "ADDRESS TYPE NAME [MODULE]" lines, keeping text
// symbols.
func ParseKallsyms(r io.Reader) (*KallsymsTable, error) {
	type sym struct {
		addr uint64
		name string
	}
	var syms []sym
	byName := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		if _, ok := byName[f[2]]; !ok {
			byName[f[2]] = addr
		}
		switch f[1] {
		case "t", "T", "w", "W":
			syms = append(syms, sym{addr, f[2]})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.SliceStable(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	t := &KallsymsTable{byName: byName, addrs: make([]uint64, len(syms)), names: make([]string, len(syms))}
	for i, s := range syms {
		t.addrs[i], t.names[i] = s.addr, s.name
	}
	return t, nil
}

// Sym returns the symbol at or below addr.
func (t *KallsymsTable) Sym(addr uint64) (string, bool) {
	i := sort.Search(len(t.addrs), func(i int) bool { return t.addrs[i] > addr })
	if i == 0 {
		return "", false
	}
	return t.names[i-1], true
}

// Addr returns the address of a symbol.
func (t *KallsymsTable) Addr(name string) (uint64, bool) {
	a, ok := t.byName[name]
	return a, ok
}

// lazyKallsyms loads /proc/kallsyms on first use, so start-up stays fast
// when no config needs kernel symbols.
type lazyKallsyms struct {
	path string
	once sync.Once
	t    *KallsymsTable
	err  error
}

func (l *lazyKallsyms) load() (*KallsymsTable, error) {
	l.once.Do(func() { l.t, l.err = LoadKallsyms(l.path) })
	return l.t, l.err
}

func (l *lazyKallsyms) Sym(addr uint64) (string, bool) {
	t, err := l.load()
	if err != nil {
		return "", false
	}
	return t.Sym(addr)
}
