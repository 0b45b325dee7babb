package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// pythonInterpreters are the CPythons the end-to-end tests run, each
// named with the reason it is skipped when missing: Debian's python3.11
// (the interpreter in the executable) and pyenv's --enable-shared builds
// (the interpreter in libpython3.X.so, found through the executable's
// RUNPATH).
func pythonInterpreters() []struct{ name, path, missing string } {
	out := []struct{ name, path, missing string }{{name: "3.11-debian", path: "/usr/bin/python3.11"}}
	if _, err := os.Stat(out[0].path); err != nil {
		out[0].path, out[0].missing = "", "Debian's python3.11 is not installed (apt-get install python3.11)"
	}
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		root = "/root/.pyenv"
	}
	for _, v := range []string{"3.10", "3.12", "3.13"} {
		py := struct{ name, path, missing string }{name: v + "-pyenv"}
		if m, _ := filepath.Glob(filepath.Join(root, "versions", v+".*", "bin", "python"+v)); len(m) > 0 {
			py.path = m[len(m)-1]
		} else {
			py.missing = "no pyenv CPython " + v + " under " + root + "/versions (pyenv install " + v + " with --enable-shared)"
		}
		out = append(out, py)
	}
	return out
}

// pyProc is one run of profile/testdata/work.py under a given name.
type pyProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startPy starts cmd (work.py waiting for a line on stdin); at the test's
// end its stdin is closed and it is waited for.
func startPy(t *testing.T, cmd *exec.Cmd) *pyProc {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	return &pyProc{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
}

// cpuSeconds is the CPU time pid used so far (utime + stime of its stat).
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields 14 and 15 of stat; f starts at field 3.
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100 // USER_HZ
}

// asleep reports whether pid sleeps (work.py waiting on stdin).
func asleep(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return err == nil && i > 0 && strings.HasPrefix(s[i:], ") S ")
}

