package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fds counts the open file descriptors of process pid, and of those its
// BPF links, programs, maps and perf event fds.
func fds(t *testing.T, pid int) (all, bpf int) {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		if strings.HasPrefix(target, "anon_inode:bpf") || strings.Contains(target, "perf_event") {
			bpf++
		}
	}
	return len(entries), bpf
}

// TestLifecycle: many reloads that swap a config leave the exporter with
// as many file descriptors and BPF objects as it had after the first ones,
// and SIGTERM ends it cleanly.
func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "e2e", e2eProg, e2eYAML)
	addr := freePort(t)
	p := startExporter(t, func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, "--web.listen-address="+addr, "--config.dir="+dir, "--config.names=e2e")
	if _, bpf := fds(t, p.Pid()); bpf == 0 {
		t.Fatal("no BPF objects while running")
	}
	yaml := filepath.Join(dir, "e2e.yaml")
	fdsRunning, bpfRunning := -1, -1
	for i := 0; i < 200; i++ {
		// Every other reload changes the config, so it is swapped.
		if i%2 == 0 {
			data, _ := os.ReadFile(yaml)
			os.WriteFile(yaml, append(data, []byte("# "+time.Now().String()+"\n")...), 0o644)
		}
		resp, err := http.Post("http://"+addr+"/-/reload", "", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("reload %d: %v %v", i, err, resp)
		}
		resp.Body.Close()
		if i == 10 {
			fdsRunning, bpfRunning = fds(t, p.Pid())
		}
	}
	http.DefaultClient.CloseIdleConnections()
	all, bpf := fds(t, p.Pid())
	if all > fdsRunning+2 {
		t.Errorf("fds grew from %d to %d over 190 reloads", fdsRunning, all)
	}
	if bpf != bpfRunning {
		t.Errorf("BPF links, programs, maps and perf events: %d fds after 10 reloads, %d after 200", bpfRunning, bpf)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
