package profile

import (
	"bufio"
	"context"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/symtab"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
	"github.com/probe-exporter/probe_exporter/rules"
	"github.com/probe-exporter/probe_exporter/targets"
)

// The test program: main calls slowFunction (3 units of work) and
// fastFunction (1 unit) in turn, so about 3/4 of its CPU time is in
// slowFunction. It does a fixed amount of work, from a go on its stdin,
// so its samples do not depend on how loaded the machine is.
const splitProgram = `#include <stdio.h>
#include <stdlib.h>
__attribute__((noipa)) void slowFunction(void) { volatile long x = 0; for (long i = 0; i < 3000000; i++) x += i; }
__attribute__((noipa)) void fastFunction(void) { volatile long x = 0; for (long i = 0; i < 1000000; i++) x += i; }
int main(int argc, char **argv) {
	long rounds = atol(argv[1]);
	getchar(); /* the test says go once the profiler follows this process */
	for (long r = 0; r < rounds; r++) { slowFunction(); fastFunction(); }
	printf("done\n"); fflush(stdout);
	getchar(); /* alive until drained: symbolized from a running process */
	return 0;
}
`

// framePointers builds a test program for the frame-pointer unwinder:
// every call a frame of its own.
var framePointers = []string{"-O0", "-fno-omit-frame-pointer", "-fno-inline"}

// recordingSink records profiles and passes them on to rules.
type recordingSink struct {
	mu     sync.Mutex
	rules  *rules.Set
	stacks map[string]uint64
	tags   []map[string]string
	// byEnv counts samples by the env tag, and slow and fast those in
	// main;slowFunction and main;fastFunction.
	byEnv, slow, fast map[string]uint64
}

func (r *recordingSink) ObserveProfile(p rules.Profile) {
	samples, tags := p.Samples, p.Tags
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byEnv == nil {
		r.byEnv, r.slow, r.fast = map[string]uint64{}, map[string]uint64{}, map[string]uint64{}
	}
	for _, s := range samples {
		r.stacks[s.Stack] += s.Value
		r.byEnv[tags["env"]] += s.Value
		switch {
		case strings.Contains(s.Stack, "main;slowFunction"):
			r.slow[tags["env"]] += s.Value
		case strings.Contains(s.Stack, "main;fastFunction"):
			r.fast[tags["env"]] += s.Value
		}
	}
	r.tags = append(r.tags, tags)
	if r.rules != nil {
		r.rules.ObserveProfile(p)
	}
}

