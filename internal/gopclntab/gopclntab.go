// Package gopclntab reads the function table of a Go binary's .gopclntab
// section (the runtime's pcHeader, functab and function names, Go 1.2 and
// later): entry address to function name, what a profiler needs to name
// the frames of a stripped Go binary.
//
// Go's debug/gosym is not used on binaries that any local user may have
// written: it trusts the function count of the header and allocates a
// function record for each before looking at the table, so that a 16-byte
// section claiming 800 million functions exhausts memory. Here the header
// is checked (magic, quantum, pointer size, every offset within the
// section, the function table within the section) before anything is
// allocated, the memory kept is at most three times the section's size, and a
// name is read, within MaxName bytes, only when an address is looked up.
package gopclntab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Layout versions, by the header's magic number.
const (
	ver12  = 0xfffffffb
	ver116 = 0xfffffffa
	ver118 = 0xfffffff0
	ver120 = 0xfffffff1
)

// Caps for tables of untrusted files.
const (
	// MaxSize caps the section (the .gopclntab of a 150 MB Kubernetes
	// binary is about 40 MiB).
	MaxSize = 64 << 20
	// MaxName is the longest function name read; a longer one (no NUL
	// within it) is not named.
	MaxName = 16 << 10
)

// Table maps addresses to the functions of one binary.
type Table struct {
	// entries are the functions' entry addresses, ascending; the last
	// is the end of the last function.
	entries []uint64
	// names are the offsets of the functions' names in names.
	nameOffs []uint32
	names    string
}

// Parse reads the function table of a .gopclntab section; text is the
// address of the .text section (Go 1.18 and later store entries relative
// to it).
func Parse(data []byte, text uint64) (*Table, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%d bytes, more than the %d read", len(data), MaxSize)
	}
	if len(data) < 16 {
		return nil, fmt.Errorf("%d bytes, too short for a header", len(data))
	}
	var bo binary.ByteOrder = binary.LittleEndian
	magic := bo.Uint32(data)
	if !known(magic) {
		bo = binary.BigEndian
		if magic = bo.Uint32(data); !known(magic) {
			return nil, fmt.Errorf("unknown magic number 0x%x", binary.LittleEndian.Uint32(data))
		}
	}
	if data[4] != 0 || data[5] != 0 {
		return nil, errors.New("header padding is not zero")
	}
	if q := data[6]; q != 1 && q != 2 && q != 4 {
		return nil, fmt.Errorf("instruction quantum %d (1, 2 or 4)", q)
	}
	ptr := uint64(data[7])
	if ptr != 4 && ptr != 8 {
		return nil, fmt.Errorf("pointer size %d (4 or 8)", ptr)
	}
	size := uint64(len(data))
	uintptr := func(off uint64) (uint64, error) {
		if off > size || size-off < ptr {
			return 0, fmt.Errorf("header word at 0x%x runs past the section", off)
		}
		if ptr == 4 {
			return uint64(bo.Uint32(data[off:])), nil
		}
		return bo.Uint64(data[off:]), nil
	}
	// word is the n-th pointer-sized header word after the first 8
	// bytes; offset checks it is an offset within the section.
	word := func(n uint64) (uint64, error) { return uintptr(8 + n*ptr) }
	offset := func(n uint64, what string) (uint64, error) {
		v, err := word(n)
		if err != nil {
			return 0, err
		}
		if v > size {
			return 0, fmt.Errorf("%s offset 0x%x is past the section (%d bytes)", what, v, size)
		}
		return v, nil
	}

	var nfunc, functab, funcdata, names uint64
	var err error
	if nfunc, err = word(0); err != nil {
		return nil, err
	}
	field := ptr // functab field size
	switch magic {
	case ver118, ver120:
		field = 4
		if names, err = offset(3, "function name table"); err != nil {
			return nil, err
		}
		if functab, err = offset(7, "function table"); err != nil {
			return nil, err
		}
		funcdata = functab
	case ver116:
		if names, err = offset(2, "function name table"); err != nil {
			return nil, err
		}
		if functab, err = offset(6, "function table"); err != nil {
			return nil, err
		}
		funcdata = functab
	case ver12:
		functab, funcdata, names = 8+ptr, 0, 0
	}
	// The table holds nfunc (entry, offset) pairs and the end address.
	room := (size - functab) / field
	if room == 0 || nfunc == 0 || nfunc > (room-1)/2 {
		return nil, fmt.Errorf("%d functions do not fit the section (%d bytes)", nfunc, size)
	}
	get := func(off uint64) uint64 {
		if field == 4 {
			return uint64(bo.Uint32(data[off:]))
		}
		return bo.Uint64(data[off:])
	}
	t := &Table{entries: make([]uint64, nfunc+1), nameOffs: make([]uint32, nfunc)}
	// The name offset is the second field of the runtime's _func, after
	// a pointer-sized entry address (Go 1.18: a 4-byte entry offset).
	nameField := ptr
	if field == 4 {
		nameField = 4
	}
	fdata := data[funcdata:]
	for i := uint64(0); i <= nfunc; i++ {
		pc := get(functab + 2*i*field)
		if magic == ver118 || magic == ver120 {
			pc += text
		}
		t.entries[i] = pc
		if i == nfunc {
			break
		}
		off := get(functab + (2*i+1)*field)
		if off > uint64(len(fdata)) || uint64(len(fdata))-off < nameField+4 {
			return nil, fmt.Errorf("function %d: record at 0x%x runs past the section", i, off)
		}
		t.nameOffs[i] = bo.Uint32(fdata[off+nameField:])
	}
	t.names = string(data[names:])
	return t, nil
}

func known(magic uint32) bool {
	switch magic {
	case ver12, ver116, ver118, ver120:
		return true
	}
	return false
}

// Len is the number of functions.
func (t *Table) Len() int { return len(t.nameOffs) }

// Lookup names the function whose code holds pc: from its entry up to the
// next function's.
func (t *Table) Lookup(pc uint64) (string, bool) {
	n := len(t.nameOffs)
	i := sort.Search(n, func(i int) bool { return t.entries[i] > pc }) - 1
	if i < 0 || i >= n || pc >= t.entries[i+1] {
		return "", false
	}
	off := uint64(t.nameOffs[i])
	if off >= uint64(len(t.names)) {
		return "", false
	}
	s := t.names[off:]
	if len(s) > MaxName+1 {
		s = s[:MaxName+1]
	}
	end := strings.IndexByte(s, 0)
	if end < 0 {
		return "", false
	}
	return s[:end], true
}
