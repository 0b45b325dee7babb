package procfs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestBoundedReads: a process's files are read up to their caps: a long
// command line is cut, an oversized stat or maps file is an error, and a
// FIFO planted where a file is expected does not block.
func TestBoundedReads(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "42")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "comm"), []byte("victim\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cmdline"), bytes.Repeat([]byte("a"), MaxCmdline+10), 0o644)
	os.WriteFile(filepath.Join(dir, "stat"), append([]byte("42 (victim) S "), bytes.Repeat([]byte("1 "), MaxSmallFile)...), 0o644)
	p, err := Read(root, 42)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Cmdline) != MaxCmdline || p.StartTime != 0 {
		t.Errorf("command line of %d bytes, start time %d: want it cut to %d, and the oversized stat ignored", len(p.Cmdline), p.StartTime, MaxCmdline)
	}
	if _, err := readStat(dir); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized stat: %v", err)
	}

	line := "7f0000000000-7f0000001000 r-xp 00000000 08:01 1 /" + strings.Repeat("p", 200) + "\n"
	big := io.MultiReader(strings.NewReader(strings.Repeat(line, MaxMaps/len(line))), strings.NewReader(line))
	if _, err := ParseMaps(big); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("maps past the cap: %v", err)
	}

	if err := mkfifo(filepath.Join(dir, "status")); err != nil {
		t.Skip(err)
	}
	if NSPID(root, 42) != 0 {
		t.Error("NSpid from a FIFO")
	}
}

// FuzzParseMaps: no maps file panics the parser.
func FuzzParseMaps(f *testing.F) {
	f.Add("55d0c0a00000-55d0c0a02000 r-xp 00002000 08:01 1234                       /usr/bin/python3.11\n")
	f.Add("7f0000000000-7f0000001000 r-xp 00001000 00:2c 7 /usr/lib/libx.so (deleted)\n7ffd1000-7ffd3000 r-xp 00000000 00:00 0 [vdso]\n")
	f.Add("7f0000000000-7f0000001000 rw-p 00000000 00:00 0")
	f.Add("- - - :")
	f.Fuzz(func(t *testing.T, s string) {
		maps, err := ParseMaps(strings.NewReader(s))
		if err == nil && len(maps) > strings.Count(s, "\n")+1 {
			t.Fatalf("%d mappings of %d lines", len(maps), strings.Count(s, "\n")+1)
		}
	})
}

// FuzzParseStat: no stat file panics the parser.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 100\n"))
	f.Add([]byte("42 (victim)"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseStat(data)
	})
}

// FuzzParseNSPID: no status file panics the parser.
func FuzzParseNSPID(f *testing.F) {
	f.Add([]byte("Name:\tx\nNSpid:\t42\t7\n"))
	f.Add([]byte("NSpid:"))
	f.Add([]byte("NSpid:\t99999999999999999999\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseNSPID(data)
	})
}

func mkfifo(path string) error {
	os.Remove(path)
	return syscall.Mkfifo(path, 0o644)
}
