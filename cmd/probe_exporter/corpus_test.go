package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scripts written elsewhere, served as they are: Debian's
// prometheus-node-exporter-collectors (node_exporter's textfile-collector
// scripts, one-shot executables) and bpftrace's own tools under
// /usr/sbin. Each is first run alone, the way its users run it, and then
// requested from the exporter run with default flags.

// collectorsDir is where Debian's prometheus-node-exporter-collectors
// puts its scripts (`make deps` installs the package).
const collectorsDir = "/usr/share/prometheus-node-exporter-collectors"

// aloneRun is what a script did when run by itself.
type aloneRun struct {
	out      []byte
	stderr   string
	exit     int  // -1: did not end by itself
	runs     bool // bpftrace: reached its event loop
	timedOut bool
}

// seriesOf parses exposition with Prometheus' text parser and returns
// its series (name and sorted labels), or the parser's error.
func seriesOf(text []byte) ([]string, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	var out []string
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			sort.Strings(labels)
			out = append(out, name+"{"+strings.Join(labels, ",")+"}")
		}
	}
	sort.Strings(out)
	return out, nil
}

// getScript requests /name until the answer is not 503 (a script
// starting, bpftrace compiling), within a bound.
func getScript(t *testing.T, base, name string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	for {
		code, body := get(t, base+"/"+name)
		if code != http.StatusServiceUnavailable {
			return code, body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/%s still answers 503 after 4 minutes: %s", name, body)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// forEach runs f for each name, n at a time.
func forEach(names []string, n int, f func(name string)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(name)
		}()
	}
	wg.Wait()
}

// copyScripts copies the files names from src into a new directory.
func copyScripts(t *testing.T, src string, names []string, mode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestScriptsOneShot: the plain one-shot form, `echo 'oneshot_value 42'`,
// is served on every request with default flags, and a failing one
// answers 500 with its exit status and stderr; the landing page says
// which scripts are one-shot.
func TestScriptsOneShot(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "oneshot.sh"), []byte("#!/bin/sh\necho 'oneshot_value 42'\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "broken.sh"), []byte("#!/bin/sh\necho 'smartctl: command not found' >&2\nexit 2\n"), 0o755)
	addr := exporter(t, "-s", dir)
	base := "http://" + addr
	for i := 0; i < 3; i++ {
		if code, body := get(t, base+"/oneshot.sh"); code != http.StatusOK || !strings.Contains(body, "\noneshot_value 42\n") {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	code, body := get(t, base+"/broken.sh")
	if code != http.StatusInternalServerError || !strings.Contains(body, "exit status 2") || !strings.Contains(body, "smartctl: command not found") {
		t.Fatalf("failing script: %d %q", code, body)
	}
	_, page := get(t, base+"/")
	if !strings.Contains(page, "exec (one-shot)") || !strings.Contains(page, "smartctl: command not found") {
		t.Errorf("landing page lacks the one-shot script's form or the failing one's reason:\n%s", page)
	}
}

// TestNodeExporterCollectors: Debian's textfile-collector scripts that
// exit 0 alone are served with the series they print alone, on the first
// request and later ones; those that exit non-zero alone answer 500
// naming their exit status.
func TestNodeExporterCollectors(t *testing.T) {
	entries, err := os.ReadDir(collectorsDir)
	if err != nil {
		t.Skipf("Debian's prometheus-node-exporter-collectors is not installed (make deps installs it): %v", err)
	}
	var names []string
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			names = append(names, e.Name())
		}
	}
	// The PATH the exporter has under its systemd unit (systemd's
	// default), for the scripts alone and served alike: a developer's
	// own python3 first in PATH would lack Debian's python3-apt.
	t.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	dir := copyScripts(t, collectorsDir, names, 0o755)
	alone := map[string]aloneRun{}
	var mu sync.Mutex
	forEach(names, 3, func(n string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(dir, n))
		cmd.Dir = dir
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		r := aloneRun{out: out.Bytes(), stderr: errb.String(), timedOut: ctx.Err() != nil}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			r.exit = exit.ExitCode()
		}
		mu.Lock()
		alone[n] = r
		mu.Unlock()
	})

	base := "http://" + exporter(t, "-s", dir)
	served := 0
	for _, n := range names {
		a := alone[n]
		if a.timedOut {
			t.Logf("%s: did not end within a minute alone; not compared", n)
			continue
		}
		want, perr := seriesOf(a.out)
		for i := 0; i < 2; i++ {
			code, body := getScript(t, base, n)
			switch {
			case a.exit != 0:
				if code != http.StatusInternalServerError || !strings.Contains(body, fmt.Sprintf("exit status %d", a.exit)) {
					t.Errorf("%s (exits %d alone), request %d: %d %q", n, a.exit, i, code, body)
				}
			case perr != nil:
				if code != http.StatusInternalServerError || !strings.Contains(body, "bad output") {
					t.Errorf("%s (prints what Prometheus' parser refuses alone: %v), request %d: %d %q", n, perr, i, code, body)
				}
			default:
				got, err := seriesOf([]byte(body))
				if code != http.StatusOK || err != nil || strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("%s, request %d: %d (%v)\nserved:\n%s\nalone:\n%s", n, i, code, err, strings.Join(got, "\n"), strings.Join(want, "\n"))
				} else if i == 0 && len(got) > 0 {
					served++
				}
			}
		}
		t.Logf("%s: exit %d alone, %d series", n, a.exit, len(want))
	}
	if served == 0 {
		t.Fatal("no collector script printed a series here: the corpus proves nothing")
	}
}

