package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// rnProgram calls pe_churn_work() once under its own name, three times
// after taking the name given as its argument (prctl PR_SET_NAME, as
// Python's setproctitle and pre-fork servers' workers do), and twice more
// after renaming itself away.
const rnProgram = `#include <sys/prctl.h>
__attribute__((noinline)) int pe_churn_work(int i) { asm volatile(""); return i; }
int main(int argc, char **argv) {
	pe_churn_work(0);
	prctl(PR_SET_NAME, argv[1]);
	for (int i = 0; i < 3; i++) pe_churn_work(1);
	prctl(PR_SET_NAME, "pe-renamed-away");
	pe_churn_work(2); pe_churn_work(2);
	return 0;
}
`

// rnHuge is rnProgram's hostile sibling: before taking the selected name
// it points its command line and environment at 4 GiB of its untouched
// memory (prctl PR_SET_MM_MAP, which needs no privilege: /proc/PID/cmdline
// and environ then read as 4 GiB of zeros) and maps 20,000 separate pages
// (a maps file of 40,000 lines).
const rnHuge = `#define _GNU_SOURCE
#include <linux/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>
__attribute__((noinline)) int pe_churn_work(int i) { asm volatile(""); return i; }
int main(int argc, char **argv) {
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
		.arg_start = (unsigned long)p, .arg_end = (unsigned long)p + n,
		.env_start = (unsigned long)p, .env_end = (unsigned long)p + n, .exe_fd = -1};
	if (prctl(PR_SET_MM, PR_SET_MM_MAP, &m, sizeof m, 0) != 0) { perror("PR_SET_MM_MAP"); return 1; }
	char *q = mmap(0, 40000 * 4096UL, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	for (int i = 0; q != MAP_FAILED && i < 40000; i += 2) mprotect(q + i * 4096UL, 4096, PROT_READ);
	prctl(PR_SET_NAME, argv[1]);
	for (int i = 0; i < 3; i++) pe_churn_work(1);
	usleep(500000); /* long enough for the profiler to read its maps */
	return 0;
}
`

// TestRenameSelected: 200 short-lived processes that take the selected
// name after they start are selected from then on (the first held while
// its executable is probed), and leave the selection when they rename
// themselves away: exactly 3 calls of each are counted.
func TestRenameSelected(t *testing.T) {
	testkit.RequireTools(t, "gcc", "clang")
	dir := t.TempDir()
	name := "rn" + strconv.Itoa(os.Getpid()%100000)
	os.WriteFile(filepath.Join(dir, "sl_rename.yaml"), []byte(fmt.Sprintf(slConfig, "rename", fmt.Sprintf("binary_name: %q", name+"w"))), 0o644)
	addr := exporter(t, "--config.dir="+dir, "--config.names=sl_rename", "--config.strict")
	// Built after the exporter started: the first renamed process waits
	// for its probes.
	bin := filepath.Join(dir, name)
	testkit.BuildCAt(t, bin, []string{rnProgram}, "-O1")
	const n = 200
	runMany(t, n, func() *exec.Cmd { return exec.Command(bin, name+"w") })
	if got := slValue(t, addr, `probe_exporter_sl_rename_calls_total{kind="0"} `); got != 3*n {
		t.Errorf("%d calls counted, want %d (3 of each process, under the selected name only)", got, 3*n)
	}
	slSettle(t, addr)
}

