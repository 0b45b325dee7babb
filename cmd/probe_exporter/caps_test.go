package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/caps"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// TestCapabilities runs the shipped binary with the flags a user gives and
// checks what it keeps after start: by default what the configured
// features need, and that those features then work; narrowed by
// --capabilities.keep, the features that cannot work are named at start
// and on the landing page.
func TestCapabilities(t *testing.T) {
	held := capField(t, "/proc/self/status", "CapPrm:")
	base := caps.Mask(caps.BPF, caps.Perfmon, caps.SysResource)
	bpftrace := base | caps.Mask(caps.SysAdmin, caps.SysPtrace, caps.DacReadSearch, caps.Syslog)
	for _, tc := range []struct {
		name     string
		bt       bool
		args     []string
		want     uint64
		uid      string
		unmet    string // a feature named as unable to work
		scriptOK bool
	}{
		{name: "defaults and an executable script", want: base, scriptOK: true},
		{name: "a bpftrace script", bt: true, want: bpftrace, scriptOK: true},
		{name: "as nobody", args: []string{"--runas.user=nobody"}, want: base, uid: "65534", scriptOK: true},
		{name: "narrowed", bt: true, args: []string{"--capabilities.keep=CAP_BPF,CAP_PERFMON"}, want: caps.Mask(caps.BPF, caps.Perfmon), unmet: "bpftrace scripts", scriptOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scripts := t.TempDir()
			os.Chmod(scripts, 0o755)
			os.Chmod(filepath.Dir(scripts), 0o755)
			os.WriteFile(filepath.Join(scripts, "hello.sh"), []byte("#!/bin/sh\nwhile true; do echo 'hello 1'; echo '# EOF'; sleep 1; done\n"), 0o755)
			if tc.bt {
				// args->pid needs the kernel's BTF: the case that fails
				// without CAP_SYS_ADMIN.
				os.WriteFile(filepath.Join(scripts, "wake.bt"), []byte("tracepoint:sched:sched_wakeup { @wakeups_total[args->pid > 0] = count(); }\n"), 0o644)
			}
			addr := freePort(t)
			p := startExporter(t, func() bool { return serves(addr) }, append([]string{"--web.listen-address=" + addr, "-s", scripts}, tc.args...)...)
			want := tc.want & held
			status, _ := os.ReadFile("/proc/" + strconv.Itoa(p.Pid()) + "/status")
			if tc.uid != "" && !strings.Contains(string(status), "Uid:\t"+tc.uid+"\t"+tc.uid+"\t"+tc.uid) {
				t.Errorf("not running as uid %s:\n%s", tc.uid, status)
			}
			// Wait for the drop (it follows the listener's start).
			deadline := time.Now().Add(30 * time.Second)
			for capField(t, "/proc/"+strconv.Itoa(p.Pid())+"/status", "CapBnd:") != want && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			for _, field := range []string{"CapEff:", "CapBnd:", "CapPrm:"} {
				if got := capField(t, "/proc/"+strconv.Itoa(p.Pid())+"/status", field); got != want {
					t.Errorf("%s %v, want %v", field, caps.Names(got), caps.Names(want))
				}
			}
			if tc.unmet != "" {
				_, page := get(t, "http://"+addr+"/")
				if !strings.Contains(page, "<td>"+tc.unmet+"</td>") || !strings.Contains(page, "cannot work: needs") || !strings.Contains(page, "CAP_SYS_ADMIN</span>") && !strings.Contains(page, "CAP_SYS_ADMIN, ") {
					t.Errorf("landing page does not say %s cannot work:\n%s", tc.unmet, page)
				}
				if !strings.Contains(p.Log(), `feature cannot work: capability not kept" feature="`+tc.unmet+`" missing=`) || !strings.Contains(p.Log(), "CAP_SYS_ADMIN,CAP_SYSLOG why=") {
					t.Errorf("log does not name %s:\n%s", tc.unmet, p.Log())
				}
			}
			if lines := series(t, addr, `probe_exporter_syscalls_total{syscall="read"}`); len(lines) != 1 {
				t.Errorf("scrape after dropping: %v", lines)
			}
			resp, err := http.Post("http://"+addr+"/-/reload", "", nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("reload after dropping: %v %v", err, resp)
			}
			resp.Body.Close()
			if lines := series(t, addr, `probe_exporter_config_last_reload_successful 1`); len(lines) != 1 {
				t.Errorf("reload not successful: %v", lines)
			}
			waitScript(t, addr, "hello.sh", "hello 1")
			switch {
			case tc.bt && tc.unmet == "":
				waitScript(t, addr, "wake.bt", `wakeups_total{key="1"} `)
			case tc.bt:
				// Refused by name, without starting bpftrace.
				code, body := get(t, "http://"+addr+"/wake.bt")
				if code != 503 || !strings.Contains(body, "wake.bt cannot run: bpftrace scripts needs") || !strings.Contains(body, "CAP_SYS_ADMIN") {
					t.Errorf("/wake.bt with bpftrace's capabilities dropped: %d %q", code, body)
				}
				if _, page := get(t, "http://"+addr+"/"); !strings.Contains(page, "cannot run: bpftrace scripts needs") {
					t.Errorf("landing page does not show why wake.bt cannot run")
				}
			}
		})
	}
}

// waitScript GETs /name until it answers 200 with want in the body; a
// first request answers 503 while the script starts.
func waitScript(t *testing.T, addr, name, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := get(t, "http://"+addr+"/"+name)
		if code == 200 && strings.Contains(body, want) {
			return
		}
		if code != 200 && code != 503 || time.Now().After(deadline) {
			t.Fatalf("/%s: %d %s", name, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func capField(t *testing.T, path, field string) uint64 {
	t.Helper()
	status, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			got, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return got
		}
	}
	t.Fatalf("no %s in %s", field, path)
	return 0
}

// TestUprobesWithoutSysAdmin: a userspace config with CAP_SYS_ADMIN left
// out by --capabilities.keep is named at start as unable to work, and the
// attach failure when a selected process starts names the capability
// instead of only "permission denied".
func TestUprobesWithoutSysAdmin(t *testing.T) {
	const python = "/usr/bin/python3.11"
	if _, err := os.Stat(python); err != nil {
		t.Skip("Debian's python3.11 is not installed")
	}
	testkit.RequireTools(t, "clang")
	dir := t.TempDir()
	bin := filepath.Join(dir, "pynocap"+strconv.Itoa(os.Getpid()%1000))
	data, _ := os.ReadFile(python)
	os.WriteFile(bin, data, 0o755)
	os.WriteFile(filepath.Join(dir, "gc.yaml"), []byte(fmt.Sprintf(gcConfig, filepath.Base(bin))), 0o644)
	addr := freePort(t)
	p := startExporter(t, func() bool { return serves(addr) }, "--web.listen-address="+addr, "--config.dir="+dir, "--config.names=gc",
		"--capabilities.keep=CAP_BPF,CAP_PERFMON,CAP_SYS_PTRACE,CAP_DAC_READ_SEARCH,CAP_KILL,CAP_SYSLOG")
	if !strings.Contains(p.Log(), `feature cannot work: capability not kept" feature=uprobes missing=CAP_SYS_ADMIN`) {
		t.Errorf("start-up does not name the uprobes feature:\n%s", p.Log())
	}
	py := exec.Command(bin, "-S", "-c", "import gc; gc.collect()")
	if out, err := py.CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.Log(), "uprobes needs CAP_SYS_ADMIN, not kept after start") {
		if time.Now().After(deadline) {
			t.Fatalf("no attach error naming CAP_SYS_ADMIN:\n%s", p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