// btAlone runs a bpftrace tool by itself until it either exits (it fails
// here: its reason is its last error line) or sleeps in its event loop
// (epoll_wait, where bpftrace waits for its probes' output once every
// probe is attached and BEGIN has run): then it runs here, and is stopped.
func btAlone(path string, limit time.Duration) aloneRun {
	cmd := exec.Command("bpftrace", "-f", "json", path)
	var out, errb testkit.LogBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return aloneRun{exit: -1, stderr: err.Error()}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(limit)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	for {
		select {
		case err := <-done:
			r := aloneRun{stderr: errb.String(), out: []byte(out.String())}
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				r.exit = exit.ExitCode()
			}
			return r
		case <-deadline:
			stop()
			return aloneRun{exit: -1, timedOut: true, stderr: errb.String()}
		case <-tick.C:
			if inEventLoop(cmd.Process.Pid) {
				stop()
				return aloneRun{exit: -1, runs: true}
			}
		}
	}
}

// inEventLoop tells that every thread of pid sleeps in epoll_wait.
func inEventLoop(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		w, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/wchan", pid, task.Name()))
		if err != nil || !strings.Contains(string(w), "epoll") {
			return false
		}
	}
	return true
}

// lastErrorLine is the last stderr line that says why bpftrace failed.
func lastErrorLine(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.Contains(strings.ToLower(l), "error") && !strings.Contains(l, "RLIMIT_MEMLOCK") {
			return l
		}
	}
	return ""
}

