package scripts

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
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

// hugeEnviron points its environment at 4 GiB of its untouched memory
// (prctl PR_SET_MM_MAP, which needs no privilege: /proc/PID/environ then
// reads as 4 GiB of zeros), says so and waits to be killed.
const hugeEnviron = `#define _GNU_SOURCE
#include <linux/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(void) {
	unsigned long f[64] = {0}, n = 4UL << 30;
	char buf[4096] = {0}, *s, *tok;
	FILE *st = fopen("/proc/self/stat", "r");
	if (!st || !fread(buf, 1, sizeof buf - 1, st)) return 1;
	s = strrchr(buf, ')') + 2;
	for (int i = 3; (tok = strtok(s, " ")) && i < 64; i++, s = 0) f[i] = strtoul(tok, 0, 10);
	char *p = mmap(0, n, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) return 1;
	struct prctl_mm_map m = {.start_code = f[26], .end_code = f[27], .start_stack = f[28],
		.start_data = f[45], .end_data = f[46], .start_brk = f[47], .brk = (unsigned long)sbrk(0),
		.arg_start = f[48], .arg_end = f[49], .env_start = (unsigned long)p, .env_end = (unsigned long)p + n, .exe_fd = -1};
	if (prctl(PR_SET_MM, PR_SET_MM_MAP, &m, sizeof m, 0) != 0) { perror("PR_SET_MM_MAP"); return 1; }
	puts("ready");
	fflush(stdout);
	pause();
	return 0;
}
`

// TestMarkedPidsRealProc: the same walk over the real /proc while an
// unprivileged user's process claims a 4 GiB environment: the marked
// process is found, and the walk allocates no more than for a few
// environments.
func TestMarkedPidsRealProc(t *testing.T) {
	testkit.RequireTools(t, "gcc")
	a := testkit.NewAttacker(t)
	bin := filepath.Join(a.Home, "huge-environ")
	testkit.BuildCAt(t, bin, []string{hugeEnviron})
	os.Chown(bin, int(a.UID), int(a.GID))
	huge := a.Command(bin)
	out, err := huge.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := huge.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { huge.Process.Kill(); huge.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("the attacker's process did not remap its environment: %q %v", line, err)
	}
	const marker = runEnv + "=r.real"
	marked := exec.Command("sleep", "60")
	marked.Env = []string{marker}
	if err := marked.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { marked.Process.Kill(); marked.Wait() }()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got := markedPids("/proc", marker)
	runtime.ReadMemStats(&after)
	if !slices.Equal(got, []int{marked.Process.Pid}) {
		t.Errorf("marked pids %v, want [%d]", got, marked.Process.Pid)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("the walk allocated %d bytes beside a 4 GiB environment", alloc)
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
