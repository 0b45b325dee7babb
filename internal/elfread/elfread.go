// Package elfread reads the parts of an ELF file the exporter needs (the
// header, program headers, sections, compressed ones included, and
// function symbols) from files that any local user may have written: every
// offset and size is checked against the file, every allocation is capped
// before it is made, and a malformed file is an error that says what is
// wrong, never a panic.
//
// Go's debug/elf is not used for such files: it decompresses compressed
// sections (the section name table included, while opening) without a cap,
// and copies a symbol's or section's name once per entry that points at
// it, so that a file of a few megabytes can claim gigabytes.
package elfread

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// Caps on what one file may make the reader allocate.
const (
	// MaxSectionHeaders is the most section headers read (64 bytes
	// each, 4 MiB): executables and libraries have tens; relocatable
	// objects built with -ffunction-sections some thousands.
	MaxSectionHeaders = 1 << 16
	// MaxProgramHeaders is the most program headers read (real files
	// have about ten).
	MaxProgramHeaders = 1 << 12
	// MaxNameTable caps the section name table (real ones: a few hundred
	// bytes).
	MaxNameTable = 1 << 20
	// MaxName is the longest section or symbol name read; longer is
	// malformed (real section names are short, and the longest C++ or Go
	// symbol names are a few kilobytes).
	MaxName = 16 << 10
	// MaxSymbolTable caps a symbol table and, separately, its string
	// table (the symbols of a 100 MB Go binary take about 10 MiB).
	MaxSymbolTable = 64 << 20
)

// ErrNotELF is the cause of Open's error for a file that does not start
// with the ELF magic number (a script, for instance).
var ErrNotELF = errors.New("bad magic number")

// File is an open ELF file.
type File struct {
	Class     elf.Class
	ByteOrder binary.ByteOrder
	Type      elf.Type
	Machine   elf.Machine
	Progs     []elf.ProgHeader
	Sections  []Section

	r      io.ReaderAt
	closer io.Closer
	size   uint64
}

// Section is a section header. For a compressed section (SHF_COMPRESSED),
// Size is its uncompressed size as its compression header claims, and
// FileSize what it takes in the file, as in debug/elf.
type Section struct {
	elf.SectionHeader
	compression elf.CompressionType
	chdrSize    uint64
}

// Open opens the ELF file at path and reads its headers. The file is
// opened without blocking (a FIFO planted at the path cannot hold the
// caller) and must be a regular file. Errors name the path.
func Open(path string) (*File, error) {
	fd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		fd.Close()
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	f, err := NewFile(fd, uint64(st.Size()))
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.closer = fd
	return f, nil
}

// Close closes the file.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	return f.closer.Close()
}