// expoValue is the value of the exposition line that starts with
// series followed by a space, or -1.
func expoValue(body, series string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// containerScript runs python (named comm) over work.py in a container-like
// root: a new mount namespace whose root is a tmpfs holding the system's
// /usr and the interpreter at another path, /opt/py, which no path of the
// host names: a copy of the executable (keeping its name, python3.X) for an
// interpreter in the executable, pyenv's version directory bind-mounted
// (libpython3.X.so found through LD_LIBRARY_PATH) for one in a library.
func containerScript(python, comm, script string) string {
	var interp string
	if strings.HasPrefix(python, "/usr/") {
		interp = fmt.Sprintf(`mkdir -p "$R/opt/py/bin" "$R/opt/py-bin"; cp %q "$R/opt/py/bin/"; ln -s /opt/py/bin/%s "$R/opt/py-bin/%s"`, python, filepath.Base(python), comm)
	} else {
		version := filepath.Dir(filepath.Dir(python))
		interp = fmt.Sprintf(`mkdir -p "$R/opt/py" "$R/opt/py-bin"; mount --bind -o ro %q "$R/opt/py"; ln -s /opt/py/bin/%s "$R/opt/py-bin/%s"; export LD_LIBRARY_PATH=/opt/py/lib`,
			version, filepath.Base(python), comm)
	}
	bin := "/opt/py-bin/" + comm // named comm, as the profiler selects it
	return fmt.Sprintf(`set -e
R=$(mktemp -d)
mount -t tmpfs ctr "$R"
mkdir -p "$R/usr" "$R/tmp" "$R/dev"
mount --bind -o ro /usr "$R/usr"
for d in bin lib lib64 sbin; do if [ -L /$d ]; then ln -s "$(readlink /$d)" "$R/$d"; elif [ -d /$d ]; then mkdir "$R/$d"; mount --bind -o ro /$d "$R/$d"; fi; done
touch "$R/dev/null"; mount --bind /dev/null "$R/dev/null"
%s
cp %q "$R/work.py"
exec chroot "$R" %s /work.py split 3000
`, interp, script, bin)
}

// TestProfilerPython: the built binary, default flags but for its
// targets and rules, names the frames of every CPython it profiles: a
// process started before the exporter, one started after it, and one in a
// container-like root (its own mount namespace and root, the interpreter
// at a path the host does not have), the three at once. work.py's split case spends 70 % of
// its work in slow_function and 30 % in fast_function: the exported
// counters of rules `node: slow_function` and `node: fast_function` give
// those shares of the total within 5 points, and the total is the CPU time
// the process used.
func TestProfilerPython(t *testing.T) {
	testkit.RequireRoot(t)
	testkit.RequireTools(t, "unshare", "chroot", "mount")
	script, err := filepath.Abs("../../profile/testdata/work.py")
	if err != nil {
		t.Fatal(err)
	}
	for i, py := range pythonInterpreters() {
		t.Run(py.name, func(t *testing.T) {
			if py.path == "" {
				t.Skip(py.missing)
			}
			dir := t.TempDir()
			tag := strconv.Itoa((os.Getpid()*10 + i) % 100000)
			comms := map[string]string{"before": "pyb" + tag, "after": "pya" + tag, "container": "pyc" + tag}
			var targets strings.Builder
			targets.WriteString("targets:\n")
			for _, mode := range []string{"before", "after", "container"} {
				fmt.Fprintf(&targets, "  - {app: py, tags: {mode: %s}, comm: %s}\n", mode, comms[mode])
			}
			rules := `metrics-export-rules:
  py_slow_seconds: {expr: 'py.cpu', node: 'slow_function', group_by: [mode]}
  py_fast_seconds: {expr: 'py.cpu', node: 'fast_function', group_by: [mode]}
  py_total_seconds: {expr: 'py.cpu', node: total, group_by: [mode]}
`
			os.WriteFile(filepath.Join(dir, "targets.yaml"), []byte(targets.String()), 0o644)
			os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(rules), 0o644)
			link := func(comm string) string {
				p := filepath.Join(dir, comm)
				if err := os.Symlink(py.path, p); err != nil {
					t.Fatal(err)
				}
				return p
			}
			procs := map[string]*pyProc{}
			// Started, and initialized (asleep on stdin), before the
			// exporter.
			procs["before"] = startPy(t, exec.Command(link(comms["before"]), script, "split", "3000"))
			testkit.Eventually(t, "the process started before the exporter waits on stdin", func() bool {
				return asleep(procs["before"].cmd.Process.Pid)
			})
			addr := freePort(t)
			ex := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr,
				"--profile.config="+filepath.Join(dir, "targets.yaml"), "--rules.file="+filepath.Join(dir, "rules.yaml"),
				// 1 kHz, not the default 100 Hz: 3 s of work gives 3,000
				// samples a process, so a share is within 5 points by
				// more than 3 standard deviations (at 100 Hz, 300
				// samples of processes that share 2 cores strayed up to
				// 6.5 points).
				"--profile.frequency=1000",
				// Drained every 2 s, not every 10 s: the counters are
				// read after two drains that follow the work.
				"--profile.interval=2s")
			procs["after"] = startPy(t, exec.Command(link(comms["after"]), script, "split", "3000"))
			procs["container"] = startPy(t, exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
				containerScript(py.path, comms["container"], script)))

			version := py.name[:strings.IndexByte(py.name, '-')]
			named := `probe_exporter_profiler_python_processes_total{result="named",version="` + version + `"}`
			var body string
			testkit.Eventually(t, "the three interpreters named", func() bool {
				_, body = get(t, "http://"+addr+"/metrics")
				return expoValue(body, named) == 3
			})
			if strings.Contains(body, `result="mismatch"`) || strings.Contains(body, `result="unsupported"`) {
				t.Errorf("an interpreter counted as not named:\n%s", grepLines(body, "python_processes_total"))
			}
			// The landing page says the same.
			if _, page := get(t, "http://"+addr+"/"); !strings.Contains(page, "Python interpreters: "+version+" named: 3;") {
				t.Errorf("the landing page does not name the three interpreters:\n%s", grepLines(page, "Python interpreters"))
			}
			// The work, all three at once; each one's CPU time from
			// the line to "done".
			used := map[string]float64{}
			for mode, p := range procs {
				used[mode] = -cpuSeconds(t, p.cmd.Process.Pid)
				p.stdin.Write([]byte("\n"))
			}
			for mode, p := range procs {
				if line, err := p.out.ReadString('\n'); err != nil || line != "done\n" {
					t.Fatalf("%s: work.py printed %q: %v", mode, line, err)
				}
				used[mode] += cpuSeconds(t, p.cmd.Process.Pid)
			}
			vals := func(mode string) (slow, fast, total float64) {
				l := `{mode="` + mode + `"}`
				return expoValue(body, "py_slow_seconds"+l), expoValue(body, "py_fast_seconds"+l), expoValue(body, "py_total_seconds"+l)
			}
			// The counters move at each drain (--profile.interval):
			// the second drain to end after the work started after it,
			// so every sample of the work is in.
			_, body = get(t, "http://"+addr+"/metrics")
			drains := expoValue(body, "probe_exporter_profiler_drains_total")
			testkit.Eventually(t, "two drains after the work", func() bool {
				_, body = get(t, "http://"+addr+"/metrics")
				return expoValue(body, "probe_exporter_profiler_drains_total") >= drains+2
			})
			_, body = get(t, "http://"+addr+"/exported-metrics")
			for mode := range procs {
				slow, fast, total := vals(mode)
				t.Logf("%s %s: slow %.2fs, fast %.2fs, total %.2fs; CPU used %.2fs", py.name, mode, slow, fast, total, used[mode])
				if s, f := slow/total, fast/total; s < 0.65 || s > 0.75 || f < 0.25 || f > 0.35 {
					t.Errorf("%s: slow_function %.3f, fast_function %.3f of the total, want 0.70 and 0.30 +- 0.05", mode, s, f)
				}
				// The total is the CPU time of the work: within 20 %
				// below (the 10 ms ticks of stat), 30 % above (samples of
				// the cpu-clock count the time a process holds a CPU,
				// which exceeded its utime+stime by up to 20 % on a
				// loaded machine), plus the interpreter's start for the
				// processes it saw start.
				if total < 0.8*used[mode] || total > 1.3*used[mode]+0.2 {
					t.Errorf("%s: %.2fs counted in total, the work used %.2fs of CPU", mode, total, used[mode])
				}
			}
			if strings.Contains(ex.Log(), "panic:") {
				t.Errorf("the exporter panicked:\n%s", ex.Log())
			}
		})
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
