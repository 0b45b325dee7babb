// Package elfgen writes small ELF files for tests: whole files made of
// given sections, and copies of a real binary with one section replaced,
// to build the malformed inputs the exporter's parsers must survive. It
// is imported by tests only.
package elfgen

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// Section is one section of a file Build writes.
type Section struct {
	Name    string
	Type    elf.SectionType
	Flags   elf.SectionFlag
	Addr    uint64
	Link    uint32
	Entsize uint64
	Data    []byte
}

// Build writes a little-endian ELF64 x86-64 shared object holding the
// sections (after the null section, and before the section name table),
// with one PT_LOAD program header covering the whole file at address 0.
func Build(sections ...Section) []byte {
	le := binary.LittleEndian
	var names bytes.Buffer
	names.WriteByte(0)
	nameOff := make([]uint32, len(sections))
	for i, s := range sections {
		nameOff[i] = uint32(names.Len())
		names.WriteString(s.Name)
		names.WriteByte(0)
	}
	shstrName := uint32(names.Len())
	names.WriteString(".shstrtab\x00")

	const ehdr, phdr = 64, 56
	body := bytes.NewBuffer(make([]byte, ehdr+phdr))
	offs := make([]uint64, len(sections))
	for i, s := range sections {
		for body.Len()%8 != 0 {
			body.WriteByte(0)
		}
		offs[i] = uint64(body.Len())
		body.Write(s.Data)
	}
	strOff := uint64(body.Len())
	body.Write(names.Bytes())
	for body.Len()%8 != 0 {
		body.WriteByte(0)
	}
	shoff := uint64(body.Len())
	shnum := len(sections) + 2
	sh := make([]byte, 64*shnum)
	put := func(i int, name uint32, typ elf.SectionType, flags elf.SectionFlag, addr, off, size uint64, link uint32, entsize uint64) {
		b := sh[64*i:]
		le.PutUint32(b, name)
		le.PutUint32(b[4:], uint32(typ))
		le.PutUint64(b[8:], uint64(flags))
		le.PutUint64(b[16:], addr)
		le.PutUint64(b[24:], off)
		le.PutUint64(b[32:], size)
		le.PutUint32(b[40:], link)
		le.PutUint64(b[48:], 1)
		le.PutUint64(b[56:], entsize)
	}
	for i, s := range sections {
		put(i+1, nameOff[i], s.Type, s.Flags, s.Addr, offs[i], uint64(len(s.Data)), s.Link, s.Entsize)
	}
	put(shnum-1, shstrName, elf.SHT_STRTAB, 0, 0, strOff, uint64(names.Len()), 0, 0)
	body.Write(sh)
	out := body.Bytes()

	copy(out, elf.ELFMAG)
	out[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	out[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	out[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	le.PutUint16(out[16:], uint16(elf.ET_DYN))
	le.PutUint16(out[18:], uint16(elf.EM_X86_64))
	le.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(out[32:], ehdr)  // phoff
	le.PutUint64(out[40:], shoff) // shoff
	le.PutUint16(out[52:], ehdr)
	le.PutUint16(out[54:], phdr)
	le.PutUint16(out[56:], 1)
	le.PutUint16(out[58:], 64)
	le.PutUint16(out[60:], uint16(shnum))
	le.PutUint16(out[62:], uint16(shnum-1))
	p := out[ehdr:]
	le.PutUint32(p, uint32(elf.PT_LOAD))
	le.PutUint32(p[4:], uint32(elf.PF_R|elf.PF_X))
	le.PutUint64(p[32:], uint64(len(out))) // filesz
	le.PutUint64(p[40:], uint64(len(out))) // memsz
	le.PutUint64(p[48:], 0x1000)
	return out
}

// Patch returns a copy of the ELF64 little-endian file bin in which the
// section named target is replaced by a section named name, of type typ
// and flags, holding data (appended to the file). The program headers are
// not touched, so a patched executable still runs.
func Patch(bin []byte, target, name string, typ elf.SectionType, flags elf.SectionFlag, data []byte) ([]byte, error) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return nil, err
	}
	if f.Class != elf.ELFCLASS64 || f.ByteOrder != binary.LittleEndian {
		return nil, fmt.Errorf("patching needs a little-endian ELF64 file")
	}
	le := binary.LittleEndian
	shoff := le.Uint64(bin[40:])
	shstrndx := int(le.Uint16(bin[62:]))
	idx := -1
	for i, s := range f.Sections {
		if s.Name == target {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("no section %s", target)
	}
	names, err := f.Sections[shstrndx].Data()
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), bin...)
	align := func() {
		for len(out)%8 != 0 {
			out = append(out, 0)
		}
	}
	// A new section name table: the old one and the new name.
	align()
	strOff := uint64(len(out))
	nameOff := uint32(len(names))
	out = append(out, names...)
	out = append(out, name...)
	out = append(out, 0)
	strSize := uint64(len(out)) - strOff
	align()
	dataOff := uint64(len(out))
	out = append(out, data...)

	s := out[shoff+64*uint64(shstrndx):]
	le.PutUint64(s[24:], strOff)
	le.PutUint64(s[32:], strSize)
	s = out[shoff+64*uint64(idx):]
	le.PutUint32(s, nameOff)
	le.PutUint32(s[4:], uint32(typ))
	le.PutUint64(s[8:], uint64(flags))
	le.PutUint64(s[24:], dataOff)
	le.PutUint64(s[32:], uint64(len(data)))
	return out, nil
}

// Compressed is data as the contents of an SHF_COMPRESSED ELF64 section:
// the compression header (zlib, size claimed) and the zlib stream of data.
func Compressed(data []byte, claimed uint64) []byte {
	var b bytes.Buffer
	b.Write(chdr(claimed))
	w, _ := zlib.NewWriterLevel(&b, zlib.BestCompression)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// ZlibBomb is an SHF_COMPRESSED ELF64 section that claims, and inflates
// to, size zero bytes (1.5 GB take about 1.5 MB). A whole number of MiB
// is written quickly: the deflate block of one MiB of zeros, once the
// window holds zeros, is the same every time, so it is repeated.
func ZlibBomb(size uint64) []byte {
	const unit = 1 << 20
	var b bytes.Buffer
	b.Write(chdr(size))
	if size%unit != 0 || size < 3*unit {
		w, _ := zlib.NewWriterLevel(&b, zlib.BestCompression)
		w.Write(make([]byte, size))
		w.Close()
		return b.Bytes()
	}
	var d bytes.Buffer
	w, _ := flate.NewWriter(&d, flate.BestCompression)
	zeros := make([]byte, unit)
	var marks [3]int
	for i := range marks {
		w.Write(zeros)
		w.Flush()
		marks[i] = d.Len()
	}
	first, block := d.Bytes()[:marks[0]], d.Bytes()[marks[0]:marks[1]]
	if !bytes.Equal(block, d.Bytes()[marks[1]:marks[2]]) {
		panic("elfgen: deflate blocks of zeros differ")
	}
	b.Write([]byte{0x78, 0xda}) // zlib header, best compression
	b.Write(first)
	for i := uint64(1); i < size/unit; i++ {
		b.Write(block)
	}
	b.Write([]byte{0x03, 0x00}) // an empty final block
	// Adler-32 of size zeros: a stays 1, b adds it once a byte.
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(size%65521)<<16|1))
	return b.Bytes()
}

func chdr(size uint64) []byte {
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h, uint32(elf.COMPRESS_ZLIB))
	binary.LittleEndian.PutUint64(h[8:], size)
	binary.LittleEndian.PutUint64(h[16:], 8)
	return h
}
