package decoder

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/probe-exporter/probe_exporter/internal/symtab"
)

// KallsymsTable is a sorted kernel symbol table.
type KallsymsTable struct {
	*symtab.Table
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
	var syms []symtab.Symbol
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
			syms = append(syms, symtab.Symbol{Addr: addr, Name: f[2]})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return &KallsymsTable{Table: symtab.New(syms), byName: byName}, nil
}

// Sym returns the symbol at or below addr.
func (t *KallsymsTable) Sym(addr uint64) (string, bool) { return t.Lookup(addr) }

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
