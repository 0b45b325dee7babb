package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReloadRetriesFailedConfig: a config that failed for want of its
// target (a uprobe on a binary not there yet) and is unchanged is tried
// again on reload; probe_exporter_config_last_reload_successful says 0
// while it fails and 1 once it works.
func TestReloadRetriesFailedConfig(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "libc-copy.so")
	prog := `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, u32); __type(value, u64); } heal_calls_total SEC(".maps");
SEC("uprobe/` + target + `:getpid")
int on_getpid(void *ctx) { u32 k = 0; u64 one = 1; bpf_map_update_elem(&heal_calls_total, &k, &one, BPF_ANY); return 0; }
char LICENSE[] SEC("license") = "GPL";
`
	writeConfig(t, dir, "heal", prog, "metrics:\n  counters:\n    - name: heal_calls_total\n      help: getpid entries\n      labels:\n        - name: k\n          size: 4\n          decoders: [{name: uint}]\n")
	addr := exporter(t, "--config.dir="+dir, "--config.names=heal")
	reload := func() int {
		resp, err := http.Post("http://"+addr+"/-/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, addr, "probe_exporter_config_up", `probe_exporter_config_up{config="heal"} 0`)
	for i := 0; i < 2; i++ { // unchanged and still failing: the truth, twice
		if code := reload(); code != http.StatusInternalServerError {
			t.Fatalf("reload %d with the target missing: %d, want 500", i, code)
		}
		waitFor(t, addr, "probe_exporter_config_last_reload_successful", "probe_exporter_config_last_reload_successful 0")
	}
	// The target appears (a copy of libc, which exports getpid).
	src, err := os.Open("/lib/x86_64-linux-gnu/libc.so.6")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	if code := reload(); code != 200 {
		t.Fatalf("reload with the target there: %d", code)
	}
	waitFor(t, addr, "probe_exporter_config_up", `probe_exporter_config_up{config="heal"} 1`)
	waitFor(t, addr, "probe_exporter_config_last_reload_successful", "probe_exporter_config_last_reload_successful 1")
}

// TestHugeLabelSize: a label size near 2^64 used to wrap the key size
// check, after which every scrape panicked. It is refused with file:line,
// and /metrics keeps answering.
func TestHugeLabelSize(t *testing.T) {
	dir := t.TempDir()
	yaml := strings.Replace(e2eYAML, "size: 16", "size: 18446744073709551604", 1)
	writeConfig(t, dir, "e2e", e2eProg, yaml)
	addr := exporter(t, "--config.dir="+dir, "--config.names=e2e")
	waitFor(t, addr, "probe_exporter_config_up", `probe_exporter_config_up{config="e2e"} 0`)
	_, page := get(t, "http://"+addr+"/")
	if want := `e2e.yaml:3: counter &#34;getppid_calls_total&#34;: label &#34;comm&#34;: size 18446744073709551604 is over 65536 bytes`; !strings.Contains(page, want) {
		t.Errorf("landing page lacks %q", want)
	}
	for i := 0; i < 3; i++ {
		if code, _ := get(t, "http://"+addr+"/metrics"); code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
	}
}
