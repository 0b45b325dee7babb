package symtab

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"unsafe"
)

// Kallsyms is the kernel's symbol table, read from a kallsyms file
// (/proc/kallsyms) on first use and shared by all its users (ksym and
// kstack decoders, kaddrs, the profiler's kernel frames, the loader's
// explanation of kprobe failures).
//
// It is held compact: the functions as one sorted address array and one
// blob of NUL-ended names (about 4.5 MB for 120,000 functions, where Go
// strings and a map took 26 MB), and the index by name, which only kaddrs
// and the loader's explanations need, is built on its first use, from a
// second reading of the file.
type Kallsyms struct {
	path string
	// open reads the file (again for the name index); nil: path.
	open func() (io.ReadCloser, error)

	textOnce sync.Once
	textErr  error
	text     *compact // functions by address

	namesOnce sync.Once
	namesErr  error
	names     *compact // every symbol by name; flags: 1 = a function
}

// compact is a symbol table: entry i is at addrs[i], named by the bytes
// of blob from offs[i] to the next NUL.
type compact struct {
	blob  []byte
	addrs []uint64
	offs  []uint32
	flags []uint8
}

func (c *compact) Len() int {
	if c == nil {
		return 0
	}
	return len(c.addrs)
}

// name of entry i, sharing the blob's memory (never written after it is
// built).
func (c *compact) name(i int) string {
	b := c.blob[c.offs[i]:]
	if n := bytes.IndexByte(b, 0); n >= 0 {
		b = b[:n]
	}
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// add appends a symbol.
func (c *compact) add(addr uint64, name []byte, flag uint8) {
	c.addrs = append(c.addrs, addr)
	c.offs = append(c.offs, uint32(len(c.blob)))
	c.blob = append(append(c.blob, name...), 0)
	if c.flags != nil || flag != 0 {
		for len(c.flags) < len(c.addrs)-1 {
			c.flags = append(c.flags, 0)
		}
		c.flags = append(c.flags, flag)
	}
}

func (c *compact) flag(i int) uint8 {
	if i < len(c.flags) {
		return c.flags[i]
	}
	return 0
}

// shrink copies the slices to their exact size, so the spare capacity of
// appending is freed.
func (c *compact) shrink() {
	c.blob = append([]byte(nil), c.blob...)
	c.addrs = append([]uint64(nil), c.addrs...)
	c.offs = append([]uint32(nil), c.offs...)
	if c.flags != nil {
		c.flags = append([]uint8(nil), c.flags...)
	}
}

// byAddr sorts entries by address, stably.
type byAddr struct{ c *compact }

func (s byAddr) Len() int           { return len(s.c.addrs) }
func (s byAddr) Less(i, j int) bool { return s.c.addrs[i] < s.c.addrs[j] }
func (s byAddr) Swap(i, j int) {
	c := s.c
	c.addrs[i], c.addrs[j] = c.addrs[j], c.addrs[i]
	c.offs[i], c.offs[j] = c.offs[j], c.offs[i]
}

// byName sorts entries by name, stably.
type byName struct{ c *compact }

func (s byName) Len() int           { return len(s.c.addrs) }
func (s byName) Less(i, j int) bool { return s.c.name(i) < s.c.name(j) }
func (s byName) Swap(i, j int) {
	c := s.c
	c.addrs[i], c.addrs[j] = c.addrs[j], c.addrs[i]
	c.offs[i], c.offs[j] = c.offs[j], c.offs[i]
	c.flags[i], c.flags[j] = c.flags[j], c.flags[i]
}

// NewKallsyms returns the table of the kallsyms file at path, read on
// first use.
func NewKallsyms(path string) *Kallsyms { return &Kallsyms{path: path} }

// ParseKallsyms reads a table from r now (tests).
func ParseKallsyms(r io.Reader) (*Kallsyms, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	k := &Kallsyms{path: "kallsyms", open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}}
	return k, k.Load()
}

func (k *Kallsyms) reader() (io.ReadCloser, error) {
	if k.open != nil {
		return k.open()
	}
	f, err := os.Open(k.path)
	if err != nil {
		return nil, fmt.Errorf("kernel symbols: %w", err)
	}
	return f, nil
}

