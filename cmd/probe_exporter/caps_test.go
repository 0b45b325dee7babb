package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/probe-exporter/probe_exporter/internal/caps"
)

// TestDroppedCapabilities runs the static binary (dropping capabilities
// for every thread needs CGO_ENABLED=0, as it is built) and checks that
// after start it keeps only --capabilities.keep, and that scrapes, reloads
// and on-demand scripts still work.
func TestDroppedCapabilities(t *testing.T) {
	t.Run("root", func(t *testing.T) { testDroppedCapabilities(t, "") })
	t.Run("as nobody", func(t *testing.T) { testDroppedCapabilities(t, "nobody") })
}

func testDroppedCapabilities(t *testing.T, runAs string) {
	bin := filepath.Join(t.TempDir(), "probe_exporter")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	scripts := t.TempDir()
	os.Chmod(scripts, 0o755)
	os.Chmod(filepath.Dir(scripts), 0o755)
	os.WriteFile(filepath.Join(scripts, "hello.sh"), []byte("#!/bin/sh\nwhile true; do echo 'hello 1'; echo '# EOF'; sleep 1; done\n"), 0o755)
	addr := freePort(t)
	args := []string{"--web.listen-address=" + addr, "-s", scripts, "--log.level=warn"}
	if runAs != "" {
		args = append(args, "--runas.user="+runAs)
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/-/ready"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("exporter did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	want, _ := caps.Parse("CAP_BPF,CAP_PERFMON,CAP_SYS_PTRACE,CAP_DAC_READ_SEARCH,CAP_SYSLOG,CAP_SYS_RESOURCE")
	// What the exporter keeps is the default list, of what it had (root
	// here lacks CAP_SYS_RESOURCE, for one).
	want &= capField(t, "/proc/self/status", "CapPrm:")
	status, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
	if runAs != "" && !strings.Contains(string(status), "Uid:\t65534\t65534\t65534") {
		t.Errorf("not running as %s:\n%s", runAs, status)
	}
	for _, line := range strings.Split(string(status), "\n") {
		for _, field := range []string{"CapEff:", "CapBnd:", "CapPrm:"} {
			if v, ok := strings.CutPrefix(line, field); ok {
				got, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if got != want {
					t.Errorf("%s %v, want %v", field, caps.Names(got), caps.Names(want))
				}
			}
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
	for {
		code, body := get(t, "http://"+addr+"/hello.sh")
		if code == 200 && strings.Contains(body, "hello 1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("script after dropping: %d %s", code, body)
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
