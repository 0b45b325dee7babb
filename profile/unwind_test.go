package profile

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/procfs"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// The programs do a fixed amount of work (argv[1] rounds), so they are
// sampled as often however loaded the machine is: samples follow CPU time.

// hotProgram: main calls hot_a and hot_b in turn, each calling the leaf
// function leaf, 70 % of the work under hot_a. GCC gives leaf no frame
// pointer even with -fno-omit-frame-pointer, so frame pointers alone lose
// every leaf's caller.
const hotProgram = `#include <stdio.h>
#include <stdlib.h>
__attribute__((noipa)) long leaf(long n) { long s = 0; for (long i = 0; i < n; i++) s += i * i ^ (s >> 3); return s; }
__attribute__((noipa)) long hot_a(void) { return leaf(7000000) + 1; }
__attribute__((noipa)) long hot_b(void) { return leaf(3000000) + 2; }
int main(int argc, char **argv) {
	long rounds = atol(argv[1]), s = 0;
	getchar();
	for (long r = 0; r < rounds; r++) { s += hot_a(); s += hot_b(); }
	return (int)(s & 1);
}
`

// qsortProgram sorts with a comparator that burns CPU, so most samples are
// in cmp, called by libc's qsort (built without frame pointers).
const qsortProgram = `#include <stdio.h>
#include <stdlib.h>
__attribute__((noipa)) int cmp(const void *a, const void *b) {
	volatile long x = 0; for (int i = 0; i < 2000; i++) x += i;
	long d = *(const long *)a - *(const long *)b; return (d > 0) - (d < 0);
}
int main(int argc, char **argv) {
	long rounds = atol(argv[1]), v[512];
	getchar();
	for (long r = 0; r < rounds; r++) {
		for (int i = 0; i < 512; i++) v[i] = rand();
		qsort(v, 512, sizeof v[0], cmp);
	}
	return 0;
}
`

// share is the part of the samples of stacks containing every one of
// within that contain want (all root-first, ";"-joined).
func share(stacks map[string]uint64, want string, within ...string) (float64, uint64) {
	var hit, all uint64
	for st, n := range stacks {
		st = ";" + st + ";"
		ok := true
		for _, w := range within {
			ok = ok && strings.Contains(st, ";"+w+";")
		}
		if !ok {
			continue
		}
		all += n
		if strings.Contains(st, ";"+want+";") {
			hit += n
		}
	}
	if all == 0 {
		return 0, 0
	}
	return float64(hit) / float64(all), all
}

// perfStacks runs bin under Linux perf with DWARF unwinding (the reference)
// and returns its root-first stacks, ";"-joined.
func perfStacks(t *testing.T, bin string, args ...string) map[string]uint64 {
	t.Helper()
	testkit.RequireTools(t, "perf")
	data := filepath.Join(t.TempDir(), "perf.data")
	rec := exec.Command("perf", append([]string{"record", "-q", "-e", "cpu-clock", "-F", "999", "--call-graph", "dwarf", "-o", data, bin}, args...)...)
	if out, err := rec.CombinedOutput(); err != nil {
		t.Skipf("perf record cannot run here: %v\n%s", err, out)
	}
	out, err := exec.Command("perf", "script", "-i", data, "-F", "ip,sym").Output()
	if err != nil {
		t.Fatalf("perf script: %v", err)
	}
	stacks := map[string]uint64{}
	var frames []string
	flush := func() {
		if len(frames) == 0 {
			return
		}
		for i, j := 0, len(frames)-1; i < j; i, j = i+1, j-1 {
			frames[i], frames[j] = frames[j], frames[i]
		}
		stacks[strings.Join(frames, ";")]++
		frames = frames[:0]
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			flush()
			continue
		}
		if len(f) >= 2 {
			frames = append(frames, f[1])
		}
	}
	flush()
	return stacks
}

