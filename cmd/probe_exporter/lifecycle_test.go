package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// bpfObjects counts this process's BPF links, programs, maps and perf
// event fds (other test packages run at the same time, so kernel-wide
// counts would not do).
func bpfObjects(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if strings.HasPrefix(target, "anon_inode:bpf") || strings.Contains(target, "perf_event") {
			n++
		}
	}
	return n
}

// TestLifecycle: after many reloads that swap a config and a clean
// shutdown, the process holds no more file descriptors and the kernel no
// more BPF links than before it started.
func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "e2e", e2eProg, e2eYAML)
	fdsBefore, bpfBefore := openFDs(t), bpfObjects(t)

	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- runContext(ctx, []string{"--web.listen-address=" + addr, "--log.level=error", "--capabilities.keep=all", "--config.dir=" + dir, "--config.names=e2e"})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/-/ready"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("exporter did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if bpfObjects(t) <= bpfBefore {
		t.Fatal("no BPF objects while running")
	}
	yaml := filepath.Join(dir, "e2e.yaml")
	fdsRunning := -1
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
			fdsRunning = openFDs(t)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	if n := openFDs(t); n > fdsRunning+2 {
		t.Errorf("fds grew from %d to %d over 190 reloads", fdsRunning, n)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if n := bpfObjects(t); n != bpfBefore {
		t.Errorf("BPF links, programs, maps and perf events: %d fds before start, %d after shutdown", bpfBefore, n)
	}
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	if n := openFDs(t); n > fdsBefore+1 { // the Go runtime may keep its poller fd
		t.Errorf("fds: %d before start, %d after shutdown", fdsBefore, n)
	}
}