// TestBpftraceTools: Debian's bpftrace tools (/usr/sbin/*.bt) served
// unchanged with default flags: every tool that runs alone here serves
// text Prometheus' parser accepts (writeback.bt's string map left out and
// said so in the log, its numeric maps served), and every tool that fails
// alone answers 500 with bpftrace's own reason. BPFTRACE_TOOLS (a
// comma-separated list) narrows the corpus, for the kernel matrix, where
// the tools that need kprobes must run (BPFTRACE_TOOLS_MUST_RUN), on the
// guest kernels whose release starts with BPFTRACE_TOOLS_KERNELS: one
// kernel proves them, and each run costs the matrix about a minute of TCG.
func TestBpftraceTools(t *testing.T) {
	testkit.SkipIfPreparing(t)
	if _, err := exec.LookPath("bpftrace"); err != nil {
		t.Skip("bpftrace is not installed (make deps installs it)")
	}
	if prefix := os.Getenv("BPFTRACE_TOOLS_KERNELS"); prefix != "" {
		rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
		if err != nil {
			t.Fatal(err)
		}
		if release := strings.TrimSpace(string(rel)); !strings.HasPrefix(release, prefix) {
			t.Skipf("the kernel matrix runs bpftrace's tools on kernels %s* only (one kernel proves them); this is %s", prefix, release)
		}
	}
	paths, _ := filepath.Glob("/usr/sbin/*.bt")
	if only := os.Getenv("BPFTRACE_TOOLS"); only != "" {
		paths = nil
		for _, n := range strings.Split(only, ",") {
			paths = append(paths, filepath.Join("/usr/sbin", strings.TrimSpace(n)))
		}
	}
	if len(paths) == 0 {
		t.Skip("no bpftrace tools under /usr/sbin (Debian's bpftrace package ships them)")
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	dir := copyScripts(t, "/usr/sbin", names, 0o644)
	alone := map[string]aloneRun{}
	var mu sync.Mutex
	forEach(names, 2, func(n string) {
		r := btAlone(filepath.Join(dir, n), 3*time.Minute)
		mu.Lock()
		alone[n] = r
		mu.Unlock()
	})
	mustRun := map[string]bool{}
	for _, n := range strings.Split(os.Getenv("BPFTRACE_TOOLS_MUST_RUN"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			mustRun[n] = true
			if !alone[n].runs {
				t.Errorf("%s does not run alone on this kernel: exit %d: %s", n, alone[n].exit, lastErrorLine(alone[n].stderr))
			}
		}
	}

	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "-s", dir, "-k", "5")
	base := "http://" + addr
	var ran, failed int
	forEach(names, 2, func(n string) {
		a := alone[n]
		switch {
		case a.timedOut:
			t.Logf("%s: neither ran nor failed within 3 minutes alone; not compared", n)
			return
		case a.runs:
			code, body := getScript(t, base, n)
			if _, err := seriesOf([]byte(body)); code != http.StatusOK || err != nil {
				t.Errorf("%s runs alone; served %d (%v):\n%s", n, code, err, body)
				return
			}
			if n == "writeback.bt" && strings.Contains(body, "reason") {
				t.Errorf("writeback.bt: the string map @reason is served:\n%s", body)
			}
			mu.Lock()
			ran++
			mu.Unlock()
		default:
			reason := lastErrorLine(a.stderr)
			code, body := getScript(t, base, n)
			if code != http.StatusInternalServerError || reason != "" && !strings.Contains(body, reason) || strings.Contains(body, "signalling") {
				t.Errorf("%s fails alone (exit %d: %q); served %d %q", n, a.exit, reason, code, body)
				return
			}
			mu.Lock()
			failed++
			mu.Unlock()
		}
	})
	t.Logf("%d tools run here and serve valid text, %d fail here and answer with their reason", ran, failed)
	if alone["writeback.bt"].runs {
		testkit.Eventually(t, "writeback.bt's @reason left out, said in the log", func() bool {
			return strings.Contains(p.Log(), "bpftrace map left out") && strings.Contains(p.Log(), "map=@reason")
		})
	}
}

