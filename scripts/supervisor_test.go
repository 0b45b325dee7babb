package scripts

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// writeScript writes an executable (mode 0755) or plain file.
func writeScript(t *testing.T, dir, name, body string, exec bool) string {
	t.Helper()
	mode := os.FileMode(0o644)
	if exec {
		mode = 0o755
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// serve runs a supervisor behind an HTTP server the way the daemon routes
// it (the path without its leading slash is the script name).
func serve(t *testing.T, opts Options) (*Supervisor, *httptest.Server) {
	t.Helper()
	if opts.StopGrace == 0 {
		opts.StopGrace = 500 * time.Millisecond
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeScript(w, r, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
	})
	return s, srv
}

// pidOf returns the pid of a running script.
func pidOf(s *Supervisor, name string) int {
	s.mu.Lock()
	sc := s.scripts[name]
	s.mu.Unlock()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.cmd == nil || !sc.running() {
		return 0
	}
	return sc.cmd.Process.Pid
}

func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

const blocks = `#!/bin/sh
i=0
while true; do
  i=$((i+1))
  echo "# TYPE ticks counter"
  echo "ticks_total{script=\"blocks\"} $i"
  echo "# EOF"
  sleep 0.05
done
`

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	writeScript(t, dir, "a.stp", "probe begin {}", false)
	writeScript(t, dir, "b.bt", "BEGIN {}", false)
	writeScript(t, dir, "c.sh", blocks, true)
	writeScript(t, dir, "notes.txt", "x", false)
	writeScript(t, dir, ".hidden.sh", blocks, true)
	writeScript(t, outside, "evil.sh", blocks, true)
	os.Symlink(filepath.Join(outside, "evil.sh"), filepath.Join(dir, "evil.sh"))
	os.Symlink(filepath.Join(dir, "c.sh"), filepath.Join(dir, "alias.sh"))
	os.Mkdir(filepath.Join(dir, "sub.sh"), 0o755)
	got, err := discover(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Kind{"a.stp": KindStap, "b.bt": KindBpftrace, "c.sh": KindExec, "alias.sh": KindExec}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("discovered %v, want %v", got, want)
	}
}

// TestUntrustedScriptsRefused: scripts run as root, so one that a user
// other than root could change (writable by others, owned by another
// user, or in a scripts directory others can write) is never run: its
// requests answer 500 naming the file and why, and the trusted script
// beside it serves.
func TestUntrustedScriptsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	oneshot := func(ran string) string {
		return "#!/bin/sh\ntouch " + ran + "\necho 'x_value 1'\n"
	}
	dir := t.TempDir()
	ran := t.TempDir()
	writeScript(t, dir, "ok.sh", oneshot(filepath.Join(ran, "ok")), true)
	ww := writeScript(t, dir, "ww.sh", oneshot(filepath.Join(ran, "ww")), true)
	if err := os.Chmod(ww, 0o777); err != nil {
		t.Fatal(err)
	}
	theirs := writeScript(t, dir, "theirs.bt", "BEGIN { @x = count(); }", false)
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, srv := serve(t, Options{Dir: dir})
	for _, c := range []struct{ name, want string }{
		{"ww.sh", "ww.sh: refused: " + ww + " is not private: writable by group or others (mode 0777)"},
		{"theirs.bt", "theirs.bt: refused: " + theirs + " is not private: owned by uid 65534"},
	} {
		code, _, body := testkit.Get(t, srv.URL+"/"+c.name)
		if code != http.StatusInternalServerError || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %q, want 500 with %q", c.name, code, body, c.want)
		}
	}
	if code, _, body := testkit.Get(t, srv.URL+"/ok.sh"); code != http.StatusOK || !strings.Contains(body, "x_value 1") {
		t.Errorf("ok.sh: %d %q", code, body)
	}
	if _, err := os.Stat(filepath.Join(ran, "ww")); err == nil {
		t.Error("ww.sh ran")
	}

	// A scripts directory others can write: nothing in it runs.
	open := t.TempDir()
	writeScript(t, open, "ok.sh", oneshot(filepath.Join(ran, "open")), true)
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	_, srv = serve(t, Options{Dir: open})
	want := "ok.sh: refused: scripts directory: " + open + " is not private: writable by group or others"
	if code, _, body := testkit.Get(t, srv.URL+"/ok.sh"); code != http.StatusInternalServerError || !strings.Contains(body, want) {
		t.Errorf("ok.sh in a directory writable by all: %d %q, want 500 with %q", code, body, want)
	}
	if _, err := os.Stat(filepath.Join(ran, "open")); err == nil {
		t.Error("a script of a directory writable by all ran")
	}
}