// profileRun profiles one run of bin and returns its stacks.
func profileRun(t *testing.T, bin string, args ...string) map[string]uint64 {
	t.Helper()
	sink := &recordingSink{stacks: map[string]uint64{}}
	p := newProfiler(t, sink, 999, Target{App: "uw", Selector: config.Selector{Comm: filepath.Base(bin)}})
	// The program waits on stdin until the profiler has loaded the unwind
	// rows of every file it mapped (libc is mapped by the dynamic loader
	// after exec, and until the profiler sees it its frames are walked by
	// frame pointers only): the comparison is of unwinding, not of how
	// soon a new process's libraries are picked up on a loaded machine.
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(2 * time.Minute); !p.unw.describedAll(pid); {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the profiler never loaded the unwind rows of pid %d's files", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stdin.Write([]byte("\n"))
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, out.Bytes())
	}
	// The exit event may still be on its way: samples are kept until
	// drained either way.
	time.Sleep(100 * time.Millisecond)
	if err := p.Drain(); err != nil {
		t.Fatal(err)
	}
	return sink.stacks
}

// TestUnwindAgainstPerf: the share of main;hot_a;leaf among the samples in
// leaf is within 5 points of what perf's DWARF unwinding gives, and of the
// 70 % the program is built to spend there, with and without frame
// pointers; and stacks through libc's qsort reach main as often as perf's.
func TestUnwindAgainstPerf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		src    string
		flags  []string
		rounds string
		want   string
		in     []string
		built  float64 // the share by construction, or NaN
	}{
		{"O2", hotProgram, []string{"-O2", "-fomit-frame-pointer"}, "200", "main;hot_a;leaf", []string{"leaf"}, 0.70},
		{"O2-frame-pointers", hotProgram, []string{"-O2", "-fno-omit-frame-pointer"}, "200", "main;hot_a;leaf", []string{"leaf"}, 0.70},
		{"qsort", qsortProgram, []string{"-O2"}, "700", "main", []string{"cmp"}, math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "uw" + strconv.Itoa(os.Getpid()%1000) + strings.ReplaceAll(tc.name, "-", "")
			if len(name) > 15 {
				name = name[:15]
			}
			bin := testkit.BuildC(t, name, tc.src, tc.flags...)
			ref := perfStacks(t, bin, tc.rounds)
			refShare, refN := share(ref, tc.want, tc.in...)
			ours := profileRun(t, bin, tc.rounds)
			got, n := share(ours, tc.want, tc.in...)
			t.Logf("%s: %.3f of %d samples (perf: %.3f of %d)", tc.want, got, n, refShare, refN)
			if n < 1000 || refN < 1000 {
				t.Fatalf("too few samples: ours %d, perf %d; ours %v", n, refN, keys(ours))
			}
			if testing.Verbose() {
				for st, c := range ours {
					if strings.Contains(";"+st+";", ";"+tc.in[0]+";") && !strings.Contains(";"+st+";", ";"+tc.want+";") && c > 2 {
						t.Logf("not %s: %d %s", tc.want, c, st)
					}
				}
			}
			if math.Abs(got-refShare) > 0.05 {
				t.Errorf("share of %s: %.3f, perf's DWARF unwinding gives %.3f", tc.want, got, refShare)
			}
			if !math.IsNaN(tc.built) && math.Abs(got-tc.built) > 0.05 {
				t.Errorf("share of %s: %.3f, built to be %.2f", tc.want, got, tc.built)
			}
		})
	}
}

// describedAll reports whether every executable file mapping of pid (as
// /proc/PID/maps has it now) has its unwind rows in the kernel.
func (u *unwinder) describedAll(pid int) bool {
	maps, err := procfs.ReadMaps("/proc", pid)
	if err != nil {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, m := range maps {
		if m.Path == "" || m.Path[0] != '/' || !strings.Contains(m.Perms, "x") {
			continue
		}
		found := false
		for _, d := range u.described[pid] {
			found = found || d.Start <= m.Start && m.Start < d.End
		}
		if !found {
			return false
		}
	}
	return true
}
