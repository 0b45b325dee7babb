// Package usdt reads USDT probes (SystemTap SDT notes) from ELF files,
// parses their argument specs and attaches BPF programs written against
// libbpf's <bpf/usdt.bpf.h> to them, filling libbpf's spec maps.
package usdt

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"github.com/probe-exporter/probe_exporter/internal/elfread"
)

// Note is one USDT probe site.
type Note struct {
	Provider, Name string
	// Location, Base and Semaphore are the addresses in the note, after
	// prelink adjustment.
	Location, Base, Semaphore uint64
	// Args is the raw argument spec ("-4@%eax 8@-16(%rbp)").
	Args string
	// LocationOffset is the file offset of the probe instruction, and
	// SemaphoreOffset of the semaphore (0 without one): what uprobes
	// (and their reference counter) take.
	LocationOffset, SemaphoreOffset uint64
}

const (
	noteSection = ".note.stapsdt"
	baseSection = ".stapsdt.base"
	noteType    = 3
	// MaxNotesSize caps the .note.stapsdt section read (PostgreSQL's,
	// with a few hundred probes, takes about 30 KiB).
	MaxNotesSize = 16 << 20
)

// ReadNotes parses the .note.stapsdt section of an ELF file.
func ReadNotes(path string) ([]Note, error) {
	f, err := elfread.Open(path)
	if err != nil {
		return nil, openError(path, err)
	}
	defer f.Close()
	notes, err := readNotes(f)
	if err != nil {
		return nil, fmt.Errorf("usdt: %s: %w", named(path), err)
	}
	return notes, nil
}

// named is path, followed by the file it links to when it is a link
// (/proc/PID/exe): a log line then names the malformed file itself.
func named(path string) string {
	if target, err := os.Readlink(path); err == nil {
		return fmt.Sprintf("%s (%s)", path, target)
	}
	return path
}

// openError explains an error of elfread.Open, which names the file: a
// shell shim in front of the real binary is a common cause of "bad magic
// number".
func openError(path string, err error) error {
	var pe *fs.PathError
	switch {
	case errors.Is(err, elfread.ErrNotELF):
		return fmt.Errorf("usdt: %s is not an ELF file (a script or a wrapper? name the binary it runs): %w", path, elfread.ErrNotELF)
	case errors.As(err, &pe):
		return fmt.Errorf("usdt: %w", err)
	default:
		return fmt.Errorf("usdt: %w", err)
	}
}

func readNotes(f *elfread.File) ([]Note, error) {
	sec := f.Section(noteSection)
	if sec == nil {
		return nil, nil
	}
	data, err := f.Data(sec, MaxNotesSize)
	if err != nil {
		return nil, err
	}
	return parseNotes(f, data)
}

// parseNotes reads the stapsdt notes of a .note.stapsdt section's data.
// Every size is checked against what is left of the section, in 64-bit
// arithmetic (a namesz of 0xffffffff does not wrap around).
func parseNotes(f *elfread.File, data []byte) ([]Note, error) {
	var actualBase uint64
	if b := f.Section(baseSection); b != nil {
		actualBase = b.Addr
	}
	bo := f.ByteOrder
	var notes []Note
	for at := 0; len(data) >= 12; {
		namesz, descsz, typ := bo.Uint32(data), bo.Uint32(data[4:]), bo.Uint32(data[8:])
		data = data[12:]
		nameEnd := align4(namesz)
		descEnd := nameEnd + align4(descsz)
		if uint64(len(data)) < descEnd {
			return nil, fmt.Errorf("note at 0x%x: name of %d and description of %d bytes run past the section", at, namesz, descsz)
		}
		at += 12 + int(descEnd)
		name := string(bytes.TrimRight(data[:namesz], "\x00"))
		desc := data[nameEnd : nameEnd+uint64(descsz)]
		data = data[descEnd:]
		if name != "stapsdt" || typ != noteType {
			continue
		}
		n, err := parseNote(desc, bo, f.Class)
		if err != nil {
			return nil, err
		}
		if actualBase != 0 && n.Base != 0 && actualBase != n.Base {
			// Prelinked: move addresses by the base's displacement.
			n.Location += actualBase - n.Base
			if n.Semaphore != 0 {
				n.Semaphore += actualBase - n.Base
			}
		}
		if n.LocationOffset, err = fileOffset(f, n.Location); err != nil {
			return nil, fmt.Errorf("probe %s:%s: %w", n.Provider, n.Name, err)
		}
		if n.Semaphore != 0 {
			if n.SemaphoreOffset, err = fileOffset(f, n.Semaphore); err != nil {
				return nil, fmt.Errorf("probe %s:%s semaphore: %w", n.Provider, n.Name, err)
			}
		}
		notes = append(notes, n)
	}
	return notes, nil
}

func align4(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }

func parseNote(desc []byte, bo binary.ByteOrder, class elf.Class) (Note, error) {
	var n Note
	addrSize := 8
	if class == elf.ELFCLASS32 {
		addrSize = 4
	}
	if len(desc) < 3*addrSize {
		return n, errors.New("short note")
	}
	read := func(b []byte) uint64 {
		if addrSize == 4 {
			return uint64(bo.Uint32(b))
		}
		return bo.Uint64(b)
	}
	n.Location, n.Base, n.Semaphore = read(desc), read(desc[addrSize:]), read(desc[2*addrSize:])
	strs := bytes.SplitN(desc[3*addrSize:], []byte{0}, 4)
	if len(strs) < 3 {
		return n, errors.New("note strings are truncated")
	}
	n.Provider, n.Name, n.Args = string(strs[0]), string(strs[1]), string(strs[2])
	return n, nil
}

// fileOffset maps a virtual address to its offset in the file, through
// the loadable segment holding it.
func fileOffset(f *elfread.File, addr uint64) (uint64, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		if addr >= p.Vaddr && addr < p.Vaddr+p.Memsz {
			return addr - p.Vaddr + p.Off, nil
		}
	}
	// Objects without program headers (relocatable): use sections.
	for _, s := range f.Sections {
		if s.Addr != 0 && addr >= s.Addr && addr < s.Addr+s.Size {
			return addr - s.Addr + s.Offset, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no loadable segment", addr)
}

// Probes lists the "provider:name" probes in a file, sorted and unique.
func Probes(path string) ([]string, error) {
	notes, err := ReadNotes(path)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range notes {
		k := n.Provider + ":" + n.Name
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}