func TestUnknownAndTraversal(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	writeScript(t, dir, "ok.sh", blocks, true)
	writeScript(t, outside, "evil.sh", "#!/bin/sh\ntouch "+filepath.Join(outside, "ran")+"\n", true)
	os.Symlink(filepath.Join(outside, "evil.sh"), filepath.Join(dir, "evil.sh"))
	_, srv := serve(t, Options{Dir: dir})
	for _, p := range []string{"/nope.sh", "/../" + filepath.Base(outside) + "/evil.sh", "/%2e%2e/evil.sh", "/evil.sh", "/ok.sh/..", "/./ok.sh", "/ok.sh?x=1%20-c"} {
		code, _, _ := testkit.Get(t, srv.URL+p)
		if p == "/ok.sh?x=1%20-c" {
			if code != http.StatusOK {
				t.Errorf("%s: %d, want 200 (query ignored)", p, code)
			}
			continue
		}
		if code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "ran")); err == nil {
		t.Fatal("a script outside the directory ran")
	}
}

func TestExecScript(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "blocks.sh", blocks, true)
	_, srv := serve(t, Options{Dir: dir, StartWait: 5 * time.Second})
	code, hdr, body := testkit.Get(t, srv.URL+"/blocks.sh")
	if code != http.StatusOK || !strings.Contains(body, "# TYPE ticks_total counter") && !strings.Contains(body, `ticks_total{script="blocks"}`) {
		t.Fatalf("%d %v\n%s", code, hdr, body)
	}
}

func TestStartingThenRunning(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "slow.sh", "#!/bin/sh\nsleep 1\necho 'up 1'\necho '# EOF'\nsleep 60\n", true)
	// An executable's first request waits up to its timeout (it may be
	// one-shot), a long-running one without output is not killed for it.
	_, srv := serve(t, Options{Dir: dir, StartWait: 100 * time.Millisecond, Timeout: 100 * time.Millisecond})
	code, hdr, body := testkit.Get(t, srv.URL+"/slow.sh")
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, "starting") {
		t.Fatalf("first request: %d Retry-After=%q %q", code, hdr.Get("Retry-After"), body)
	}
	testkit.Eventually(t, "output", func() bool {
		code, _, body := testkit.Get(t, srv.URL+"/slow.sh")
		return code == http.StatusOK && strings.Contains(body, "up 1")
	})
}

func TestKeepalive(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "blocks.sh", blocks, true)
	s, srv := serve(t, Options{Dir: dir, StartWait: 5 * time.Second, Keepalive: 300 * time.Millisecond})
	if code, _, _ := testkit.Get(t, srv.URL+"/blocks.sh"); code != http.StatusOK {
		t.Fatalf("first request: %d", code)
	}
	pid := pidOf(s, "blocks.sh")
	if !alive(pid) {
		t.Fatal("script not running after a request")
	}
	testkit.Eventually(t, "the idle script to stop", func() bool { return !alive(pid) })
	if st := s.Status()[0]; st.State != StateIdle {
		t.Fatalf("state after keepalive: %s", st.State)
	}
	if code, _, _ := testkit.Get(t, srv.URL+"/blocks.sh"); code != http.StatusOK {
		t.Fatalf("request after keepalive stop: %d", code)
	}
	if pid2 := pidOf(s, "blocks.sh"); pid2 == 0 || pid2 == pid {
		t.Fatalf("not restarted: pid %d then %d", pid, pid2)
	}
}

