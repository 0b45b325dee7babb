package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReload: a changed config is swapped, a broken one keeps the old one
// running (counting on) and marks the reload failed, with the error on the
// landing page; SIGHUP's path is the same function as POST /-/reload.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "e2e", e2eProg, e2eYAML)
	addr := exporter(t, "--config.dir="+dir, "--config.names=e2e")
	workload(t, "e2e_before", 5)
	waitFor(t, addr, "probe_exporter_getppid_calls_total", `probe_exporter_getppid_calls_total{comm="e2e_before"} 5`)

	reload := func() int {
		resp, err := http.Post("http://"+addr+"/-/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Unchanged: kept as is, counters continue.
	if code := reload(); code != 200 {
		t.Fatalf("reload: %d", code)
	}
	workload(t, "e2e_before", 2)
	waitFor(t, addr, "probe_exporter_getppid_calls_total", `probe_exporter_getppid_calls_total{comm="e2e_before"} 7`)
	waitFor(t, addr, "probe_exporter_config_last_reload_successful", "probe_exporter_config_last_reload_successful 1")

	// Broken: the old config keeps running.
	yaml := filepath.Join(dir, "e2e.yaml")
	good, _ := os.ReadFile(yaml)
	os.WriteFile(yaml, []byte(strings.Replace(string(good), "help: getppid calls by command", "hlep: typo", 1)), 0o644)
	if code := reload(); code != http.StatusInternalServerError {
		t.Fatalf("reload of a broken config: %d, want 500", code)
	}
	waitFor(t, addr, "probe_exporter_config_last_reload_successful", "probe_exporter_config_last_reload_successful 0")
	workload(t, "e2e_before", 3)
	waitFor(t, addr, "probe_exporter_getppid_calls_total", `probe_exporter_getppid_calls_total{comm="e2e_before"} 10`)
	if _, page := get(t, "http://"+addr+"/"); !strings.Contains(page, "Last reload failed") || !strings.Contains(page, `unknown field &#34;hlep&#34;`) {
		t.Errorf("landing page does not show the reload error")
	}

	// Fixed and changed: swapped (a new program, counting from zero).
	os.WriteFile(yaml, append(good, []byte("# changed\n")...), 0o644)
	if code := reload(); code != 200 {
		t.Fatalf("reload of the fixed config: %d", code)
	}
	waitFor(t, addr, "probe_exporter_config_last_reload_successful", "probe_exporter_config_last_reload_successful 1")
	if lines := series(t, addr, `probe_exporter_getppid_calls_total{comm="e2e_before"}`); len(lines) != 0 {
		t.Errorf("swapped config still has the old counts: %v", lines)
	}
	workload(t, "e2e_after", 4)
	waitFor(t, addr, "probe_exporter_getppid_calls_total", `probe_exporter_getppid_calls_total{comm="e2e_after"} 4`)
}
