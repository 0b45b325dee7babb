package profile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/probe-exporter/probe_exporter/config"
)

// pythons are the interpreters the tests run, where installed: Debian's
// (the interpreter in the executable) and pyenv's --enable-shared builds
// (the interpreter in libpython3.X.so).
func pythons(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
		out["3.11-debian"] = "/usr/bin/python3.11"
	}
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		root = "/root/.pyenv"
	}
	for _, v := range []string{"3.10", "3.11", "3.12", "3.13"} {
		m, _ := filepath.Glob(filepath.Join(root, "versions", v+".*", "bin", "python"+v))
		if len(m) > 0 {
			out[v+"-pyenv"] = m[len(m)-1]
		}
	}
	if len(out) == 0 {
		t.Skip("no CPython 3.10-3.13 on this machine")
	}
	return out
}

// pyRun profiles one run of testdata/work.py: the profiler follows the
// process (started after it) and has named its interpreter before the
// work starts; the stacks are drained while the process is asleep.
func pyRun(t *testing.T, python, comm string, args ...string) (map[string]uint64, *Profiler) {
	t.Helper()
	sink := &recordingSink{stacks: map[string]uint64{}}
	p := newProfiler(t, sink, 400, Target{App: "py", Selector: config.Selector{Comm: comm}})
	script, _ := filepath.Abs("testdata/work.py")
	// A copy named comm, so the selector takes only this process.
	bin := filepath.Join(t.TempDir(), comm)
	if err := os.Symlink(python, bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{script}, args...)...)
	stdin, out := startPiped(t, cmd)
	deadline := time.Now().Add(30 * time.Second)
	for !pyNamed(p, cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the profiler never named the interpreter of pid %d (%s)", cmd.Process.Pid, python)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stdin.Write([]byte("\n"))
	if line, err := out.ReadString('\n'); err != nil || line != "done\n" {
		t.Fatalf("work.py printed %q: %v", line, err)
	}
	waitAsleep(t, cmd.Process.Pid)
	if err := p.Drain(); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	return sink.stacks, p
}

// pyNamed reports whether the profiler described pid's interpreter to the
// BPF program.
func pyNamed(p *Profiler, pid int) bool {
	var v pyProc
	return p.py.procs.Lookup(uint32(pid), &v) == nil
}

// pyShare counts the samples whose stack matches in, and those of them
// matching also sub.
func pyShare(stacks map[string]uint64, in, sub string) (all, part uint64) {
	for st, n := range stacks {
		if strings.Contains(st, in) {
			all += n
			if strings.Contains(st, sub) {
				part += n
			}
		}
	}
	return
}

// TestPythonSplit: round_trip spends 70 % of its work under
// slow_function and 30 % under fast_function, by construction; under each
// interpreter the profiler's shares are within 5 points, the stacks read
// ...;round_trip;slow_function;unit, and frames are named
// "qualname (file:line)".
func TestPythonSplit(t *testing.T) {
	for name, python := range pythons(t) {
		t.Run(name, func(t *testing.T) {
			stacks, _ := pyRun(t, python, "pysplit", "split", "2000")
			all, slow := pyShare(stacks, "round_trip (", "round_trip (")
			_, slow = pyShare(stacks, "round_trip (", ";slow_function (")
			_, fast := pyShare(stacks, "round_trip (", ";fast_function (")
			if all < 200 {
				t.Fatalf("%d samples under round_trip; stacks: %v", all, keys(stacks))
			}
			s, f := float64(slow)/float64(all), float64(fast)/float64(all)
			t.Logf("%s: %d samples under round_trip, slow %.3f, fast %.3f", python, all, s, f)
			if s < 0.65 || s > 0.75 || f < 0.25 || f > 0.35 {
				t.Errorf("slow_function %.3f, fast_function %.3f of round_trip, want 0.70 and 0.30 +- 0.05", s, f)
			}
			// The heaviest stack under slow_function (a sample may also
			// land in slow_function's own loop, between calls of unit).
			var want string
			for st, n := range stacks {
				if strings.Contains(st, ";slow_function (") && (want == "" || n > stacks[want]) {
					want = st
				}
			}
			for _, frag := range []string{";split (", ";round_trip (", "work.py:", ";slow_function (", ";unit ("} {
				if !strings.Contains(want, frag) {
					t.Errorf("stack %q lacks %q", want, frag)
				}
			}
			// Native frames at the root, the eval loop replaced.
			if strings.HasPrefix(want, "split (") || strings.Contains(want, "_PyEval_EvalFrameDefault") {
				t.Errorf("stack %q: no native root, or an eval loop frame left", want)
			}
		})
	}
}

