package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestScriptsStapExporterFlags runs the exporter as stap-exporter is run
// (-p PORT -k SECONDS -s DIR) on the example scripts.
func TestScriptsStapExporterFlags(t *testing.T) {
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	exporterOn(t, addr, "-p", port, "-k", "60", "-s", "../../examples/scripts", "--scripts.start-wait=10s")
	base := "http://127.0.0.1:" + port
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := get(t, base+"/uptime.sh")
		if code == http.StatusOK && strings.Contains(body, "host_uptime_seconds ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/uptime.sh: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
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
	if !strings.Contains(metrics, `probe_exporter_script_up{kind="exec",script="uptime.sh"} 1`) {
		t.Errorf("script state missing from /metrics")
	}
}