// NewFile reads the headers of an ELF image of size bytes from r. The
// returned File reads its sections from r; Close does not close r.
func NewFile(r io.ReaderAt, size uint64) (*File, error) {
	f := &File{r: r, size: size}
	fr := &fileReader{r: r, size: size}
	ident := make([]byte, min(size, elf.EI_NIDENT))
	if err := fr.readAt(ident, 0, "ELF identification"); err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(ident, []byte(elf.ELFMAG)) {
		return nil, ErrNotELF
	}
	if len(ident) < elf.EI_NIDENT {
		return nil, fmt.Errorf("%d bytes, too short for an ELF header", size)
	}
	f.Class = elf.Class(ident[elf.EI_CLASS])
	switch elf.Data(ident[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		f.ByteOrder = binary.LittleEndian
	case elf.ELFDATA2MSB:
		f.ByteOrder = binary.BigEndian
	default:
		return nil, fmt.Errorf("unknown ELF data encoding %d", ident[elf.EI_DATA])
	}
	bo := f.ByteOrder
	var (
		phoff, shoff                 uint64
		phentsize, phnum             uint64
		shentsize, shnum, shstrndx   uint64
		wantPhentsize, wantShentsize uint64
		hdr                          []byte
		ehdrSize                     uint64
	)
	switch f.Class {
	case elf.ELFCLASS64:
		ehdrSize, wantPhentsize, wantShentsize = 64, 56, 64
	case elf.ELFCLASS32:
		ehdrSize, wantPhentsize, wantShentsize = 52, 32, 40
	default:
		return nil, fmt.Errorf("unknown ELF class %d", ident[elf.EI_CLASS])
	}
	hdr = make([]byte, ehdrSize)
	if err := fr.readAt(hdr, 0, "ELF header"); err != nil {
		return nil, err
	}
	f.Type = elf.Type(bo.Uint16(hdr[16:]))
	f.Machine = elf.Machine(bo.Uint16(hdr[18:]))
	if f.Class == elf.ELFCLASS64 {
		phoff, shoff = bo.Uint64(hdr[32:]), bo.Uint64(hdr[40:])
		phentsize, phnum = uint64(bo.Uint16(hdr[54:])), uint64(bo.Uint16(hdr[56:]))
		shentsize, shnum, shstrndx = uint64(bo.Uint16(hdr[58:])), uint64(bo.Uint16(hdr[60:])), uint64(bo.Uint16(hdr[62:]))
	} else {
		phoff, shoff = uint64(bo.Uint32(hdr[28:])), uint64(bo.Uint32(hdr[32:]))
		phentsize, phnum = uint64(bo.Uint16(hdr[42:])), uint64(bo.Uint16(hdr[44:]))
		shentsize, shnum, shstrndx = uint64(bo.Uint16(hdr[46:])), uint64(bo.Uint16(hdr[48:])), uint64(bo.Uint16(hdr[50:]))
	}

	// Section headers first: with more than 0xff00 sections (or program
	// headers) the real counts are in the first section header.
	var sh0 *Section
	if shoff != 0 {
		if shentsize != wantShentsize {
			return nil, fmt.Errorf("section header size %d, want %d", shentsize, wantShentsize)
		}
		first, err := f.sectionHeader(fr, shoff, shentsize)
		if err != nil {
			return nil, err
		}
		sh0 = &first
		if shnum == 0 {
			shnum = first.Size
		}
		if shstrndx == uint64(elf.SHN_XINDEX) {
			shstrndx = uint64(first.Link)
		}
	} else if shnum != 0 {
		return nil, fmt.Errorf("%d section headers at offset 0", shnum)
	}
	if phnum == 0xffff && sh0 != nil {
		phnum = uint64(sh0.Info)
	}

	if phnum > 0 {
		if phentsize != wantPhentsize {
			return nil, fmt.Errorf("program header size %d, want %d", phentsize, wantPhentsize)
		}
		if phnum > MaxProgramHeaders {
			return nil, fmt.Errorf("%d program headers, more than the %d read", phnum, MaxProgramHeaders)
		}
		data := make([]byte, phnum*phentsize)
		if err := fr.readAt(data, phoff, "program headers"); err != nil {
			return nil, err
		}
		f.Progs = make([]elf.ProgHeader, phnum)
		for i := range f.Progs {
			b := data[uint64(i)*phentsize:]
			p := &f.Progs[i]
			if f.Class == elf.ELFCLASS64 {
				p.Type, p.Flags = elf.ProgType(bo.Uint32(b)), elf.ProgFlag(bo.Uint32(b[4:]))
				p.Off, p.Vaddr, p.Paddr = bo.Uint64(b[8:]), bo.Uint64(b[16:]), bo.Uint64(b[24:])
				p.Filesz, p.Memsz, p.Align = bo.Uint64(b[32:]), bo.Uint64(b[40:]), bo.Uint64(b[48:])
			} else {
				p.Type, p.Off = elf.ProgType(bo.Uint32(b)), uint64(bo.Uint32(b[4:]))
				p.Vaddr, p.Paddr = uint64(bo.Uint32(b[8:])), uint64(bo.Uint32(b[12:]))
				p.Filesz, p.Memsz = uint64(bo.Uint32(b[16:])), uint64(bo.Uint32(b[20:]))
				p.Flags, p.Align = elf.ProgFlag(bo.Uint32(b[24:])), uint64(bo.Uint32(b[28:]))
			}
		}
	}

	if shnum == 0 {
		return f, nil
	}
	if shnum > MaxSectionHeaders {
		return nil, fmt.Errorf("%d section headers, more than the %d read", shnum, MaxSectionHeaders)
	}
	if shstrndx >= shnum {
		return nil, fmt.Errorf("section name table index %d of %d sections", shstrndx, shnum)
	}
	data := make([]byte, shnum*shentsize)
	if err := fr.readAt(data, shoff, "section headers"); err != nil {
		return nil, err
	}
	f.Sections = make([]Section, shnum)
	names := make([]uint32, shnum)
	for i := range f.Sections {
		s, name, err := f.parseSectionHeader(fr, data[uint64(i)*shentsize:], shoff+uint64(i)*shentsize)
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", i, err)
		}
		f.Sections[i], names[i] = s, name
	}
	if shstrndx == 0 {
		return f, nil
	}
	shstr := &f.Sections[shstrndx]
	if shstr.Type != elf.SHT_STRTAB {
		return nil, fmt.Errorf("section name table (section %d) is of type %s", shstrndx, shstr.Type)
	}
	table, err := f.data(fr, shstr, MaxNameTable)
	if err != nil {
		return nil, fmt.Errorf("section name table: %w", err)
	}
	strs := string(table)
	for i := range f.Sections {
		name, ok := cstring(strs, names[i])
		if !ok {
			return nil, fmt.Errorf("section %d: bad name offset %d", i, names[i])
		}
		f.Sections[i].Name = name
	}
	return f, nil
}

