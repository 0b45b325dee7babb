package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// mapperSource maps the executable segments of every file it is given, as
// the dynamic loader maps a library, says so and waits; with -t it just
// runs a moment (a short-lived distinct binary).
const mapperSource = `#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "-t") == 0) { usleep(100000); return 0; }
	for (int i = 1; i < argc; i++) {
		int fd = open(argv[i], O_RDONLY);
		Elf64_Ehdr eh;
		if (fd < 0 || pread(fd, &eh, sizeof eh, 0) != sizeof eh) { perror(argv[i]); return 1; }
		for (int j = 0; j < eh.e_phnum; j++) {
			Elf64_Phdr ph;
			if (pread(fd, &ph, sizeof ph, eh.e_phoff + j * sizeof ph) != sizeof ph) return 1;
			if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
			off_t off = ph.p_offset & ~0xfffUL;
			if (mmap(NULL, ph.p_filesz + (ph.p_offset - off), PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, off) == MAP_FAILED) { perror("mmap"); return 1; }
		}
		close(fd);
	}
	printf("mapped %d\n", argc - 1);
	fflush(stdout);
	for (;;) pause();
}
`

// victimSource spends its time in victimLeaf under victimHot; built
// without frame pointers, the chain main;victimHot;victimLeaf comes out
// only when the profiler has its file's unwind rows (and names only with
// its symbols).
const victimSource = `__attribute__((noipa)) long victimLeaf(long n) { long s = 0; for (long i = 0; i < n; i++) s += i * i ^ (s >> 3); return s; }
__attribute__((noipa)) long victimHot(void) { return victimLeaf(5000000) + 1; }
int main(void) { volatile long s = 0; for (;;) s += victimHot(); }
`

// refusedLine is the log line of a file whose rows were refused.
var refusedLine = regexp.MustCompile(`unwind rows of a file not loaded.* file=(\S+)`)

