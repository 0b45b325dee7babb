package scripts

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// hangLimit is how long a test lets one request or shutdown take before
// calling it a hang: far beyond every bound the supervisor keeps.
const hangLimit = 60 * time.Second

// getWithin is get with a client deadline: a hang fails the test
// instead of stalling it.
func getWithin(url string, d time.Duration) (int, string, error) {
	c := &http.Client{Timeout: d}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// markedLeftovers lists live processes started by this test process's
// supervisors (they carry the run marker in their environment).
func markedLeftovers() []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	prefix := []byte(runEnv + "=" + strconv.Itoa(os.Getpid()) + ".")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.HasPrefix(kv, prefix) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// gone reports whether pid has exited (a zombie counts as gone: it runs
// nothing and holds no pipe).
func gone(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// within runs f and fails the test if it does not return in hangLimit.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(hangLimit):
		t.Fatalf("%s hangs", what)
	}
}

// runSupervisor runs a supervisor and its HTTP front; stop ends Run and
// returns how long that took.
func runSupervisor(t *testing.T, opts Options) (s *Supervisor, url string, stop func() time.Duration) {
	t.Helper()
	s, srv := serveNoCleanup(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var once sync.Once
	var took time.Duration
	stop = func() time.Duration {
		once.Do(func() {
			srv.CloseClientConnections()
			srv.Close()
			start := time.Now()
			cancel()
			select {
			case <-done:
				took = time.Since(start)
			case <-time.After(hangLimit):
				t.Fatal("Run did not return after its context ended")
			}
		})
		return took
	}
	t.Cleanup(func() { stop() })
	return s, srv.URL, stop
}

// Case 1: parallel first requests of many scripts while the running cap
// is counted must not deadlock; /metrics and the keepalive keep working.
func TestParallelFirstRequestsNoDeadlock(t *testing.T) {
	dir := t.TempDir()
	const n = 10
	for i := 0; i < n; i++ {
		writeScript(t, dir, fmt.Sprintf("s%d.sh", i), "#!/bin/sh\nwhile true; do echo 'v "+strconv.Itoa(i)+"'; echo '# EOF'; sleep 0.2; done\n", true)
	}
	s, url, stop := runSupervisor(t, Options{Dir: dir, Keepalive: time.Second, StartWait: 5 * time.Second, MaxRunning: 64, StopGrace: 500 * time.Millisecond})
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, body, err := getWithin(fmt.Sprintf("%s/s%d.sh", url, i), hangLimit)
				if err != nil {
					errs <- fmt.Errorf("s%d.sh: %w", i, err)
				} else if want := "v " + strconv.Itoa(i) + "\n"; code != http.StatusOK || !strings.Contains(body, want) {
					errs <- fmt.Errorf("s%d.sh: %d %q", i, code, body)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}
		// The state metrics answer.
		within(t, "collecting script metrics", func() {
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(s)
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
			}
		})
		// The idle scripts are all stopped by the keepalive.
		testkit.Eventually(t, "idle scripts to stop", func() bool {
			for _, st := range s.Status() {
				if st.State != StateIdle {
					return false
				}
			}
			return true
		})
	}
	stop()
	if left := markedLeftovers(); len(left) > 0 {
		t.Fatalf("processes left: %v", left)
	}
}

// Case 2: a bpftrace script whose maps are empty is a valid, empty
// scrape.
func TestBpftraceEmptyMaps(t *testing.T) {
	needBpftrace(t)
	dir := t.TempDir()
	writeScript(t, dir, "quiet.bt", `tracepoint:syscalls:sys_enter_getppid /comm == "no-such-command"/ { @calls[pid] = count(); @h = hist(1); }
`, false)
	_, url, _ := runSupervisor(t, Options{Dir: dir, StartWait: 20 * time.Second})
	code, body, err := getWithin(url+"/quiet.bt", hangLimit)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK || body != "" {
		t.Fatalf("empty maps: %d %q, want 200 and no metrics", code, body)
	}
}

// escaper starts a child that leaves the process group and session and
// ignores SIGTERM, then prints blocks; itself it ignores SIGTERM too when
// stubborn.
func escaper(pidfile string, stubborn bool) string {
	trap := ""
	if stubborn {
		trap = "trap '' TERM\n"
	}
	return "#!/bin/sh\n" + trap + "setsid sh -c 'trap \"\" TERM; while :; do sleep 1; done' &\necho $! > " + pidfile + "\nwhile true; do echo 'alive 1'; echo '# EOF'; sleep 0.1; done\n"
}

