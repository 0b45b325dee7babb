package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// getppidScript counts the getppid calls of processes named e2e_bt; its
// @ticks map fills as soon as bpftrace is attached, so the first 200 says
// it is.
const getppidScript = `#!/usr/bin/env bpftrace
tracepoint:syscalls:sys_enter_getppid /comm == "e2e_bt"/ { @getppid_total = count(); }
interval:ms:100 { @ticks_total = count(); }
`

// TestScriptsStapExporterFlags runs the exporter as stap-exporter is run
// (-p PORT -k SECONDS -s DIR, nothing else) on the example scripts and a
// bpftrace script: executable and bpftrace scripts are served, the
// bpftrace one counting a helper's calls exactly.
func TestScriptsStapExporterFlags(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"uptime.sh", "loadavg-autostart.sh", "syscalls.bt", "example.stp"} {
		data, err := os.ReadFile(filepath.Join("../../examples/scripts", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), data, 0o755)
	}
	os.WriteFile(filepath.Join(dir, "getppid.bt"), []byte(getppidScript), 0o644)
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	exporterOn(t, addr, "-p", port, "-k", "60", "-s", dir)
	base := "http://127.0.0.1:" + port
	waitScript(t, "127.0.0.1:"+port, "uptime.sh", "host_uptime_seconds ")
	waitScript(t, "127.0.0.1:"+port, "syscalls.bt", "syscalls_total{comm=")
	waitScript(t, "127.0.0.1:"+port, "getppid.bt", "ticks_total ")
	workload(t, "e2e_bt", 1234)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := get(t, base+"/getppid.bt")
		if strings.Contains(body, "\ngetppid_total 1234\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/getppid.bt never counted 1234 calls:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range []string{"/nope.sh", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/scripts/uptime.sh"} {
		if code, _ := get(t, base+p); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
	_, page := get(t, base+"/")
	for _, want := range []string{"uptime.sh", "loadavg-autostart.sh", "(autostart)", "syscalls.bt", "example.stp"} {
		if !strings.Contains(page, want) {
			t.Errorf("landing page lacks %q", want)
		}
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{
		`probe_exporter_script_up{kind="exec",script="uptime.sh"} 1`,
		`probe_exporter_script_up{kind="bt",script="getppid.bt"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("script state %q missing from /metrics", want)
		}
	}
}
