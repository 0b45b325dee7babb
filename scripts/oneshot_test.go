package scripts

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// runs counts the lines a script appended to its runs file.
func runs(t *testing.T, file string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

// TestOneShot: executables that print Prometheus text once and exit 0
// (node_exporter textfile collectors, script_exporter scripts) are
// served from their first request on, with or without "# EOF"; each
// request runs them again, past MinInterval.
func TestOneShot(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"echo.sh", "echo 'oneshot_value 42'", "oneshot_value 42\n"},
		{"eof.sh", "echo '# TYPE v gauge'; echo 'v{a=\"b\"} 1'; echo '# EOF'", "# TYPE v gauge\nv{a=\"b\"} 1\n"},
		{"empty.sh", "true", ""},
		{"slow.sh", "sleep 0.3; echo 'late 1'", "late 1\n"},
		{"printf.sh", "printf 'no_newline 3'", "no_newline 3\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(t.TempDir(), "runs")
			writeScript(t, dir, tc.name, "#!/bin/sh\necho run >> "+log+"\n"+tc.body+"\n", true)
			s, srv := serve(t, Options{Dir: dir, StartWait: 100 * time.Millisecond})
			for i := 1; i <= 3; i++ {
				code, _, body := testkit.Get(t, srv.URL+"/"+tc.name)
				if code != http.StatusOK || !strings.HasSuffix(body, tc.want) {
					t.Fatalf("request %d: %d %q, want 200 ending %q", i, code, body, tc.want)
				}
				// A run ending in "# EOF" is served at that line:
				// count it once it has exited.
				testkit.Eventually(t, "the run to end", func() bool { return pidOf(s, tc.name) == 0 })
				if n := runs(t, log); n != i {
					t.Fatalf("request %d: %d runs", i, n)
				}
			}
			st := s.Status()[0]
			if !st.OneShot || st.State != StateIdle || st.LastError != "" {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

// TestOneShotMinInterval: within MinInterval a result is reused, so that
// several Prometheus servers do not run the script each.
func TestOneShotMinInterval(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(t.TempDir(), "runs")
	writeScript(t, dir, "c.sh", "#!/bin/sh\necho run >> "+log+"\necho \"runs $(wc -l < "+log+")\"\n", true)
	_, srv := serve(t, Options{Dir: dir, MinInterval: time.Hour})
	for i := 0; i < 5; i++ {
		if code, _, body := testkit.Get(t, srv.URL+"/c.sh"); code != http.StatusOK || body != "# TYPE runs untyped\nruns 1\n" {
			t.Fatalf("%d %q", code, body)
		}
	}
	if n := runs(t, log); n != 1 {
		t.Fatalf("%d runs within the minimum interval, want 1", n)
	}
}

// TestOneShotFailures: a non-zero exit answers 500 with the status and
// the first lines of stderr; a run over its timeout is killed with what
// it started and answers 504 naming the timeout; output that is not
// exposition answers 500 naming the line.
func TestOneShotFailures(t *testing.T) {
	dir := t.TempDir()
	tmp := t.TempDir()
	hang, pidfile := filepath.Join(tmp, "hang"), filepath.Join(tmp, "child")
	writeScript(t, dir, "fails.sh", "#!/bin/sh\necho 'partial 1'\necho 'smartctl: no such device' >&2\nfor i in $(seq 1 15); do echo noise $i >&2; done\necho 'last words' >&2\nexit 3\n", true)
	writeScript(t, dir, "hangs.sh", "#!/bin/sh\nif [ -e "+hang+" ]; then sleep 1000 & echo $! > "+pidfile+"; wait; fi\necho 'ok 1'\n", true)
	writeScript(t, dir, "bad.sh", "#!/bin/sh\necho 'not exposition {'\n", true)
	s, srv := serve(t, Options{Dir: dir, Timeouts: map[string]time.Duration{"hangs.sh": 300 * time.Millisecond}})

	code, _, body := testkit.Get(t, srv.URL+"/fails.sh")
	if code != http.StatusInternalServerError || !strings.Contains(body, "exit status 3") ||
		!strings.Contains(body, "smartctl: no such device") || !strings.Contains(body, "last words") ||
		!strings.Contains(body, "noise 4 | ... | noise 12") || strings.Contains(body, "noise 8") {
		t.Fatalf("non-zero exit: %d %q", code, body)
	}
	if code, _, body := testkit.Get(t, srv.URL+"/bad.sh"); code != http.StatusInternalServerError || !strings.Contains(body, "bad output") {
		t.Fatalf("bad output: %d %q", code, body)
	}

	// The first run exits 0 (one-shot), the second hangs.
	if code, _, body := testkit.Get(t, srv.URL+"/hangs.sh"); code != http.StatusOK || body != "# TYPE ok untyped\nok 1\n" {
		t.Fatalf("first run: %d %q", code, body)
	}
	if err := os.WriteFile(hang, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, body = testkit.Get(t, srv.URL+"/hangs.sh")
	if code != http.StatusGatewayTimeout || !strings.Contains(body, "timeout of 300ms") {
		t.Fatalf("hung run: %d %q", code, body)
	}
	data, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	testkit.Eventually(t, "the hung run's child to be killed", func() bool { return gone(child) })
	for _, st := range s.Status() {
		if st.Name == "hangs.sh" && (st.State != StateFailed || !strings.Contains(st.LastError, "timeout")) {
			t.Fatalf("status after the timeout: %+v", st)
		}
	}
	os.Remove(hang)
	if code, _, _ := testkit.Get(t, srv.URL+"/hangs.sh"); code != http.StatusOK {
		t.Fatalf("after the timeout: %d", code)
	}
}

// TestOneShotSingleFlight: concurrent requests share one run, the first
// run (form not yet known) and later ones alike.
func TestOneShotSingleFlight(t *testing.T) {
	dir := t.TempDir()
	tmp := t.TempDir()
	log, gate := filepath.Join(tmp, "runs"), filepath.Join(tmp, "gate")
	writeScript(t, dir, "shared.sh", "#!/bin/sh\necho run >> "+log+"\nwhile [ ! -e "+gate+" ]; do sleep 0.02; done\necho 'shared 1'\n", true)
	s, srv := serve(t, Options{Dir: dir, Timeout: time.Minute})
	s.mu.Lock()
	sc := s.scripts["shared.sh"]
	s.mu.Unlock()
	for round := 1; round <= 2; round++ {
		os.Remove(gate)
		const n = 20
		codes := make(chan int, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _, _ := testkit.Get(t, srv.URL+"/shared.sh")
				codes <- code
			}()
		}
		testkit.Eventually(t, "every request to wait for the run", func() bool {
			sc.mu.Lock()
			defer sc.mu.Unlock()
			return sc.inflight == n
		})
		os.WriteFile(gate, nil, 0o644)
		wg.Wait()
		close(codes)
		for c := range codes {
			if c != http.StatusOK {
				t.Errorf("round %d: status %d", round, c)
			}
		}
		if got := runs(t, log); got != round {
			t.Fatalf("round %d: %d runs in all, want %d", round, got, round)
		}
	}
}

// TestOneShotAutostart: an autostart one-shot script runs on an interval
// and requests are answered from its newest run.
func TestOneShotAutostart(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(t.TempDir(), "runs")
	writeScript(t, dir, "cron-autostart.sh", "#!/bin/sh\necho run >> "+log+"\necho \"runs $(wc -l < "+log+")\"\n", true)
	s, srv := serve(t, Options{Dir: dir, MinInterval: time.Second})
	testkit.Eventually(t, "two runs", func() bool { return runs(t, log) >= 2 })
	code, _, body := testkit.Get(t, srv.URL+"/cron-autostart.sh")
	if code != http.StatusOK || !strings.HasPrefix(body, "# TYPE runs untyped\nruns ") {
		t.Fatalf("%d %q", code, body)
	}
	if st := s.Status()[0]; !st.OneShot || st.Restarts < 1 {
		t.Fatalf("status %+v", st)
	}
}

// TestDeadBpftraceReason: a bpftrace that says it attached and then dies
// (a kprobe the kernel refuses) is answered with its exit status and its
// own last stderr lines, on the request and the status alike, never an
// internal message about signalling a process that is gone. The fake
// bpftrace stays busy (as bpftrace is while it attaches) until it dies.
func TestDeadBpftraceReason(t *testing.T) {
	tmp := t.TempDir()
	fake := writeScript(t, tmp, "bpftrace", `#!/bin/sh
trap '' USR1
echo '{"type": "attached_probes", "data": {"probes": 2}}'
echo "create_probe_event: open(/sys/kernel/tracing/kprobe_events): No such file or directory" >&2
i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done
echo "ERROR: Error attaching probe: 'kprobe:tcp_set_state'" >&2
exit 255
`, true)
	dir := t.TempDir()
	writeScript(t, dir, "tcplife.bt", "kprobe:tcp_set_state { @x = count(); }\n", false)
	s, srv := serve(t, Options{Dir: dir, Bpftrace: fake, StartWait: 5 * time.Second})
	for i := 0; i < 2; i++ {
		code, _, body := testkit.Get(t, srv.URL+"/tcplife.bt")
		if code != http.StatusInternalServerError || !strings.Contains(body, "exit status 255") ||
			!strings.Contains(body, "ERROR: Error attaching probe: 'kprobe:tcp_set_state'") || strings.Contains(body, "signalling") {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	st := s.Status()[0]
	if st.State != StateFailed || !strings.Contains(st.LastError, "Error attaching probe") {
		t.Fatalf("status %+v", st)
	}
}