// TestPythonCases runs the other cases under each interpreter: four
// threads each in its own function, an asyncio coroutine, recursion deeper
// than the frame limit, and a C function (sorted) between two Python
// frames.
func TestPythonCases(t *testing.T) {
	for name, python := range pythons(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("threads", func(t *testing.T) {
				stacks, _ := pyRun(t, python, "pythreads", "threads", "1500")
				for _, f := range []string{"thread_a", "thread_b", "thread_c", "thread_d"} {
					all, _ := pyShare(stacks, ";"+f+" (", "")
					if all < 10 {
						t.Errorf("%d samples in %s; stacks: %v", all, f, keys(stacks))
					}
					// Each thread's stack has its own function only.
					for _, g := range []string{"thread_a", "thread_b", "thread_c", "thread_d"} {
						if g == f {
							continue
						}
						_, other := pyShare(stacks, ";"+f+" (", ";"+g+" (")
						if other > 0 {
							t.Errorf("%d samples with both %s and %s", other, f, g)
						}
					}
				}
			})
			t.Run("coroutine", func(t *testing.T) {
				stacks, _ := pyRun(t, python, "pycoro", "coroutine", "3000")
				all, unit := pyShare(stacks, ";coroutine_work (", ";unit (")
				if all < 50 || unit < all/2 {
					t.Errorf("%d samples in coroutine_work, %d of them in unit; stacks: %v", all, unit, keys(stacks))
				}
			})
			t.Run("deep", func(t *testing.T) {
				stacks, p := pyRun(t, python, "pydeep", "deep", "8000")
				all, _ := pyShare(stacks, ";recurse (", "")
				if all < 100 {
					t.Fatalf("%d samples in recurse; stacks: %v", all, keys(stacks))
				}
				if n := testutilCounter(p.truncated); n < float64(all)/2 {
					t.Errorf("%v samples counted truncated of %d in recurse", n, all)
				}
				// Truncated stacks keep their leaf frames, all named,
				// and no frame of another function.
				for st := range stacks {
					if !strings.Contains(st, ";recurse (") {
						continue
					}
					for _, f := range strings.Split(st, ";") {
						if strings.Contains(f, "(") && !strings.HasPrefix(f, "recurse (") && !strings.HasPrefix(f, "unit (") &&
							!strings.HasPrefix(f, "deep (") && !strings.HasPrefix(f, "main (") && !strings.HasPrefix(f, "<module> (") {
							t.Errorf("frame %q in %q", f, st)
						}
					}
				}
			})
			t.Run("sorted", func(t *testing.T) {
				stacks, _ := pyRun(t, python, "pysorted", "sorted", "3000")
				all, key := pyShare(stacks, ";sort_by_key (", ";key_function (")
				if all < 50 || key < all/2 {
					t.Fatalf("%d samples in sort_by_key, %d in key_function; stacks: %v", all, key, keys(stacks))
				}
				// The C function (sorted, named builtin_sorted where the
				// file has a .symtab) keeps its place between them: a
				// native frame between the two Python frames.
				n := uint64(0)
				var lacking []string
				for st, c := range stacks {
					i, k := strings.Index(st, ";sort_by_key ("), strings.Index(st, ";key_function (")
					if i < 0 || k < i {
						continue
					}
					between := false
					for _, f := range strings.Split(st[i+1:k], ";")[1:] {
						if !strings.Contains(f, " (") {
							between = true
							break
						}
					}
					if between {
						n += c
					} else {
						lacking = append(lacking, fmt.Sprintf("%d %s", c, st))
					}
				}
				// All but a few: a sample may land while the eval loop
				// switches frames. (One run under 3.12 kept only 105 of
				// 152; not seen again in a dozen runs, of this code and
				// of the code of that run: the stacks that lack the
				// frame are printed if it comes back.)
				t.Logf("%d of %d samples in key_function have a native frame between", n, key)
				if n < key*9/10 {
					t.Errorf("%d of %d samples in key_function have a native frame between sort_by_key and key_function; the others:\n%s", n, key, strings.Join(lacking, "\n"))
				}
			})
		})
	}
}

func testutilCounter(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

// TestPythonUnsupported: a CPython outside 3.10-3.13 is named in the log
// and in python_processes_total, and its stacks stay native.
func TestPythonUnsupported(t *testing.T) {
	m, _ := filepath.Glob("/root/.pyenv/versions/3.9.*/bin/python3.9")
	if len(m) == 0 {
		t.Skip("no pyenv CPython 3.9")
	}
	sink := &recordingSink{stacks: map[string]uint64{}}
	p := newProfiler(t, sink, 100, Target{App: "py", Selector: config.Selector{Comm: "pyold"}})
	bin := filepath.Join(t.TempDir(), "pyold")
	if err := os.Symlink(m[0], bin); err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs("testdata/work.py")
	cmd := exec.Command(bin, script, "split", "10")
	stdin, out := startPiped(t, cmd)
	c := p.py.interpreters.WithLabelValues("3.9", "unsupported")
	deadline := time.Now().Add(30 * time.Second)
	for testutilCounter(c) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("python_processes_total{version=3.9,result=unsupported} never counted the process")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stdin.Write([]byte("\n"))
	out.ReadString('\n')
	if pyNamed(p, cmd.Process.Pid) {
		t.Error("the BPF program was told the layout of a 3.9 interpreter")
	}
}