// TestProfilerTablesAttack: an unprivileged user whose processes the
// profiler selects maps 45 copies of libc (each a distinct file of 28,000
// rows: together more than the kernel's whole table) and runs distinct
// binaries in turn. It gets at most its share of the table; a root process
// started meanwhile still has its rows and names; when the user's
// processes are gone, rows, files and symbol tables return to what the
// root process alone holds; memory stays bounded.
func TestProfilerTablesAttack(t *testing.T) {
	testkit.RequireTools(t, "gcc")
	a := testkit.NewAttacker(t)
	libc, err := filepath.EvalSymlinks("/lib/x86_64-linux-gnu/libc.so.6")
	if err != nil {
		t.Skipf("Debian's libc is needed: %v", err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	build := func(name, src string, flags ...string) string {
		bin := filepath.Join(dir, name)
		testkit.BuildCAt(t, bin, []string{src}, flags...)
		return bin
	}
	mapper := build("pxmapper", mapperSource, "-O1")
	victim := build("pxvictim", victimSource, "-O2", "-fomit-frame-pointer")
	// The attacker's own copies: its binary and 45 libraries.
	data, _ := os.ReadFile(mapper)
	a.WriteFile(t, filepath.Join(a.Home, "pxmapper"), data, 0o755)
	a.Run(t, `for i in $(seq 45); do cp `+libc+` lib$i.so; done; mkdir -p churn`)

	os.WriteFile(filepath.Join(dir, "targets.yaml"), []byte("targets:\n  - app: attack\n    comm: pxmapper\n  - app: victim\n    comm: pxvictim\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte("metrics-export-rules:\n  victim_named_seconds:\n    expr: victim.cpu\n    node: 'main;victimHot;victimLeaf'\n    group_by: [pid]\n"), 0o644)
	addr := freePort(t)
	exp := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr,
		"--profile.config="+filepath.Join(dir, "targets.yaml"), "--rules.file="+filepath.Join(dir, "rules.yaml"))

	metric := func(prefix string) float64 { return seriesValue(t, addr, prefix) }
	rows := func() float64 { return metric(`probe_exporter_profiler_unwind_rows{state="used"}`) }
	named := func(pid int) float64 {
		_, body := get(t, "http://"+addr+"/exported-metrics")
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, `victim_named_seconds{pid="`+strconv.Itoa(pid)+`"} `); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return 0
	}
	startVictim := func(name string) *exec.Cmd {
		bin := filepath.Join(dir, name, "pxvictim")
		os.MkdirAll(filepath.Dir(bin), 0o755)
		data, _ := os.ReadFile(victim)
		os.WriteFile(bin, data, 0o755) // a file of its own
		cmd := exec.Command(bin)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}

	// Root's process alone: the baseline.
	v1 := startVictim("v1")
	testkit.Eventually(t, "the root process's stacks named through its unwind rows", func() bool { return named(v1.Process.Pid) > 0 })
	base, baseFiles := rows(), metric("probe_exporter_profiler_unwind_files ")
	t.Logf("baseline: %.0f rows of %.0f files", base, baseFiles)

	// The flood: 45 copies of libc in one process.
	args := []string{}
	for i := 1; i <= 45; i++ {
		args = append(args, filepath.Join(a.Home, "lib"+strconv.Itoa(i)+".so"))
	}
	flood := a.Command(filepath.Join(a.Home, "pxmapper"), args...)
	out, _ := flood.StdoutPipe()
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { flood.Process.Kill(); flood.Wait() })
	buf := make([]byte, 64)
	if n, _ := out.Read(buf); !strings.HasPrefix(string(buf[:n]), "mapped 45") {
		t.Fatalf("the attacker's mapper: %q", buf[:n])
	}
	testkit.Eventually(t, "the attacker's files refused over its share", func() bool {
		return metric(`probe_exporter_profiler_unwind_skipped_files_total{reason="user_limit"}`) > 0
	})
	flooded := rows()
	t.Logf("flooded: %.0f rows (%.0f over the baseline; a user's share is %d)", flooded, flooded-base, 1<<18)
	if flooded-base > 1<<18 {
		t.Errorf("the attacker holds %.0f rows, over its share of %d", flooded-base, 1<<18)
	}
	if flooded-base < 1<<17 {
		t.Errorf("the attacker holds %.0f rows: its files were not loaded up to its share", flooded-base)
	}

	// A root process started during the flood gets its rows and names.
	v2 := startVictim("v2")
	testkit.Eventually(t, "a root process started during the flood named through its unwind rows", func() bool { return named(v2.Process.Pid) > 0 })
	v2.Process.Kill()
	v2.Wait()
	flood.Process.Kill()
	flood.Wait()

	// Distinct binaries in turn, each a short-lived profiled process.
	a.Run(t, `for i in $(seq 60); do mkdir -p churn/$i; cp pxmapper churn/$i/pxmapper; churn/$i/pxmapper -t; done`)

	testkit.Eventually(t, "rows, files and symbols back to the baseline", func() bool {
		return rows() == base && metric("probe_exporter_profiler_unwind_files ") == baseFiles &&
			metric("probe_exporter_profiler_symbol_files ") <= baseFiles+1
	})
	if got := named(v1.Process.Pid); got <= 0 {
		t.Errorf("the first root process is no longer named")
	}
	hwm := testkit.StatusKiB(t, exp.Pid(), "VmHWM:")
	t.Logf("exporter VmHWM %d MiB, symbols %.0f bytes", hwm>>10, metric("probe_exporter_profiler_symbol_bytes "))
	if hwm > 200<<10 {
		t.Errorf("exporter VmHWM %d MiB, over 200 MiB", hwm>>10)
	}
	log := exp.Log()
	if strings.Contains(log, "panic:") {
		t.Errorf("the exporter panicked:\n%s", tail(log, 40))
	}
	// Each refused file is logged once: 45 copies, at most 45 lines.
	logged := map[string]int{}
	for _, l := range strings.Split(log, "\n") {
		if m := refusedLine.FindStringSubmatch(l); m != nil {
			logged[m[1]]++
		}
	}
	if len(logged) == 0 {
		t.Errorf("no refused file logged:\n%s", tail(log, 20))
	}
	for f, n := range logged {
		if n > 1 {
			t.Errorf("%s logged %d times, want once", f, n)
		}
	}
	if st, _ := os.ReadFile("/proc/" + strconv.Itoa(v1.Process.Pid) + "/stat"); strings.Contains(string(st), ") T ") {
		t.Errorf("the root process is left stopped")
	}
}