// Case 3: whatever a script started goes with it, and a stubborn child
// holds up neither the keepalive of other scripts nor shutdown; with a
// cgroup per run and with the environment marker alone.
func TestEscapedChildren(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noCgroups bool
	}{{"cgroup", false}, {"marker", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pidfile := filepath.Join(t.TempDir(), "child")
			writeScript(t, dir, "escape.sh", escaper(pidfile, false), true)
			writeScript(t, dir, "other.sh", blocks, true)
			s, url, stop := runSupervisor(t, Options{Dir: dir, Keepalive: 300 * time.Millisecond, StartWait: 5 * time.Second, StopGrace: 300 * time.Millisecond, NoCgroups: tc.noCgroups})
			if code, body, err := getWithin(url+"/escape.sh", hangLimit); err != nil || code != http.StatusOK {
				t.Fatalf("escape.sh: %d %q %v", code, body, err)
			}
			var child int
			testkit.Eventually(t, "the child's pid", func() bool {
				b, _ := os.ReadFile(pidfile)
				child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
				return child > 0
			})
			// After the keepalive the script and its escaped child are
			// gone, and the other script is still served and stopped.
			testkit.Eventually(t, "the escaped child to be killed", func() bool { return gone(child) })
			if code, _, err := getWithin(url+"/other.sh", hangLimit); err != nil || code != http.StatusOK {
				t.Fatalf("other.sh after the stop: %d %v", code, err)
			}
			testkit.Eventually(t, "other.sh to stop", func() bool { return pidOf(s, "other.sh") == 0 })
			// Started again, then shut down while running.
			if code, _, err := getWithin(url+"/escape.sh", hangLimit); err != nil || code != http.StatusOK {
				t.Fatalf("escape.sh again: %d %v", code, err)
			}
			testkit.Eventually(t, "a new child", func() bool {
				b, _ := os.ReadFile(pidfile)
				c, _ := strconv.Atoi(strings.TrimSpace(string(b)))
				if c > 0 && c != child {
					child = c
					return true
				}
				return false
			})
			took := stop()
			if !gone(child) {
				t.Fatalf("child %d survives shutdown", child)
			}
			if left := markedLeftovers(); len(left) > 0 {
				t.Fatalf("processes left after shutdown: %v", left)
			}
			t.Logf("shutdown with an escaped, TERM-ignoring child took %v", took.Round(time.Millisecond))
		})
	}
}

