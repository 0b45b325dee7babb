package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// chromium renders url headless and returns the DOM it built and the
// console messages it logged (every message: the page has no script, so
// any one is a fault such as a refused resource).
func chromium(t *testing.T, url string, extra ...string) (dom string, console []string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium (Debian's package, installed by make deps) is not installed")
	}
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
		"--user-data-dir=" + t.TempDir(), "--window-size=1400,1800"}, extra...)
	cmd := exec.Command(bin, append(args, "--dump-dom", url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, ":CONSOLE") {
			console = append(console, l)
		}
	}
	return string(out), console
}

// TestLandingPageInBrowser: a real browser renders the landing page of a
// running exporter (embedded defaults) without a console message; it
// shows each config's series and a drawing of each histogram.
func TestLandingPageInBrowser(t *testing.T) {
	// The console is read: a page that logs is caught.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `<html><body><script>console.error("caught")</script></body></html>`)
	}))
	defer bad.Close()
	if _, console := chromium(t, bad.URL); len(console) == 0 {
		t.Fatal("chromium's console messages are not seen: the test below could not fail")
	}

	addr := exporter(t)
	// Histograms are drawn as the last scrape left them.
	testkit.Eventually(t, "run queue latency is observed", func() bool {
		_, body := get(t, "http://"+addr+"/metrics")
		return strings.Contains(body, "probe_exporter_runqueue_latency_seconds_count")
	})
	shot := filepath.Join(t.TempDir(), "landing.png")
	if _, console := chromium(t, "http://"+addr+"/", "--screenshot="+shot); len(console) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(console, "\n"))
	}
	dom, console := chromium(t, "http://"+addr+"/")
	if len(console) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(console, "\n"))
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Errorf("no screenshot: %v", err)
	}
	for _, want := range []string{"<th>series</th>", `aria-label="buckets of probe_exporter_runqueue_latency_seconds"`, "<rect ", "log2 axis"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	// syscalls serves one series per syscall seen: more than zero.
	if !regexp.MustCompile(`<td>syscalls</td>[\s\S]*?<td class="n">[1-9]\d*</td>`).MatchString(dom) {
		t.Errorf("no series count for syscalls in\n%s", dom)
	}
}

// grafanaQueries are the panel queries of a Grafana dashboard.
func grafanaQueries(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct{ Panels []json.RawMessage }
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	out := map[string]string{}
	var walk func([]json.RawMessage)
	walk = func(panels []json.RawMessage) {
		for _, raw := range panels {
			var p struct {
				Title   string
				Targets []struct{ Expr, RefID string }
				Panels  []json.RawMessage
			}
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			for _, q := range p.Targets {
				if q.Expr != "" {
					out[p.Title+" "+q.RefID] = q.Expr
				}
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	return out
}

// ruleGroups reads the rule groups of a Prometheus rules file or of a
// PrometheusRule's spec.
type ruleGroups struct {
	Groups []struct {
		Name  string
		Rules []struct{ Record, Alert, Expr string }
	}
}

func readRules(t *testing.T, file string) (ruleGroups, []byte) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ruleGroups `yaml:",inline"`
		Spec       *yaml.Node
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if doc.Spec != nil { // a PrometheusRule: its spec is a rules file
		var g ruleGroups
		if err := doc.Spec.Decode(&g); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out, err := yaml.Marshal(doc.Spec)
		if err != nil {
			t.Fatal(err)
		}
		return g, out
	}
	return doc.ruleGroups, data
}

// metricNames are the metric names an expression selects.
var metricNames = regexp.MustCompile(`\b(probe_exporter_[a-z0-9_]+|node:[a-z0-9_]+:[a-z0-9_]+)\b`)

// TestDashboardsAgainstPrometheus: Debian's Prometheus scrapes the built
// binary with its embedded defaults and evaluates the shipped rules; every
// panel query of deploy/grafana returns data, every rule of
// deploy/prometheus and deploy/kubernetes passes promtool, evaluates
// without error, and reads only series that exist.
func TestDashboardsAgainstPrometheus(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus (Debian's package) is not installed")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool (Debian's prometheus package) is not installed")
	}
	dir := t.TempDir()
	var ruleFiles []string
	type rule struct{ file, name, expr string }
	var rules []rule
	for _, f := range []string{"../../deploy/prometheus/probe_exporter.rules.yml", "../../deploy/kubernetes/prometheusrule.yaml"} {
		groups, data := readRules(t, f)
		file := filepath.Join(dir, filepath.Base(f)+".rules.yml")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules %s: %v\n%s", f, err, out)
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				rules = append(rules, rule{f, r.Record + r.Alert, r.Expr})
			}
		}
		if len(ruleFiles) == 0 { // both files hold the same rules: load one
			ruleFiles = append(ruleFiles, file)
		}
	}
	if len(rules) == 0 {
		t.Fatal("no rules read")
	}

	exp := exporter(t)
	promAddr := freePort(t)
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files: [%q]\nscrape_configs:\n  - job_name: probe-exporter\n    static_configs:\n      - targets: [%q]\n", ruleFiles[0], exp)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	log := &testkit.LogBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	query := func(q string) (status string, n int, errText string) {
		c := http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return "", 0, err.Error()
		}
		defer resp.Body.Close()
		var r struct {
			Status, Error string
			Data          struct{ Result []json.RawMessage }
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return "", 0, err.Error()
		}
		return r.Status, len(r.Data.Result), r.Error
	}
	// Block IO for the bio panels: files written and synced.
	io := func() {
		f, err := os.CreateTemp("/var/tmp", "probe-exporter-dash-")
		if err != nil {
			return
		}
		defer os.Remove(f.Name())
		defer f.Close()
		f.Write(make([]byte, 256<<10))
		f.Sync()
	}
	// Grafana's variables as a dashboard on this Prometheus sets them:
	// $instance from the instance label, $__rate_interval at least four
	// scrape intervals.
	vars := strings.NewReplacer("$instance", exp, "${instance}", exp, "$__rate_interval", "10s", "$__interval", "1s")
	files, _ := filepath.Glob("../../deploy/grafana/*.json")
	if len(files) == 0 {
		t.Fatal("no dashboards in deploy/grafana")
	}
	for _, file := range files {
		for panel, expr := range grafanaQueries(t, file) {
			q := vars.Replace(expr)
			testkit.Eventually(t, fmt.Sprintf("%s panel %q returns data (%s)", filepath.Base(file), panel, q), func() bool {
				io()
				status, n, _ := query(q)
				return status == "success" && n > 0
			})
		}
	}
	for _, r := range rules {
		status, _, errText := query(r.expr)
		if status != "success" {
			t.Errorf("%s: rule %s does not evaluate: %s", r.file, r.name, errText)
		}
		for _, name := range metricNames.FindAllString(r.expr, -1) {
			testkit.Eventually(t, fmt.Sprintf("%s: rule %s reads %s, which has series", r.file, r.name, name), func() bool {
				io()
				status, n, _ := query(name)
				return status == "success" && n > 0
			})
		}
	}
	if t.Failed() {
		t.Logf("prometheus log:\n%s", tail(log.String(), 30))
	}
}