// TestAttackSelectionEdges: an unprivileged user runs processes whose
// arguments contain a cmdline selector's literal without matching it,
// processes with arguments far beyond what the kernel scans, and processes
// that rename themselves into and out of a selected name, many at once,
// and processes whose command line reads as 4 GiB (rnHuge).
// None is left stopped, none that does not match is counted (the almost
// matching ones are held at exec and continued), the exporter
// serves /metrics throughout, logs no panic and ends on SIGTERM.
func TestAttackSelectionEdges(t *testing.T) {
	testkit.RequireTools(t, "gcc", "clang")
	a := testkit.NewAttacker(t)
	dir := t.TempDir()
	name := "at" + strconv.Itoa(os.Getpid()%100000)
	os.WriteFile(filepath.Join(dir, "sl_cmdline.yaml"), []byte(fmt.Sprintf(slConfig, "cmdline", fmt.Sprintf("cmdline: %q", regexp.QuoteMeta(name)+" secret-arg$"))), 0o644)
	os.WriteFile(filepath.Join(dir, "sl_rename.yaml"), []byte(fmt.Sprintf(slConfig, "rename", fmt.Sprintf("binary_name: %q", name+"w"))), 0o644)
	// The profiler follows the renamed processes too: it reads their
	// maps files.
	os.WriteFile(filepath.Join(dir, "targets.yaml"), []byte("targets:\n  - app: renamed\n    comm: "+name+"w\n"), 0o644)
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--config.dir="+dir, "--config.names=sl_cmdline,sl_rename",
		"--profile.config="+filepath.Join(dir, "targets.yaml"))
	bin := filepath.Join(a.Home, name)
	testkit.BuildCAt(t, bin, []string{rnProgram}, "-O1")
	os.Chown(bin, int(a.UID), int(a.GID))
	attack := func(script string) {
		t.Helper()
		cmd := a.Start(t, "sh", "-c", script)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		// A process left stopped would keep the script waiting.
		testkit.EventuallyWithin(t, "the attacker's processes all ending", 5*time.Minute, func() bool {
			if _, _, err := testkit.TryGet("http://" + addr + "/metrics"); err != nil {
				t.Errorf("/metrics during the attack: %v", err)
			}
			select {
			case err = <-done:
				return true
			default:
				return false
			}
		})
		if err != nil {
			t.Fatalf("attack script: %v", err)
		}
	}
	rename := func() int { return slValue(t, addr, `probe_exporter_sl_rename_calls_total{kind="0"} `) }
	cmdline := func() int { return slValue(t, addr, `probe_exporter_sl_cmdline_calls_total{kind="0"} `) }
	// Almost matching arguments (held as candidates, continued), and
	// processes that never take the selected name.
	attack(fmt.Sprintf(`for i in $(seq 100); do
	%[1]s %[2]sw "%[2]s secret-arg-not" &
	%[1]s other %[2]s &
	wait
done`, bin, name))
	if got := cmdline(); got != 0 {
		t.Errorf("cmdline selector: %d calls of almost matching processes counted", got)
	}
	if got := rename(); got != 300 {
		t.Errorf("rename selector: %d calls counted, want 300", got)
	}
	// Matching arguments after 100 KB of others: beyond the 4 KiB the
	// kernel scans, so userspace decides after exec (not held), and
	// may be late for these short-lived processes (6 calls each).
	attack(fmt.Sprintf(`long=$(head -c 100000 /dev/zero | tr '\0' x)
for i in $(seq 100); do
	%[1]s %[2]sw "$long" "%[2]s secret-arg" &
	wait
done`, bin, name))
	if got := cmdline(); got > 600 {
		t.Errorf("cmdline selector: %d calls counted, at most 600 were made", got)
	}
	if got := rename(); got != 600 {
		t.Errorf("rename selector: %d calls counted, want 600", got)
	}
	// Processes whose command line and environment read as 4 GiB and
	// whose maps file has 40,000 lines take the selected name: the
	// exporter reads at most 1 MiB of each command line (and no
	// environment), selects and profiles them, and its peak RSS stays
	// bounded.
	huge := filepath.Join(a.Home, name+"h")
	testkit.BuildCAt(t, huge, []string{rnHuge}, "-O1")
	os.Chown(huge, int(a.UID), int(a.GID))
	attack(fmt.Sprintf(`for i in $(seq 20); do %s %sw & done; wait`, huge, name))
	if got := rename(); got != 660 {
		t.Errorf("rename selector: %d calls counted, want 660 (3 of each of the 20 hostile processes more)", got)
	}
	if hwm := testkit.StatusKiB(t, p.Pid(), "VmHWM:") >> 10; hwm == 0 || hwm >= 256 {
		t.Errorf("VmHWM %d MiB after command lines of 4 GiB, bound 256 MiB", hwm)
	} else {
		t.Logf("VmHWM %d MiB", hwm)
	}
	if _, _, body := testkit.Get(t, "http://"+addr+"/metrics"); !strings.Contains(body, "probe_exporter_sl_rename_calls_total") {
		t.Fatalf("/metrics without the configs' series")
	}
	if strings.Contains(p.Log(), "panic:") {
		t.Fatalf("panic in the log:\n%s", tail(p.Log(), 40))
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exporter exited %d after SIGTERM", code)
	}
}