// Shutdown with a wedged script (ignores SIGTERM, has an escaped child
// that ignores it too) ends within bounded time, everything gone.
func TestShutdownWithWedgedScript(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(t.TempDir(), "child")
	writeScript(t, dir, "wedged.sh", escaper(pidfile, true), true)
	writeScript(t, dir, "wedged-autostart.sh", "#!/bin/sh\ntrap '' TERM\nwhile :; do echo 'x 1'; echo '# EOF'; sleep 0.1; done\n", true)
	s, url, stop := runSupervisor(t, Options{Dir: dir, StartWait: 5 * time.Second, StopGrace: time.Second})
	if code, _, err := getWithin(url+"/wedged.sh", hangLimit); err != nil || code != http.StatusOK {
		t.Fatalf("wedged.sh: %d %v", code, err)
	}
	testkit.Eventually(t, "autostart", func() bool { return pidOf(s, "wedged-autostart.sh") != 0 })
	var child int
	testkit.Eventually(t, "the child's pid", func() bool {
		b, _ := os.ReadFile(pidfile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return child > 0
	})
	took := stop()
	if !gone(child) {
		t.Fatalf("child %d survives shutdown", child)
	}
	if left := markedLeftovers(); len(left) > 0 {
		t.Fatalf("processes left after shutdown: %v", left)
	}
	t.Logf("shutdown with wedged scripts took %v (stop grace 1s)", took.Round(time.Millisecond))
	// Nothing starts after shutdown.
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest("GET", "/wedged.sh", nil)
	s.ServeScript(rec, req, "wedged.sh")
	if rec.code != http.StatusServiceUnavailable || pidOf(s, "wedged.sh") != 0 {
		t.Fatalf("request after shutdown: %d, pid %d", rec.code, pidOf(s, "wedged.sh"))
	}
}

type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

// eightMaps sets eight maps of different kinds once, at start.
const eightMaps = `BEGIN { @a = 1; @b = 2; @c[1] = 3; @c[2] = 4; @d = count(); @e["x"] = 5; @f = 6; @g = 7; @h = 8; }
`

// wantEightMaps are lines each whole scrape of eightMaps holds.
var wantEightMaps = []string{"\na 1\n", "\nb 2\n", `c{key="1"} 3`, `c{key="2"} 4`, "\nd 1\n", `e{key="x"} 5`, "\nf 6\n", "\ng 7\n", "\nh 8\n"}

// Case 4: concurrent scrapes of a bpftrace script share one dump and
// each gets every map.
func TestBpftraceConcurrentScrapes(t *testing.T) {
	needBpftrace(t)
	dir := t.TempDir()
	writeScript(t, dir, "eight.bt", eightMaps, false)
	_, url, _ := runSupervisor(t, Options{Dir: dir, StartWait: 20 * time.Second})
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		bodies := make([]string, 6)
		codes := make([]int, 6)
		for i := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], bodies[i], _ = getWithin(url+"/eight.bt", hangLimit)
			}()
		}
		wg.Wait()
		for i, b := range bodies {
			if codes[i] != http.StatusOK {
				t.Fatalf("round %d request %d: %d %q", round, i, codes[i], b)
			}
			for _, w := range wantEightMaps {
				if !strings.Contains("\n"+b, w) {
					t.Fatalf("round %d request %d lacks %q:\n%s", round, i, w, b)
				}
			}
		}
	}
}