func newProfiler(t *testing.T, sink rules.Sink, freq int, tgts ...Target) *Profiler {
	t.Helper()
	w, err := targets.NewWatcher(targets.WatcherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	kernel := symtab.NewKallsyms("/proc/kallsyms").Sym
	p, err := New(Options{Frequency: freq, Interval: time.Hour, Targets: tgts, Sink: sink, Watcher: w, Kernel: kernel})
	if err != nil {
		// A kernel without perf events or BPF is a reason to skip; a
		// program the verifier refuses is a bug.
		if strings.Contains(err.Error(), "load program") {
			t.Fatalf("profiler: %v", err)
		}
		t.Skipf("profiler cannot run on this kernel: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestSeedRulesOnProfiles runs the test program twice, with env=prod and
// env=staging, profiles both at 400 Hz and applies the rules of Pyroscope's export-rules documentation.
// At 400 Hz each process gives about 400 samples per CPU second, so the
// share of slowFunction (0.75 by construction) has a standard deviation
// near 0.02 and the +-0.1 tolerance is four of them; at 100 Hz it was two,
// and a loaded machine failed it now and then.
func TestSeedRulesOnProfiles(t *testing.T) {
	name := "split" + strconv.Itoa(os.Getpid()%100000)
	bin := testkit.BuildC(t, name, splitProgram, framePointers...)
	set, err := rules.Parse("rules.yaml", []byte(testkit.ExportRules))
	if err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{rules: set, stacks: map[string]uint64{}}
	const freq = 400
	p := newProfiler(t, sink, freq,
		Target{App: "simple.app", Tags: map[string]string{"env": "prod"}, Selector: config.Selector{Comm: name, Cmdline: " prod$"}},
		Target{App: "simple.app", Tags: map[string]string{"env": "staging"}, Selector: config.Selector{Comm: name, Cmdline: " staging$"}},
	)
	cpu := map[string]float64{}
	type run struct {
		env   string
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	var runs []run
	for _, env := range []string{"prod", "staging"} {
		cmd := exec.Command(bin, "400", env)
		stdin, out := startPiped(t, cmd)
		runs = append(runs, run{env, cmd, stdin, out})
		// Wait until the profiler follows it, then let it work.
		deadline := time.Now().Add(30 * time.Second)
		for !p.follows(cmd.Process.Pid) {
			if time.Now().After(deadline) {
				t.Fatalf("the profiler never followed pid %d", cmd.Process.Pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
		stdin.Write([]byte("\n"))
	}
	// Both did their work; they stay alive until drained, asleep on
	// stdin, so that no sample of theirs comes after the drain.
	for _, r := range runs {
		if line, err := r.out.ReadString('\n'); err != nil || line != "done\n" {
			t.Fatalf("%s run printed %q: %v", r.env, line, err)
		}
		waitAsleep(t, r.cmd.Process.Pid)
	}
	if err := p.Drain(); err != nil {
		t.Fatal(err)
	}
	// The drain cleared what it read (one batch delete).
	var key sampleKey
	var val uint64
	left := 0
	for it := p.coll.Maps["counts"].Iterate(); it.Next(&key, &val); {
		left++
	}
	if left != 0 {
		t.Errorf("%d sample keys left in the kernel after the drain", left)
	}
	for _, r := range runs {
		r.stdin.Close()
		if err := r.cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		cpu[r.env] = (r.cmd.ProcessState.UserTime() + r.cmd.ProcessState.SystemTime()).Seconds()
	}
	sink.mu.Lock()
	for _, env := range []string{"prod", "staging"} {
		if sink.slow[env] == 0 {
			t.Errorf("no %s samples in slowFunction: samples by env %v, slow %v, fast %v, %d profiles with tags %v",
				env, sink.byEnv, sink.slow, sink.fast, len(sink.tags), sink.tags)
		}
	}
	sink.mu.Unlock()
	if t.Failed() {
		t.FailNow()
	}
	total := testutil.ToFloat64(ruleMetric(set, "a_simple_app_total", nil))
	slowProd := testutil.ToFloat64(ruleMetric(set, "a_simple_app_slow_env_prod", nil))
	slowByEnv := map[string]float64{}
	for _, env := range []string{"prod", "staging"} {
		slowByEnv[env] = testutil.ToFloat64(ruleMetric(set, "a_simple_app_slow_env", map[string]string{"env": env}))
	}
	t.Logf("CPU used: %v; total %.2fs, slow prod %.2fs, slow by env %v", cpu, total, slowProd, slowByEnv)
	if slowProd != slowByEnv["prod"] {
		t.Errorf("slow_env_prod %v != slow_env{env=prod} %v", slowProd, slowByEnv["prod"])
	}
	// Samples are CPU time: the total matches the CPU the processes used
	// (tolerance 30%: sampling at 400 Hz).
	used := cpu["prod"] + cpu["staging"]
	if math.Abs(total-used) > 0.3*used {
		t.Errorf("profiled %.2fs of CPU, processes used %.2fs", total, used)
	}
	// slowFunction does 3/4 of main's work: slow / (slow + fast) is
	// 0.75 +- 0.1 in each env, and the rule's value is the slow samples in
	// seconds.
	for _, env := range []string{"prod", "staging"} {
		slow, fast := float64(sink.slow[env]), float64(sink.fast[env])
		share := slow / (slow + fast)
		if share < 0.65 || share > 0.85 {
			t.Errorf("%s: slowFunction %.0f samples, fastFunction %.0f (share %.2f), want 0.75 +- 0.1", env, slow, fast, share)
		}
		if slowByEnv[env] < slow/freq-0.011 {
			t.Errorf("%s: rule says %.2fs in slowFunction, the stacks %.2fs", env, slowByEnv[env], slow/freq)
		}
	}
	// Stacks are root first and symbolized.
	var slow, fast uint64
	for st, n := range sink.stacks {
		switch {
		case strings.Contains(st, "main;slowFunction"):
			slow += n
		case strings.Contains(st, "main;fastFunction"):
			fast += n
		}
	}
	if slow == 0 || fast == 0 {
		t.Fatalf("no main;slowFunction / main;fastFunction stacks in %v", keys(sink.stacks))
	}
	if share := float64(slow) / float64(slow+fast); share < 0.65 || share > 0.85 {
		t.Errorf("slowFunction share of main's samples %.2f, want 0.75 +- 0.1", share)
	}
	for _, tags := range sink.tags {
		if tags["comm"] != name || tags["pid"] == "" || (tags["env"] != "prod" && tags["env"] != "staging") {
			t.Errorf("tags %v", tags)
		}
	}
}

func keys(m map[string]uint64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
		if len(out) > 10 {
			break
		}
	}
	return out
}

const goProgram = `package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

//go:noinline
func spin(until time.Time) int {
	n := 0
	for time.Now().Before(until) {
		for i := 0; i < 10000; i++ {
			n += i ^ n
		}
	}
	return n
}

func main() {
	s, _ := strconv.ParseFloat(os.Args[1], 64)
	spin(time.Now().Add(time.Duration(s * float64(time.Second))))
	// Alive until stdin closes: its samples are symbolized from a
	// running process.
	fmt.Println("spun")
	os.Stdin.Read(make([]byte, 1))
}
`

// TestGoSymbols profiles a Go program, with and without its symbol table
// (then .gopclntab names the frames).
func TestGoSymbols(t *testing.T) {
	for _, strip := range []bool{false, true} {
		t.Run("stripped="+strconv.FormatBool(strip), func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "main.go"), []byte(goProgram), 0o644)
			os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module spin\n\ngo 1.21\n"), 0o644)
			name := "gospin" + strconv.Itoa(os.Getpid()%10000)
			args := []string{"build", "-o", filepath.Join(dir, name)}
			if strip {
				args = append(args, "-ldflags=-s")
			}
			cmd := exec.Command("go", append(args, ".")...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			sink := &recordingSink{stacks: map[string]uint64{}}
			p := newProfiler(t, sink, 199, Target{App: "gospin", Selector: config.Selector{Comm: name}})
			// The program spins for a second and stays alive until
			// drained: the test is of symbols, not of how soon a
			// process that exits is described on a loaded machine.
			_, out := startPiped(t, exec.Command(filepath.Join(dir, name), "1"))
			if line, err := out.ReadString('\n'); err != nil || line != "spun\n" {
				t.Fatalf("program printed %q: %v", line, err)
			}
			if err := p.Drain(); err != nil {
				t.Fatal(err)
			}
			var spin uint64
			for st, n := range sink.stacks {
				if strings.Contains(st, "main.main;main.spin") {
					spin += n
				}
			}
			if spin == 0 {
				t.Fatalf("no main.main;main.spin stack in %v", keys(sink.stacks))
			}
		})
	}
}

// ruleMetric collects one rule's series with the given labels.
func ruleMetric(s *rules.Set, name string, labels map[string]string) *oneSeries {
	return &oneSeries{s: s, name: name, labels: labels}
}

// jitProgram copies a counting loop into an anonymous executable mapping,
// names it in /tmp/perf-PID.map as a JIT would, and runs it for argv[1]
// seconds.
const jitProgram = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
	/* loop: dec rdi; jnz loop; ret */
	static const unsigned char code[] = {0x48, 0xff, 0xcf, 0x75, 0xfb, 0xc3};
	unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) return 1;
	memcpy(p, code, sizeof code);
	char path[64];
	snprintf(path, sizeof path, "/tmp/perf-%d.map", getpid());
	FILE *f = fopen(path, "w");
	if (!f) return 2;
	fprintf(f, "%lx %zx jit_spin_loop\n", (unsigned long)p, sizeof code);
	fclose(f);
	void (*fn)(long) = (void (*)(long))p;
	time_t end = time(0) + atoi(argv[1]);
	while (time(0) < end) fn(10000000);
	return 0;
}
`

// TestJITFrames: frames in code a JIT generated are named from the
// process's /tmp/perf-PID.map.
func TestJITFrames(t *testing.T) {
	name := "jitspin" + strconv.Itoa(os.Getpid()%10000)
	bin := testkit.BuildC(t, name, jitProgram, framePointers...)
	sink := &recordingSink{stacks: map[string]uint64{}}
	p := newProfiler(t, sink, 199, Target{App: "jit", Selector: config.Selector{Comm: name}})
	cmd := exec.Command(bin, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	defer os.Remove("/tmp/perf-" + strconv.Itoa(cmd.Process.Pid) + ".map")
	// Once the profiler has read the program's map (the program writes it
	// after it starts), every sample drained from then on is named: the
	// samples before are drained and set aside.
	testkit.Eventually(t, "the profiler to read the JIT's perf map", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		pr := p.procs[cmd.Process.Pid]
		return pr != nil && len(pr.perf) > 0
	})
	if err := p.Drain(); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	clear(sink.stacks)
	sink.mu.Unlock()
	// Drain while it runs, until its samples are in.
	count := func() (jit, all uint64) {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for st, n := range sink.stacks {
			all += n
			if strings.HasSuffix(st, ";jit_spin_loop") || st == "jit_spin_loop" {
				jit += n
			}
		}
		return jit, all
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := p.Drain(); err != nil {
			t.Fatal(err)
		}
		if _, all := count(); all >= 50 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	jit, all := count()
	// Nearly all samples are in the loop (the rest: entering it).
	if jit == 0 || float64(jit) < 0.8*float64(all) {
		t.Fatalf("%d of %d samples end in jit_spin_loop; stacks %v", jit, all, keys(sink.stacks))
	}
}

func TestParsePerfMap(t *testing.T) {
	got, cut := parsePerfMap(strings.NewReader("7f0000001000 40 LazyCompile:~foo app.js:1\n0x10 0x8 bar\nbad line\n"))
	want := []perfSym{{0x10, 0x8, "bar"}, {0x7f0000001000, 0x40, "LazyCompile:~foo app.js:1"}}
	if cut {
		t.Error("cut")
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %v, want %v", i, got[i], want[i])
		}
	}
}

// waitAsleep waits until pid sleeps (state S in /proc/PID/stat).
func waitAsleep(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.LastIndexByte(string(data), ')'); i > 0 && strings.HasPrefix(string(data[i:]), ") S ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never went to sleep: %s", pid, data)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startPiped starts cmd with pipes for its stdin and stdout; at the test's
// end its stdin is closed and it is waited for.
func startPiped(t *testing.T, cmd *exec.Cmd) (io.WriteCloser, *bufio.Reader) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	return stdin, bufio.NewReader(stdout)
}
