package scripts

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestMarkedPidsBounded: the /proc walk that finds a script run's escaped
// processes reads environments that other users' processes claim. One
// claiming gigabytes (PR_SET_MM_MAP needs no privilege) is scanned only to
// maxEnviron, through a fixed buffer; marked processes are still found,
// also behind entries longer than the buffer.
func TestMarkedPidsBounded(t *testing.T) {
	const marker = runEnv + "=r.42"
	root := t.TempDir()
	proc := func(pid string, env []byte, size int64) {
		t.Helper()
		dir := filepath.Join(root, pid)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, "environ"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(env); err != nil {
			t.Fatal(err)
		}
		if size > 0 {
			// Sparse: the zeros a process's untouched memory reads as.
			if err := f.Truncate(size); err != nil {
				t.Fatal(err)
			}
		}
	}
	long := strings.Repeat("x", 200<<10)
	proc("10", []byte("HOME=/\x00"+marker+"\x00PATH=/bin\x00"), 0)
	proc("11", []byte("A="+long+"\x00"+marker), 0)             // the last, without its NUL
	proc("12", []byte("A="+long+marker+"\x00"), 0)             // only the tail of an entry
	proc("13", []byte(marker+"x\x00"+"X"+marker+"\x00"), 0)    // near misses
	proc("14", []byte("HOME=/\x00"), 4<<30)                    // 4 GiB of zeros
	proc("15", append(make([]byte, maxEnviron), marker...), 0) // past the scanned part
	proc("self", []byte(marker+"\x00"), 0)                     // not a pid

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got := markedPids(root, marker)
	runtime.ReadMemStats(&after)
	slices.Sort(got)
	if !slices.Equal(got, []int{10, 11}) {
		t.Errorf("marked pids %v, want [10 11]", got)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("the walk allocated %d bytes (the environments are 4 GiB and %d MiB)", alloc, maxEnviron>>20)
	}
}

func FuzzHasEntry(f *testing.F) {
	f.Add([]byte("A=1\x00B=2\x00"), []byte("B=2"))
	f.Add([]byte("B=2"), []byte("B=2"))
	f.Add([]byte("xB=2\x00"), []byte("B=2"))
	f.Fuzz(func(t *testing.T, env, want []byte) {
		if len(want) == 0 || len(want) >= 16 || bytes.IndexByte(want, 0) >= 0 {
			return
		}
		got := hasEntry(bufio.NewReaderSize(bytes.NewReader(env), 16), want)
		wantFound := slices.ContainsFunc(bytes.Split(env, []byte{0}), func(e []byte) bool { return bytes.Equal(e, want) })
		if got != wantFound {
			t.Errorf("hasEntry(%q, %q) = %v, want %v", env, want, got, wantFound)
		}
	})
}