// sectionHeader reads the section header at off.
func (f *File) sectionHeader(fr *fileReader, off, size uint64) (Section, error) {
	b := make([]byte, size)
	if err := fr.readAt(b, off, "section header"); err != nil {
		return Section{}, err
	}
	s, _, err := f.parseSectionHeader(fr, b, off)
	return s, err
}

func (f *File) parseSectionHeader(fr *fileReader, b []byte, at uint64) (Section, uint32, error) {
	bo := f.ByteOrder
	var s Section
	var name uint32
	if f.Class == elf.ELFCLASS64 {
		name = bo.Uint32(b)
		s.Type, s.Flags = elf.SectionType(bo.Uint32(b[4:])), elf.SectionFlag(bo.Uint64(b[8:]))
		s.Addr, s.Offset, s.FileSize = bo.Uint64(b[16:]), bo.Uint64(b[24:]), bo.Uint64(b[32:])
		s.Link, s.Info = bo.Uint32(b[40:]), bo.Uint32(b[44:])
		s.Addralign, s.Entsize = bo.Uint64(b[48:]), bo.Uint64(b[56:])
	} else {
		name = bo.Uint32(b)
		s.Type, s.Flags = elf.SectionType(bo.Uint32(b[4:])), elf.SectionFlag(bo.Uint32(b[8:]))
		s.Addr, s.Offset, s.FileSize = uint64(bo.Uint32(b[12:])), uint64(bo.Uint32(b[16:])), uint64(bo.Uint32(b[20:]))
		s.Link, s.Info = bo.Uint32(b[24:]), bo.Uint32(b[28:])
		s.Addralign, s.Entsize = uint64(bo.Uint32(b[32:])), uint64(bo.Uint32(b[36:]))
	}
	s.Size = s.FileSize
	if s.Flags&elf.SHF_COMPRESSED != 0 && s.Type != elf.SHT_NOBITS {
		// The compression header: type, then the uncompressed size and
		// alignment (ELF64 has a reserved word after the type).
		if f.Class == elf.ELFCLASS64 {
			s.chdrSize = 24
		} else {
			s.chdrSize = 12
		}
		if s.FileSize < s.chdrSize {
			return s, name, fmt.Errorf("compressed section of %d bytes has no room for its compression header (section header at 0x%x)", s.FileSize, at)
		}
		ch := make([]byte, s.chdrSize)
		if err := fr.readAt(ch, s.Offset, "compression header"); err != nil {
			return s, name, err
		}
		s.compression = elf.CompressionType(bo.Uint32(ch))
		if f.Class == elf.ELFCLASS64 {
			s.Size, s.Addralign = bo.Uint64(ch[8:]), bo.Uint64(ch[16:])
		} else {
			s.Size, s.Addralign = uint64(bo.Uint32(ch[4:])), uint64(bo.Uint32(ch[8:]))
		}
	}
	return s, name, nil
}

