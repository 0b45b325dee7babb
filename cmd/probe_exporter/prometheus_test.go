package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDeployPromtool checks the shipped Prometheus rules and scrape config
// with promtool.
func TestDeployPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool (Debian's prometheus package) is not installed")
	}
	if out, err := exec.Command(promtool, "check", "rules", "../../deploy/prometheus/probe_exporter.rules.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := exec.Command(promtool, "check", "config", "../../deploy/prometheus/prometheus-static.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check config (static): %v\n%s", err, out)
	}
	out, err := exec.Command(promtool, "check", "config", "../../deploy/prometheus/prometheus.yml").CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "kubernetes_sd_configs not found") {
			t.Skipf("this promtool is built without Kubernetes service discovery (Debian's is): %s", out)
		}
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// TestRealPrometheus: Debian's Prometheus server scrapes a running
// exporter; its HTTP API returns the exporter's series, and a histogram
// works with histogram_quantile.
func TestRealPrometheus(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus (Debian's package) is not installed")
	}
	exp := exporter(t)
	dir := t.TempDir()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	promAddr := l.Addr().String()
	l.Close()
	cfg := "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: probe-exporter\n    static_configs:\n      - targets: ['" + exp + "']\n"
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644)
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	query := func(q string) []any {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Data   struct{ Result []any }
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || r.Status != "success" {
			return nil
		}
		return r.Data.Result
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, q := range []string{
		`up{job="probe-exporter"} == 1`,
		`probe_exporter_program_attached{config="syscalls"} == 1`,
		`probe_exporter_syscalls_total{syscall="read"} > 0`,
		`histogram_quantile(0.99, sum by (le) (probe_exporter_runqueue_latency_seconds_bucket)) > 0`,
	} {
		for len(query(q)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("Prometheus has no result for %s", q)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}
