package usdt

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/elfread"
	"github.com/probe-exporter/probe_exporter/internal/testkit/elfgen"
)

// note is one ELF note of the given header fields and payload.
func note(namesz, descsz, typ uint32, payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, namesz)
	b = binary.LittleEndian.AppendUint32(b, descsz)
	b = binary.LittleEndian.AppendUint32(b, typ)
	return append(b, payload...)
}

// stapsdt is a well-formed stapsdt note for a probe at loc.
func stapsdt(loc uint64, provider, name, args string) []byte {
	desc := binary.LittleEndian.AppendUint64(nil, loc)
	desc = binary.LittleEndian.AppendUint64(desc, 0)
	desc = binary.LittleEndian.AppendUint64(desc, 0)
	desc = append(desc, provider+"\x00"+name+"\x00"+args+"\x00"...)
	for len(desc)%4 != 0 {
		desc = append(desc, 0)
	}
	return note(8, uint32(len(desc)), noteType, append([]byte("stapsdt\x00"), desc...))
}

// hostileNotes are .note.stapsdt sections that crashed the reader, or
// must be errors, with what the error must say.
var hostileNotes = []struct {
	name string
	data []byte
	want string
}{
	{"namesz 0xffffffff", note(0xffffffff, 0, noteType, make([]byte, 16)), "run past the section"},
	{"descsz 0xffffffff", note(8, 0xffffffff, noteType, []byte("stapsdt\x00")), "run past the section"},
	{"both wrap to 0", note(0xfffffffd, 0xfffffffd, noteType, make([]byte, 16)), "run past the section"},
	{"short description", note(8, 4, noteType, []byte("stapsdt\x00\x00\x00\x00\x00")), "short note"},
	{"unterminated strings", note(8, 28, noteType, append([]byte("stapsdt\x00"), append(make([]byte, 24), "abcd"...)...)), "truncated"},
}

// noteFile is an ELF file holding notes as its .note.stapsdt, with its
// .text at 0x1000 (where the probes are).
func noteFile(notes []byte) []byte {
	return elfgen.Build(
		elfgen.Section{Name: ".text", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Addr: 0x1000, Data: make([]byte, 64)},
		elfgen.Section{Name: noteSection, Type: elf.SHT_NOTE, Data: notes})
}

func TestHostileNotes(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range hostileNotes {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.Repeat("x", i+1))
			os.WriteFile(path, noteFile(tc.data), 0o644)
			_, err := ReadNotes(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v, want one naming %s and saying %q", err, path, tc.want)
			}
		})
	}
	path := filepath.Join(dir, "good")
	os.WriteFile(path, noteFile(append(stapsdt(0x1008, "app", "start", "-4@%eax"), stapsdt(0x1010, "app", "stop", "")...)), 0o644)
	notes, err := ReadNotes(path)
	if err != nil || len(notes) != 2 || notes[0].Name != "start" || notes[0].Args != "-4@%eax" || notes[1].Provider != "app" {
		t.Fatalf("%+v %v", notes, err)
	}
}

// TestSameAsDebugELF: on python3.11 (which has SDT probes) the notes are
// those the reader found through debug/elf before.
func TestSameAsDebugELF(t *testing.T) {
	const python = "/usr/bin/python3.11"
	if _, err := os.Stat(python); err != nil {
		t.Skip(err)
	}
	got, err := ReadNotes(python)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(python)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	data, err := ef.Section(noteSection).Data()
	if err != nil {
		t.Fatal(err)
	}
	// The loop of the reader before: debug/elf's data, 32-bit sizes.
	var want []Note
	for len(data) >= 12 {
		namesz, descsz := binary.LittleEndian.Uint32(data), binary.LittleEndian.Uint32(data[4:])
		data = data[12:]
		nameEnd := (namesz + 3) &^ 3
		name := string(bytes.TrimRight(data[:namesz], "\x00"))
		desc := data[nameEnd : nameEnd+descsz]
		data = data[nameEnd+(descsz+3)&^3:]
		if name != "stapsdt" {
			continue
		}
		var n Note
		n.Location, n.Base, n.Semaphore = binary.LittleEndian.Uint64(desc), binary.LittleEndian.Uint64(desc[8:]), binary.LittleEndian.Uint64(desc[16:])
		s := bytes.SplitN(desc[24:], []byte{0}, 4)
		n.Provider, n.Name, n.Args = string(s[0]), string(s[1]), string(s[2])
		if b := ef.Section(baseSection); b != nil && n.Base != 0 && b.Addr != n.Base {
			n.Location += b.Addr - n.Base
			if n.Semaphore != 0 {
				n.Semaphore += b.Addr - n.Base
			}
		}
		for _, p := range ef.Progs {
			if p.Type == elf.PT_LOAD && n.Location >= p.Vaddr && n.Location < p.Vaddr+p.Memsz {
				n.LocationOffset = n.Location - p.Vaddr + p.Off
			}
			if n.Semaphore != 0 && p.Type == elf.PT_LOAD && n.Semaphore >= p.Vaddr && n.Semaphore < p.Vaddr+p.Memsz {
				n.SemaphoreOffset = n.Semaphore - p.Vaddr + p.Off
			}
		}
		want = append(want, n)
	}
	if len(got) == 0 || !reflect.DeepEqual(got, want) {
		t.Fatalf("%d notes, %d through debug/elf:\n%+v\n%+v", len(got), len(want), got, want)
	}
	t.Logf("%d notes, as through debug/elf", len(got))
}

// FuzzNotes: no .note.stapsdt section panics the reader.
func FuzzNotes(f *testing.F) {
	for _, tc := range hostileNotes {
		f.Add(tc.data)
	}
	f.Add(append(stapsdt(0x1008, "app", "start", "-4@%eax"), stapsdt(0x1010, "app", "stop", "")...))
	f.Fuzz(func(t *testing.T, notes []byte) {
		data := noteFile(notes)
		file, err := elfread.NewFile(bytes.NewReader(data), uint64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		readNotes(file)
	})
}
