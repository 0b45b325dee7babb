package symtab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Kallsyms is the kernel's symbol table, read from a kallsyms file
// (/proc/kallsyms) on first use: reading it takes a few hundred
// milliseconds, so start-up stays fast when nothing needs kernel symbols,
// and it is read once for all its users (ksym and kstack decoders, kaddrs,
// the profiler's kernel frames, the loader's explanation of kprobe
// failures).
type Kallsyms struct {
	path string

	once sync.Once
	err  error
	// text holds the functions by address.
	text *Table
	// byName holds every symbol, by name.
	byName map[string]kernelSym
}

type kernelSym struct {
	// addr is that of the first symbol of the name; 0 when the file
	// hides addresses (a reader without CAP_SYSLOG).
	addr uint64
	// text says some symbol of the name is a function.
	text bool
}

// NewKallsyms returns the table of the kallsyms file at path, read on
// first use.
func NewKallsyms(path string) *Kallsyms { return &Kallsyms{path: path} }

// ParseKallsyms reads a table from r now.
func ParseKallsyms(r io.Reader) (*Kallsyms, error) {
	k := &Kallsyms{path: "kallsyms"}
	k.once.Do(func() { k.err = k.parse(r) })
	return k, k.err
}

// Load reads the file unless done before, and returns why it could not be.
func (k *Kallsyms) Load() error {
	k.once.Do(func() {
		f, err := os.Open(k.path)
		if err != nil {
			k.err = fmt.Errorf("kernel symbols: %w", err)
			return
		}
		defer f.Close()
		if err := k.parse(f); err != nil {
			k.err = fmt.Errorf("%s: %w", k.path, err)
		}
	})
	return k.err
}

// parse reads "ADDRESS TYPE NAME [MODULE]" lines.
func (k *Kallsyms) parse(r io.Reader) error {
	var syms []Symbol
	byName := map[string]kernelSym{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			continue
		}
		var text bool
		switch f[1] {
		case "t", "T", "w", "W":
			text = true
			if addr != 0 {
				syms = append(syms, Symbol{Addr: addr, Name: f[2]})
			}
		}
		s, seen := byName[f[2]]
		if !seen {
			s.addr = addr
		}
		s.text = s.text || text
		byName[f[2]] = s
	}
	if err := sc.Err(); err != nil {
		return err
	}
	k.text, k.byName = New(syms), byName
	return nil
}

// Sym returns the function holding addr; false when there is none or the
// table cannot be read.
func (k *Kallsyms) Sym(addr uint64) (string, bool) {
	if k.Load() != nil {
		return "", false
	}
	return k.text.Lookup(addr)
}

// Addr returns the address of a kernel symbol.
func (k *Kallsyms) Addr(name string) (uint64, error) {
	if err := k.Load(); err != nil {
		return 0, err
	}
	s, ok := k.byName[name]
	switch {
	case !ok:
		return 0, fmt.Errorf("kernel symbol %q not found in %s", name, k.path)
	case s.addr == 0:
		return 0, fmt.Errorf("kernel symbol %q: %s shows no addresses (they need CAP_SYSLOG)", name, k.path)
	}
	return s.addr, nil
}

// HasFunction reports whether the kernel (modules included) has a function
// of that name; it needs no addresses.
func (k *Kallsyms) HasFunction(name string) (bool, error) {
	if err := k.Load(); err != nil {
		return false, err
	}
	return k.byName[name].text, nil
}

// Len is the number of functions with addresses.
func (k *Kallsyms) Len() int {
	if k.Load() != nil {
		return 0
	}
	return k.text.Len()
}