// TestAttackBpftraceStrings: a local user steers what a bpftrace script's
// maps hold (its programs' names are keys, the paths it opens are string
// values). Names with quotes, backslashes, control bytes and invalid
// UTF-8, and paths of any bytes, never fail the script: the string maps
// are left out (said once per map and run in the log), the counts keyed
// by the user's names are served as valid exposition, no secret shows,
// nothing panics, and /metrics answers.
func TestAttackBpftraceStrings(t *testing.T) {
	if _, err := exec.LookPath("bpftrace"); err != nil {
		t.Skip("bpftrace is not installed (make deps installs it)")
	}
	a := testkit.NewAttacker(t)
	secretPath, marker := testkit.Secret(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "opens.bt"), []byte(fmt.Sprintf(`tracepoint:syscalls:sys_enter_openat /uid == %d/ {
	@opens[comm] = count();
	@paths[comm] = str(args->filename);
	@last = str(args->filename);
}
`, a.UID)), 0o644)
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "-s", dir)
	base := "http://" + addr
	if code, body := getScript(t, base, "opens.bt"); code != http.StatusOK {
		t.Fatalf("/opens.bt before the attack: %d %q", code, body)
	}
	// A program whose name (comm) is `q"u\x<TAB>y<0x01><0xff>`, opening
	// paths made of such bytes, the secret's path among them.
	const comm = "q\"u\\x\ty\x01\xff"
	a.Run(t, `cp /bin/cat "$HOME/$(printf 'q"u\\x\ty\001\377')" && for i in 1 2 3; do "$HOME/$(printf 'q"u\\x\ty\001\377')" "$(printf '/tmp/a"b\\c\nd\377e')" '`+secretPath+`' 2>/dev/null; done; true`)
	var body string
	testkit.Eventually(t, "the attacker's opens counted", func() bool {
		var code int
		code, body = getScript(t, base, "opens.bt")
		return code == http.StatusOK && strings.Contains(body, "opens{")
	})
	if _, err := seriesOf([]byte(body)); err != nil {
		t.Fatalf("served text Prometheus' parser refuses: %v\n%s", err, body)
	}
	p2 := expfmt.NewTextParser(model.LegacyValidation)
	fams, _ := p2.TextToMetricFamilies(strings.NewReader(body))
	if fams["paths"] != nil || fams["last"] != nil {
		t.Errorf("string maps served:\n%s", body)
	}
	found := false
	for _, m := range fams["opens"].GetMetric() {
		for _, l := range m.GetLabel() {
			// bpftrace escapes 0xff as \uffffffff in its JSON.
			if strings.HasPrefix(l.GetValue(), comm[:8]) {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("the attacker's program is not counted under its name:\n%s", body)
	}
	for i := 0; i < 3; i++ {
		getScript(t, base, "opens.bt")
	}
	code, metrics := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	_, page := get(t, base+"/")
	testkit.NotContains(t, marker, map[string]string{"script": body, "metrics": metrics, "page": page, "log": p.Log()})
	log := p.Log()
	if strings.Contains(log, "panic:") {
		t.Fatalf("panic in the log:\n%s", log)
	}
	for _, m := range []string{"map=@paths", "map=@last"} {
		if n := strings.Count(log, m); n != 1 {
			t.Errorf("%s left out: said %d times in the log, want once per run", m, n)
		}
	}
}

// TestAttackOneShotBlocked: a one-shot script reads a file a local user
// controls (as textfile collectors read users' directories); the user
// swaps it for a FIFO that nobody writes, so the run blocks. With default
// flags the run is killed with what it started at --scripts.timeout (10s)
// and answers 504 naming the timeout; nothing of it is left running, the
// exporter keeps serving, and the script serves again once the FIFO is
// gone.
func TestAttackOneShotBlocked(t *testing.T) {
	a := testkit.NewAttacker(t)
	status := filepath.Join(a.Home, "status")
	a.WriteFile(t, status, []byte("1\n"), 0o644)
	dir := t.TempDir()
	pids := filepath.Join(t.TempDir(), "pids")
	os.WriteFile(filepath.Join(dir, "user-status.sh"), []byte(fmt.Sprintf(
		"#!/bin/sh\necho $$ >> %s\necho \"user_status $(cat %s)\"\n", pids, status)), 0o755)
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "-s", dir)
	base := "http://" + addr
	if code, body := get(t, base+"/user-status.sh"); code != http.StatusOK || !strings.Contains(body, "user_status 1") {
		t.Fatalf("before the attack: %d %q", code, body)
	}
	a.Run(t, "rm -f "+status+" && mkfifo "+status)
	testkit.Eventually(t, "a blocked run to answer 504 naming the timeout", func() bool {
		code, body := get(t, base+"/user-status.sh")
		return code == http.StatusGatewayTimeout && strings.Contains(body, "timeout of 10s")
	})
	data, _ := os.ReadFile(pids)
	for _, f := range strings.Fields(string(data)) {
		pid, _ := strconv.Atoi(f)
		testkit.Eventually(t, "run "+f+" gone", func() bool { return syscall.Kill(pid, 0) != nil })
	}
	if code, _ := get(t, base+"/metrics"); code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	a.Run(t, "rm -f "+status+" && echo 2 > "+status)
	testkit.Eventually(t, "the script to serve again", func() bool {
		code, body := get(t, base+"/user-status.sh")
		return code == http.StatusOK && strings.Contains(body, "user_status 2")
	})
	if strings.Contains(p.Log(), "panic:") {
		t.Fatalf("panic in the log:\n%s", p.Log())
	}
}