func TestAutostartRestart(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "load-autostart.sh", blocks, true)
	s, srv := serve(t, Options{Dir: dir, Keepalive: 100 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	var pid int
	testkit.Eventually(t, "autostart", func() bool { pid = pidOf(s, "load-autostart.sh"); return pid != 0 })
	time.Sleep(300 * time.Millisecond) // past the keepalive: autostart is exempt
	if !alive(pid) {
		t.Fatal("autostart script stopped by keepalive")
	}
	syscall.Kill(pid, syscall.SIGKILL)
	var pid2 int
	testkit.Eventually(t, "restart", func() bool { pid2 = pidOf(s, "load-autostart.sh"); return pid2 != 0 && pid2 != pid })
	if st := s.Status()[0]; st.Restarts < 1 {
		t.Fatalf("restarts %d", st.Restarts)
	}
	testkit.Eventually(t, "output", func() bool { code, _, _ := testkit.Get(t, srv.URL+"/load-autostart.sh"); return code == http.StatusOK })
}

func TestConcurrentFirstRequests(t *testing.T) {
	dir := t.TempDir()
	starts := filepath.Join(t.TempDir(), "starts")
	writeScript(t, dir, "once.sh", "#!/bin/sh\necho x >> "+starts+"\nsleep 0.2\necho 'v 1'\necho '# EOF'\nsleep 60\n", true)
	_, srv := serve(t, Options{Dir: dir, StartWait: 5 * time.Second})
	var wg sync.WaitGroup
	codes := make(chan int, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + "/once.sh")
			if err == nil {
				codes <- resp.StatusCode
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("status %d", c)
		}
	}
	data, _ := os.ReadFile(starts)
	if n := strings.Count(string(data), "x"); n != 1 {
		t.Fatalf("script started %d times, want 1", n)
	}
}

func TestBadOutput(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "bad.sh", "#!/bin/sh\necho 'this is not { exposition'\necho '# EOF'\nsleep 60\n", true)
	s, srv := serve(t, Options{Dir: dir, StartWait: 5 * time.Second})
	code, _, body := testkit.Get(t, srv.URL+"/bad.sh")
	if code != http.StatusInternalServerError || !strings.Contains(body, "bad.sh: bad output") {
		t.Fatalf("%d %q", code, body)
	}
	s.mu.Lock()
	n := s.scripts["bad.sh"].outputErrs
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("output errors %d", n)
	}
}

func TestMaxRunning(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "a.sh", blocks, true)
	writeScript(t, dir, "b.sh", blocks, true)
	_, srv := serve(t, Options{Dir: dir, StartWait: 5 * time.Second, MaxRunning: 1})
	if code, _, _ := testkit.Get(t, srv.URL+"/a.sh"); code != http.StatusOK {
		t.Fatal(code)
	}
	code, hdr, body := testkit.Get(t, srv.URL+"/b.sh")
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, "too many scripts running") {
		t.Fatalf("%d %q", code, body)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "a.sh", blocks, true)
	s, srv := serve(t, Options{Dir: dir, StartWait: 5 * time.Second})
	if code, _, _ := testkit.Get(t, srv.URL+"/a.sh"); code != http.StatusOK {
		t.Fatal(code)
	}
	pid := pidOf(s, "a.sh")
	os.Remove(filepath.Join(dir, "a.sh"))
	writeScript(t, dir, "b.sh", blocks, true)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := testkit.Get(t, srv.URL+"/a.sh"); code != http.StatusNotFound {
		t.Fatalf("removed script: %d", code)
	}
	testkit.Eventually(t, "removed script to stop", func() bool { return !alive(pid) })
	if code, _, _ := testkit.Get(t, srv.URL+"/b.sh"); code != http.StatusOK {
		t.Fatalf("new script: %d", code)
	}
}