// Case 5: output over the limit answers 500 naming the script and the
// limit, the state says so, and the next good block is served.
func TestOutputLimits(t *testing.T) {
	const limit = 1 << 20
	for _, tc := range []struct {
		name, bad string // shell commands printing the bad output
	}{
		// A 5 MiB block of short lines, with its # TYPE line first.
		{"big-block", `echo '# TYPE big gauge'; i=0; while [ $i -lt 40000 ]; do echo "big{i=\"$i\"} 1 # padding padding padding padding padding padding padding padding padding"; i=$((i+1)); done; echo '# EOF'`},
		// One 4 MiB line.
		{"long-line", `head -c 4194304 /dev/zero | tr '\0' 'e'; echo ' 1'; echo '# EOF'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			trigger := filepath.Join(t.TempDir(), "good")
			writeScript(t, dir, "out.sh", "#!/bin/sh\n"+tc.bad+"\nwhile [ ! -e "+trigger+" ]; do sleep 0.05; done\nwhile true; do echo '# TYPE good gauge'; echo 'good 1'; echo '# EOF'; sleep 0.1; done\n", true)
			s, url, _ := runSupervisor(t, Options{Dir: dir, StartWait: 20 * time.Second, MaxOutput: limit})
			code, body, err := getWithin(url+"/out.sh", hangLimit)
			if err != nil {
				t.Fatal(err)
			}
			if code != http.StatusInternalServerError || !strings.Contains(body, "out.sh") || !strings.Contains(body, strconv.Itoa(limit)) {
				t.Fatalf("over the limit: %d %.300q", code, body)
			}
			if st := s.Status()[0]; !strings.Contains(st.LastError, strconv.Itoa(limit)) {
				t.Fatalf("state does not say so: %+v", st)
			}
			os.WriteFile(trigger, nil, 0o644)
			testkit.Eventually(t, "the next good block", func() bool {
				code, body, err := getWithin(url+"/out.sh", hangLimit)
				return err == nil && code == http.StatusOK && body == "# TYPE good gauge\ngood 1\n"
			})
		})
	}
	t.Run("stderr-line", func(t *testing.T) {
		dir := t.TempDir()
		// 256 KiB of stderr in one line, more than a pipe holds, then
		// blocks on stdout: reading stderr must go on.
		writeScript(t, dir, "noisy.sh", "#!/bin/sh\nhead -c 262144 /dev/zero | tr '\\0' 'x' >&2\necho >&2\ni=0\nwhile true; do i=$((i+1)); echo \"n $i\"; echo '# EOF'; echo \"line $i\" >&2; sleep 0.05; done\n", true)
		_, url, _ := runSupervisor(t, Options{Dir: dir, StartWait: 20 * time.Second})
		testkit.Eventually(t, "blocks after a huge stderr line", func() bool {
			code, body, err := getWithin(url+"/noisy.sh", hangLimit)
			return err == nil && code == http.StatusOK && strings.Contains(body, "\nn ")
		})
	})
	t.Run("bpftrace", func(t *testing.T) {
		needBpftrace(t)
		dir := t.TempDir()
		writeScript(t, dir, "huge.bt", `BEGIN { $i = 0; while ($i < 3000) { @big[$i] = $i; $i++; } @small = 1; }
`, false)
		s, url, _ := runSupervisor(t, Options{Dir: dir, StartWait: 20 * time.Second, MaxOutput: 16 << 10})
		code, body, err := getWithin(url+"/huge.bt", hangLimit)
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusInternalServerError || !strings.Contains(body, "huge.bt") || !strings.Contains(body, "16384") {
			t.Fatalf("over the limit: %d %.300q", code, body)
		}
		if st := s.Status()[0]; !strings.Contains(st.LastError, "16384") {
			t.Fatalf("state does not say so: %+v", st)
		}
	})
	t.Run("default-limit", func(t *testing.T) {
		// As reported, over the default 16 MiB: a block of 20 MB (the
		// report's 100 MB behaves the same), then one 40 MB line; then
		// good blocks.
		dir := t.TempDir()
		trigger := filepath.Join(t.TempDir(), "good")
		writeScript(t, dir, "huge.sh", "#!/bin/sh\necho '# TYPE big gauge'\nyes 'big{i=\"1\"} 1' | head -c 20971520\necho\necho '# EOF'\n"+
			"head -c 41943040 /dev/zero | tr '\\0' 'e'; echo ' 1'; echo '# EOF'\n"+
			"while [ ! -e "+trigger+" ]; do sleep 0.05; done\nwhile true; do echo 'good 1'; echo '# EOF'; sleep 0.1; done\n", true)
		s, url, _ := runSupervisor(t, Options{Dir: dir, StartWait: 20 * time.Second})
		check := func() {
			t.Helper()
			code, body, err := getWithin(url+"/huge.sh", hangLimit)
			if err != nil || code != http.StatusInternalServerError || !strings.Contains(body, "huge.sh") || !strings.Contains(body, strconv.Itoa(16<<20)) {
				t.Fatalf("over the default limit: %d %.300q %v", code, body, err)
			}
		}
		check() // starts it; answers from the 20 MB block
		s.mu.Lock()
		sc := s.scripts["huge.sh"]
		s.mu.Unlock()
		testkit.Eventually(t, "the 40 MB line to be read", func() bool { return sc.outputErrsNow() == 2 })
		check()
		os.WriteFile(trigger, nil, 0o644)
		testkit.Eventually(t, "the next good block", func() bool {
			code, body, err := getWithin(url+"/huge.sh", hangLimit)
			return err == nil && code == http.StatusOK && strings.Contains(body, "good 1\n")
		})
	})
}

func (s *script) outputErrsNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.outputErrs
}

// Case 6: exposition Prometheus would reject is not served; the answer
// names the script and the line.
func TestInvalidExposition(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"duplicate", "dup{a=\"1\"} 1\ndup{a=\"1\"} 2\n", "line 2"},
		{"duplicate-reordered", "# TYPE d gauge\nd{a=\"1\",b=\"2\"} 1\nd{b=\"2\",a=\"1\"} 2\n", "line 3"},
		{"duplicate-no-labels", "x 1\n\nx 2\n", "line 3"},
		{"duplicate-bucket", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n", "line 3"},
		{"duplicate-sum", "# TYPE s summary\ns_sum 1\ns_count 1\ns_sum 2\n", "line 4"},
		{"type-after-samples", "t 1\n# TYPE t counter\n", "line 2"},
		{"unknown-type", "# TYPE u sometimes\nu 1\n", "line 1"},
		{"second-type", "# TYPE w gauge\n# TYPE w counter\nw 1\n", "line 2"},
		{"bad-quantile", "# TYPE q summary\nq{quantile=\"half\"} 1\n", "line 2"},
		{"bad-le", "# TYPE hb histogram\nhb_bucket{le=\"x\"} 1\n", "line 2"},
		{"bad-value", "v{a=\"1\"} one\n", "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := validate([]byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want an error naming %s", err, tc.want)
			}
		})
	}
	for _, ok := range []string{
		"a{x=\"1\"} 1\na{x=\"2\"} 1\nb 1\n",
		"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\nh_bucket{le=\"1\",k=\"b\"} 1\n",
		"e{v=\"a\\\"b\"} 1\ne{v=\"a\\\\\"} 1\n",
	} {
		if _, err := validate([]byte(ok)); err != nil {
			t.Errorf("valid %q rejected: %v", ok, err)
		}
	}
	// Through a real script: 500 naming the script and the line, and
	// what is served is what Prometheus parses.
	dir := t.TempDir()
	writeScript(t, dir, "dup.sh", "#!/bin/sh\necho 'dup{a=\"1\"} 1'\necho 'dup{a=\"1\"} 2'\necho '# EOF'\nsleep 60\n", true)
	_, url, _ := runSupervisor(t, Options{Dir: dir, StartWait: 20 * time.Second})
	code, body, err := getWithin(url+"/dup.sh", hangLimit)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusInternalServerError || !strings.Contains(body, "dup.sh") || !strings.Contains(body, "line 2") {
		t.Fatalf("%d %q", code, body)
	}
}

// Case 7: a file name that is not valid UTF-8 is skipped with a warning,
// and every other script's metrics are still there.
func TestNonUTF8ScriptName(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "bad\xff\xfe.sh", blocks, true)
	writeScript(t, dir, "good.sh", blocks, true)
	var logs testkit.LogBuffer
	s, url, _ := runSupervisor(t, Options{Dir: dir, StartWait: 20 * time.Second, Logger: newTestLogger(&logs)})
	if code, _, err := getWithin(url+"/good.sh", hangLimit); err != nil || code != http.StatusOK {
		t.Fatalf("good.sh: %d %v", code, err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var text bytes.Buffer
	for _, f := range fams {
		expfmt.MetricFamilyToText(&text, f)
	}
	if !strings.Contains(text.String(), `probe_exporter_script_up{kind="exec",script="good.sh"} 1`) {
		t.Fatalf("good.sh's state is missing:\n%s", text.String())
	}
	if strings.Contains(text.String(), "bad") {
		t.Fatalf("the bad name is exported:\n%s", text.String())
	}
	if !strings.Contains(logs.String(), "not valid UTF-8") || !strings.Contains(logs.String(), `bad\\xff\\xfe.sh`) {
		t.Fatalf("no warning naming the file: %s", logs.String())
	}
}

// serveNoCleanup makes a supervisor and its HTTP front without running
// it.
func serveNoCleanup(t *testing.T, opts Options) (*Supervisor, *httptest.Server) {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeScript(w, r, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	return s, srv
}

func newTestLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// What the scripts of an exporter that died by SIGKILL left running in
// their cgroups is killed when the next exporter starts.
func TestStaleCgroupsReaped(t *testing.T) {
	root := cgroupRoot(hostProc, os.Getpid())
	if root == "" {
		t.Skip("no cgroup v2")
	}
	stale := filepath.Join(filepath.Dir(root), cgroupPrefix+"999999999") // no such pid
	run := filepath.Join(stale, "left.sh-1")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Skipf("cgroup v2 not writable: %v", err)
	}
	t.Cleanup(func() { os.Remove(run); os.Remove(stale) })
	fd, err := syscall.Open(run, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	left := exec.Command("sh", "-c", "trap '' TERM; while :; do sleep 1; done")
	left.SysProcAttr = &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: fd}
	if err := left.Start(); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	syscall.Close(fd)
	waited := make(chan struct{})
	go func() { left.Wait(); close(waited) }()
	t.Cleanup(func() { left.Process.Kill(); <-waited })

	if _, err := New(Options{Dir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
	case <-time.After(hangLimit):
		t.Fatal("the stale script process survives")
	}
	if _, err := os.Stat(stale); err == nil {
		t.Fatalf("stale cgroup %s not removed", stale)
	}
}