// Section is the first section of that name, or nil.
func (f *File) Section(name string) *Section {
	for i := range f.Sections {
		if f.Sections[i].Name == name {
			return &f.Sections[i]
		}
	}
	return nil
}

// Data reads a section's contents, uncompressed, refusing a section larger
// than limit bytes (uncompressed) before allocating it. A compressed
// section is decompressed into a buffer of exactly its claimed size; a
// stream that ends early or runs past that size is an error.
func (f *File) Data(s *Section, limit uint64) ([]byte, error) {
	b, err := f.data(&fileReader{r: f.r, size: f.size}, s, limit)
	if err != nil {
		return nil, fmt.Errorf("section %s: %w", s.Name, err)
	}
	return b, nil
}

func (f *File) data(fr *fileReader, s *Section, limit uint64) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS {
		return nil, errors.New("occupies no space in the file")
	}
	if s.Offset > fr.size || s.FileSize > fr.size-s.Offset {
		return nil, fmt.Errorf("%d bytes at offset 0x%x run past the end of the file (%d bytes)", s.FileSize, s.Offset, fr.size)
	}
	if s.Size > limit {
		return nil, fmt.Errorf("%d bytes, more than the %d read", s.Size, limit)
	}
	if s.Flags&elf.SHF_COMPRESSED == 0 {
		b := make([]byte, s.FileSize)
		if err := fr.readAt(b, s.Offset, "section data"); err != nil {
			return nil, err
		}
		return b, nil
	}
	if s.Flags&elf.SHF_ALLOC != 0 {
		return nil, errors.New("compressed, but loaded into memory (SHF_COMPRESSED applies only to non-allocated sections)")
	}
	src := io.NewSectionReader(fr.r, int64(s.Offset+s.chdrSize), int64(s.FileSize-s.chdrSize))
	var zr io.Reader
	switch s.compression {
	case elf.COMPRESS_ZLIB:
		r, err := zlibReader(src)
		if err != nil {
			return nil, fmt.Errorf("zlib: %w", err)
		}
		defer r.Close()
		zr = r
	case elf.COMPRESS_ZSTD:
		r, err := zstdReader(src, s.Size)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer r.Close()
		zr = r
	default:
		return nil, fmt.Errorf("unknown compression type %d", s.compression)
	}
	b := make([]byte, s.Size)
	if _, err := io.ReadFull(zr, b); err != nil {
		return nil, fmt.Errorf("decompressing %d bytes: %w", s.Size, err)
	}
	// One byte more than claimed is a lie about the size.
	var one [1]byte
	if n, _ := zr.Read(one[:]); n > 0 {
		return nil, fmt.Errorf("decompresses to more than the %d bytes its header claims", s.Size)
	}
	return b, nil
}

// cstring is the NUL-terminated string at off of table, of at most
// MaxName bytes; it shares table's memory.
func cstring(table string, off uint32) (string, bool) {
	if uint64(off) >= uint64(len(table)) {
		return "", false
	}
	rest := table[off:]
	if len(rest) > MaxName+1 {
		rest = rest[:MaxName+1]
	}
	i := strings.IndexByte(rest, 0)
	if i < 0 {
		return "", false
	}
	return rest[:i], true
}

// fileReader reads whole ranges of the file, checked against its size.
type fileReader struct {
	r    io.ReaderAt
	size uint64
}

func (fr *fileReader) readAt(b []byte, off uint64, what string) error {
	if off > fr.size || uint64(len(b)) > fr.size-off {
		return fmt.Errorf("%s (%d bytes at offset 0x%x) runs past the end of the file (%d bytes)", what, len(b), off, fr.size)
	}
	n, err := fr.r.ReadAt(b, int64(off))
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %s at offset 0x%x: %w", what, off, err)
}