// TestStap checks the systemtap runner against a stand-in for stap: the
// command line, the module name and the transcription of the module's
// procfs file. (systemtap cannot build modules on this machine's kernel.)
func TestStap(t *testing.T) {
	dir := t.TempDir()
	proc := t.TempDir()
	args := filepath.Join(t.TempDir(), "args")
	fakeStap := writeScript(t, t.TempDir(), "stap", "#!/bin/sh\necho \"$@\" > "+args+"\nsleep 60\n", true)
	writeScript(t, dir, "example.stp", "global arr%\nprobe prometheus { @prometheus_dump_array2(arr, \"count\", \"tid\", \"cpu\") }\n", false)
	writeScript(t, dir, "wrapped.stp", "#!/bin/sh\necho \"$@\" > "+args+".wrapped\nsleep 60\n", true)
	_, srv := serve(t, Options{Dir: dir, Stap: fakeStap, ProcRoot: proc, ExporterID: "t1", StartWait: 300 * time.Millisecond})

	module := "probe_exporter_t1_example"
	if got := stapModuleName("t1", "example.stp"); got != module {
		t.Fatalf("module name %q", got)
	}
	if got := stapModuleName("9900", "my-script.v2.stp"); got != "probe_exporter_9900_my_script_v2" {
		t.Fatalf("module name %q", got)
	}
	if got := stapModuleName("1", strings.Repeat("x", 80)+".stp"); len(got) != maxModuleName {
		t.Fatalf("long module name has %d chars", len(got))
	}
	// Before the module writes its output: 503 with Retry-After.
	code, hdr, _ := testkit.Get(t, srv.URL+"/example.stp")
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Fatalf("before output: %d", code)
	}
	testkit.Eventually(t, "stap to be run", func() bool { _, err := os.Stat(args); return err == nil })
	got, _ := os.ReadFile(args)
	if want := "-m " + module + " " + filepath.Join(dir, "example.stp") + "\n"; string(got) != want {
		t.Fatalf("stap run as %q, want %q", got, want)
	}
	// The module's procfs output, with an escape the text format lacks.
	pdir := filepath.Join(proc, "systemtap", module)
	os.MkdirAll(pdir, 0o755)
	os.WriteFile(filepath.Join(pdir, "__prometheus"), []byte("count{tid=\"12614\",cpu=\"0\"} 9\ncount{tid=\"1802\",cpu=\"0\"} 33687\nnames{comm=\"a\\tb\"} 1\n"), 0o644)
	code, _, body := testkit.Get(t, srv.URL+"/example.stp")
	if code != http.StatusOK {
		t.Fatalf("after output: %d %s", code, body)
	}
	for _, want := range []string{`count{tid="12614",cpu="0"} 9`, `count{tid="1802",cpu="0"} 33687`, `names{comm="a\\tb"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q in\n%s", want, body)
		}
	}
	// An executable .stp runs directly with -m MODULE.
	testkit.Get(t, srv.URL+"/wrapped.stp")
	testkit.Eventually(t, "wrapper to be run", func() bool { _, err := os.Stat(args + ".wrapped"); return err == nil })
	got, _ = os.ReadFile(args + ".wrapped")
	if want := "-m probe_exporter_t1_wrapped\n"; string(got) != want {
		t.Fatalf("wrapper run with %q, want %q", got, want)
	}
}

// TestRealStap runs systemtap itself on the stap-exporter man page's
// example: while stap builds the module requests answer 503 asking to
// refresh, then the body is the module's count{tid,cpu} series (the
// supervisor's own read of the procfs file is one). Where stap cannot
// build or load modules (this machine's kernel has no module support) the
// request answers 500 with stap's reason, and the test skips with it.
func TestRealStap(t *testing.T) {
	testkit.RequireTools(t, "stap")
	dir := t.TempDir()
	writeScript(t, dir, "example.stp", "global arr%\nprobe syscall.read { arr[tid(), cpu()]++ }\nprobe prometheus { @prometheus_dump_array2(arr, \"count\", \"tid\", \"cpu\") }\n", false)
	_, srv := serve(t, Options{Dir: dir, StartWait: 20 * time.Second})
	line := regexp.MustCompile(`^count\{tid="[0-9]+",cpu="[0-9]+"\} [0-9]+$`)
	// A cold compile takes minutes on a busy machine.
	deadline := time.Now().Add(15 * time.Minute)
	for {
		code, hdr, body := testkit.Get(t, srv.URL+"/example.stp")
		switch code {
		case http.StatusInternalServerError:
			if !strings.Contains(body, "example.stp failed") {
				t.Fatalf("failure without cause: %q", body)
			}
			t.Skipf("systemtap cannot run here, and says why: %s", body)
		case http.StatusServiceUnavailable:
			if hdr.Get("Retry-After") == "" || !strings.Contains(body, "refresh") {
				t.Fatalf("503 without Retry-After or a request to refresh: %q", body)
			}
			if time.Now().After(deadline) {
				t.Fatalf("still starting after 15 minutes: %q", body)
			}
			time.Sleep(time.Second)
			continue
		case http.StatusOK:
			n := 0
			for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
				if strings.HasPrefix(l, "#") {
					continue
				}
				n++
				if !line.MatchString(l) {
					t.Errorf("line %q is not count{tid=\"N\",cpu=\"N\"} N", l)
				}
			}
			if n == 0 {
				t.Errorf("no series, though reading the module's procfs file is a read:\n%s", body)
			}
			return
		default:
			t.Fatalf("%d %q", code, body)
		}
	}
}

func TestFixEscapes(t *testing.T) {
	for in, want := range map[string]string{
		`a{b="x\ty"} 1`:      `a{b="x\\ty"} 1`,
		`a{b="x\"y\\z\n"} 1`: `a{b="x\"y\\z\n"} 1`,
		`a{b="\x41"} 1`:      `a{b="\\x41"} 1`,
		"a 1\n":              "a 1\n",
	} {
		if got := string(fixEscapes([]byte(in))); got != want {
			t.Errorf("fixEscapes(%q) = %q, want %q", in, got, want)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestStapBuiltModule: the MODULE.ko stap -m left in the directory is
// loaded with staprun only when it is newer than the script and built for
// the running kernel; otherwise stap builds it again.
func TestStapBuiltModule(t *testing.T) {
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		t.Skip("making a test module needs objcopy")
	}
	staprun, err := exec.LookPath("staprun")
	if err != nil {
		t.Skip("systemtap's staprun is not installed")
	}
	dir, proc := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(proc, "sys/kernel"), 0o755)
	os.WriteFile(filepath.Join(proc, "sys/kernel/osrelease"), []byte("6.1.0-test-amd64\n"), 0o644)
	fakeStap := writeScript(t, t.TempDir(), "stap", "#!/bin/sh\nsleep 60\n", true)
	script := writeScript(t, dir, "example.stp", "probe begin {}\n", false)
	ko := filepath.Join(dir, "probe_exporter_t1_example.ko")
	module := func(release string) {
		info := filepath.Join(t.TempDir(), "modinfo")
		os.WriteFile(info, []byte("license=GPL\x00vermagic="+release+" SMP preempt mod_unload modversions \x00"), 0o644)
		if out, err := exec.Command(objcopy, "-I", "binary", "-O", "elf64-x86-64", "--rename-section", ".data=.modinfo", info, ko).CombinedOutput(); err != nil {
			t.Fatalf("objcopy: %v\n%s", err, out)
		}
	}
	s, err := New(Options{Dir: dir, Stap: fakeStap, ProcRoot: proc, ExporterID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	sc := s.scripts["example.stp"]
	for _, tc := range []struct {
		name, release string
		older         bool
		want          []string
	}{
		{name: "built for this kernel", release: "6.1.0-test-amd64", want: []string{staprun, ko}},
		{name: "another kernel", release: "6.1.0-other-amd64", want: []string{fakeStap, "-m", "probe_exporter_t1_example", script}},
		{name: "older than the script", release: "6.1.0-test-amd64", older: true, want: []string{fakeStap, "-m", "probe_exporter_t1_example", script}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			module(tc.release)
			when := time.Now()
			if tc.older {
				when = when.Add(-time.Hour)
			}
			os.Chtimes(ko, when, when)
			cmd, err := sc.stapCommand()
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(cmd.Args[1:]) != fmt.Sprint(tc.want[1:]) || cmd.Path != tc.want[0] {
				t.Fatalf("runs %s %v, want %v", cmd.Path, cmd.Args[1:], tc.want)
			}
		})
	}
}

// TestValidatedOnce: the requests for one output share one validation
// (which holds many times the output's size: 100 parallel requests for a
// 0.5 MB output took the exporter from 40 MB to 1.2 GB when each validated
// it), and a new output is validated afresh.
func TestValidatedOnce(t *testing.T) {
	sc := &script{name: "s"}
	same := func(a, b []byte) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] }
	first, err := sc.validated([]byte("a 1\nb 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, out string
		reused    bool
		bad       bool
	}{
		{"the same output again, another buffer", "a 1\nb 2\n", true, false},
		{"a new output", "a 1\nb 3\n", false, false},
		{"bad output", "a {\n", false, true},
		{"the same bad output", "a {\n", false, true},
	} {
		got, err := sc.validated([]byte(tc.out))
		if (err != nil) != tc.bad {
			t.Errorf("%s: error %v, bad %v", tc.name, err, tc.bad)
		}
		if same(got, first) != tc.reused {
			t.Errorf("%s: answer reused %v, want %v", tc.name, same(got, first), tc.reused)
		}
		if !tc.bad && !strings.Contains(string(got), strings.Split(tc.out, "\n")[1]) {
			t.Errorf("%s: %q does not answer %q", tc.name, got, tc.out)
		}
	}
}