// Load reads the functions unless done before, and returns why they could
// not be.
func (k *Kallsyms) Load() error {
	k.textOnce.Do(func() {
		k.text, k.textErr = k.read(true)
		if k.textErr != nil {
			return
		}
		sort.Stable(byAddr{k.text})
		// Of symbols at one address the last given wins (in
		// /proc/kallsyms, the later of aliases).
		c := k.text
		n := 0
		for i := range c.addrs {
			if i+1 < len(c.addrs) && c.addrs[i+1] == c.addrs[i] {
				continue
			}
			c.addrs[n], c.offs[n] = c.addrs[i], c.offs[i]
			n++
		}
		c.addrs, c.offs = c.addrs[:n], c.offs[:n]
		c.shrink()
		// Building took about twice the table's size in garbage,
		// which the runtime would hand back to the kernel only
		// minutes later: return it now, once.
		debug.FreeOSMemory()
	})
	return k.textErr
}

// loadNames builds the index by name unless done before.
func (k *Kallsyms) loadNames() error {
	k.namesOnce.Do(func() {
		k.names, k.namesErr = k.read(false)
		if k.namesErr == nil {
			if k.names.flags == nil {
				k.names.flags = make([]uint8, len(k.names.addrs))
			}
			sort.Stable(byName{k.names})
			k.names.shrink()
		}
	})
	return k.namesErr
}

// read parses "ADDRESS TYPE NAME [MODULE]" lines: the functions with an
// address (text), or every symbol with a function flag.
func (k *Kallsyms) read(text bool) (*compact, error) {
	rc, err := k.reader()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	c := &compact{}
	br := bufio.NewReaderSize(rc, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			k.parseLine(c, line, text)
		}
		if err == io.EOF {
			break
		}
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: not a symbol; skip it.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.path, err)
		}
	}
	return c, nil
}

func (k *Kallsyms) parseLine(c *compact, line []byte, text bool) {
	f := fields3(line)
	if f[2] == nil || len(f[1]) != 1 {
		return
	}
	addr, err := strconv.ParseUint(unsafe.String(&f[0][0], len(f[0])), 16, 64)
	if err != nil {
		return
	}
	isText := false
	switch f[1][0] {
	case 't', 'T', 'w', 'W':
		isText = true
	}
	switch {
	case text && isText && addr != 0:
		c.add(addr, f[2], 0)
	case !text:
		var flag uint8
		if isText {
			flag = 1
		}
		c.add(addr, f[2], flag)
	}
}

// fields3 splits the first three space-separated fields of line.
func fields3(line []byte) [3][]byte {
	var out [3][]byte
	for i := 0; i < 3; i++ {
		for len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			line = line[1:]
		}
		end := bytes.IndexAny(line, " \t\n")
		if end < 0 {
			end = len(line)
		}
		if end == 0 {
			return out
		}
		out[i], line = line[:end], line[end:]
	}
	return out
}

// Sym returns the function holding addr; false when there is none or the
// table cannot be read.
func (k *Kallsyms) Sym(addr uint64) (string, bool) {
	if k.Load() != nil {
		return "", false
	}
	c := k.text
	i := sort.Search(len(c.addrs), func(i int) bool { return c.addrs[i] > addr })
	if i == 0 {
		return "", false
	}
	return c.name(i - 1), true
}

// find returns the first index of name in the index by name.
func (k *Kallsyms) find(name string) (int, bool) {
	c := k.names
	i := sort.Search(len(c.addrs), func(i int) bool { return c.name(i) >= name })
	return i, i < len(c.addrs) && c.name(i) == name
}

// Addr returns the address of a kernel symbol (the first of its name).
func (k *Kallsyms) Addr(name string) (uint64, error) {
	if err := k.loadNames(); err != nil {
		return 0, err
	}
	i, ok := k.find(name)
	switch {
	case !ok:
		return 0, fmt.Errorf("kernel symbol %q not found in %s", name, k.path)
	case k.names.addrs[i] == 0:
		return 0, fmt.Errorf("kernel symbol %q: %s shows no addresses (they need CAP_SYSLOG)", name, k.path)
	}
	return k.names.addrs[i], nil
}

// HasFunction reports whether the kernel (modules included) has a function
// of that name; it needs no addresses.
func (k *Kallsyms) HasFunction(name string) (bool, error) {
	if err := k.loadNames(); err != nil {
		return false, err
	}
	i, ok := k.find(name)
	for ; ok && i < k.names.Len() && k.names.name(i) == name; i++ {
		if k.names.flag(i) == 1 {
			return true, nil
		}
	}
	return false, nil
}

// Len is the number of functions with addresses.
func (k *Kallsyms) Len() int {
	if k.Load() != nil {
		return 0
	}
	return k.text.Len()
}

// textRange is the lowest and highest function address (benchmarks).
func (k *Kallsyms) textRange() (uint64, uint64) {
	if k.Load() != nil || k.text.Len() == 0 {
		return 0, 0
	}
	return k.text.addrs[0], k.text.addrs[len(k.text.addrs)-1]
}
