package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMWithWedgedScript runs the binary with a script that ignores
// SIGTERM and has started a child that left its session and ignores
// SIGTERM too: SIGTERM ends the exporter within the scripts' stop grace
// and a kill wait, and nothing the script started survives.
func TestSIGTERMWithWedgedScript(t *testing.T) {
	bin := binaryPath
	dir := t.TempDir()
	pidfile := filepath.Join(t.TempDir(), "child")
	os.WriteFile(filepath.Join(dir, "wedged.sh"), []byte("#!/bin/sh\ntrap '' TERM\nsetsid sh -c 'trap \"\" TERM; while :; do sleep 1; done' &\necho $! > "+pidfile+"\nwhile :; do echo 'wedged 1'; echo '# EOF'; sleep 0.1; done\n"), 0o755)
	addr := freePort(t)
	cmd := exec.Command(bin, "--web.listen-address="+addr, "-s", dir, "-k", "60", "--log.level=warn")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/wedged.sh")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), "wedged 1") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("wedged.sh not served: %v\n%s", err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(pidfile)
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if child <= 0 {
		t.Fatalf("no child pid: %q", b)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("exporter exited with %v\n%s", waitErr, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("exporter still running a minute after SIGTERM\n%s", stderr.String())
	}
	took := time.Since(start)
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat"); err == nil && !bytes.Contains(stat, []byte(") Z ")) {
		t.Errorf("the script's child %d survives the exporter: %s", child, stat)
	}
	marker := []byte("PROBE_EXPORTER_RUN=" + strconv.Itoa(cmd.Process.Pid) + ".")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if env, err := os.ReadFile("/proc/" + e.Name() + "/environ"); err == nil && bytes.Contains(env, marker) {
			t.Errorf("process %s of the exporter's scripts survives", e.Name())
		}
	}
	t.Logf("exited %v after SIGTERM (stop grace 2s)", took.Round(time.Millisecond))
}
