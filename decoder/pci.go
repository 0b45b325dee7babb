package decoder

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// DefaultPCIPaths are where distributions install pci.ids; Debian's
// pci.ids package (pulled in by pciutils) installs the first.
var DefaultPCIPaths = []string{"/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"}

// PCIDB holds the names of pci.ids.
type PCIDB struct {
	Vendors    map[uint16]string
	Devices    map[uint32]string // vendor<<16 | device
	Classes    map[uint8]string
	Subclasses map[uint16]string // class<<8 | subclass
}

// LoadPCIDB reads the first pci.ids found in paths (DefaultPCIPaths when
// none are given). It returns fs.ErrNotExist when there is none.
func LoadPCIDB(paths ...string) (*PCIDB, error) {
	if len(paths) == 0 {
		paths = DefaultPCIPaths
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pci.ids: %w", err)
		}
		defer f.Close()
		db, err := ParsePCIDB(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return db, nil
	}
	return nil, fmt.Errorf("pci.ids not found at %s: %w", strings.Join(paths, ", "), fs.ErrNotExist)
}

// ParsePCIDB parses the pci.ids format.
func ParsePCIDB(r io.Reader) (*PCIDB, error) {
	db := &PCIDB{Vendors: map[uint16]string{}, Devices: map[uint32]string{}, Classes: map[uint8]string{}, Subclasses: map[uint16]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var vendor uint64
	var class uint64
	inClasses := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		tabs := len(line) - len(strings.TrimLeft(line, "\t"))
		body := line[tabs:]
		id, name, ok := strings.Cut(body, " ")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		switch {
		case tabs == 0 && strings.HasPrefix(body, "C "):
			inClasses = true
			f := strings.SplitN(body, " ", 3)
			if len(f) < 3 {
				continue
			}
			v, err := strconv.ParseUint(f[1], 16, 8)
			if err != nil {
				continue
			}
			class = v
			db.Classes[uint8(v)] = strings.TrimSpace(f[2])
		case tabs == 0:
			inClasses = false
			v, err := strconv.ParseUint(id, 16, 16)
			if err != nil {
				// Other top-level sections (device types, languages).
				vendor = 1 << 32
				continue
			}
			vendor = v
			db.Vendors[uint16(v)] = name
		case tabs == 1 && inClasses:
			v, err := strconv.ParseUint(id, 16, 8)
			if err == nil {
				db.Subclasses[uint16(class<<8|v)] = name
			}
		case tabs == 1 && vendor <= 0xffff:
			v, err := strconv.ParseUint(id, 16, 16)
			if err == nil {
				db.Devices[uint32(vendor<<16|v)] = name
			}
		}
	}
	return db, sc.Err()
}

// pciName looks a number up; without a database the number is shown in hex.
type pciDecoder struct {
	db     *PCIDB
	lookup func(db *PCIDB, n uint64) (string, bool)
	what   string
	digits int
}

func (d pciDecoder) Decode(in []byte) ([]byte, error) {
	n, err := decimal(in)
	if err != nil {
		return nil, err
	}
	if d.db == nil {
		return fmt.Appendf(nil, "0x%0*x", d.digits, n), nil
	}
	if name, ok := d.lookup(d.db, n); ok {
		return []byte(name), nil
	}
	return fmt.Appendf(nil, "unknown pci %s: 0x%0*x", d.what, d.digits, n), nil
}

func pciEnv(env *Env) *PCIDB {
	if env == nil {
		return nil
	}
	return env.PCI
}
