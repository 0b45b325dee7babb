package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

func TestIngestAndExportedMetrics(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte(testkit.ExportRules), 0o644)
	addr := exporter(t, "--rules.file="+rulesFile)
	for env, body := range map[string]string{
		"prod":    "main;slowFunction 126\nmain;fastFunction 42\n",
		"staging": "main;slowFunction 170\nmain;fastFunction 40\n",
	} {
		resp, err := http.Post("http://"+addr+"/ingest?name=simple.golang.app.cpu{env="+env+"}&sampleRate=100", "text/plain", strings.NewReader(body))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("ingest %s: %v %v", env, err, resp)
		}
		resp.Body.Close()
	}
	_, exported := get(t, "http://"+addr+"/exported-metrics")
	for _, want := range []string{
		`a_simple_app_slow_env_prod 1.26`,
		`a_simple_app_slow_env{env="staging"} 1.7`,
		`a_simple_app_slow_env{env="prod"} 1.26`,
		`a_simple_app_total 3.78`,
	} {
		if !strings.Contains(exported, want+"\n") {
			t.Errorf("/exported-metrics lacks %q:\n%s", want, exported)
		}
	}
	if strings.Contains(exported, "probe_exporter_") {
		t.Error("/exported-metrics serves more than the rules")
	}
	if lines := series(t, addr, "a_simple_app_total "); len(lines) != 1 {
		t.Errorf("/metrics lacks the rules: %v", lines)
	}
}

// TestRulesSurviveReload: an unchanged rule keeps its counters over a
// reload, a changed one starts from zero, a removed one goes; the series
// bound and the bound's metric are served on /metrics.
func TestRulesSurviveReload(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	write := func(s string) {
		if err := os.WriteFile(rulesFile, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("metrics-export-rules:\n  kept_total:\n    expr: 'app.cpu'\n  changed_total:\n    expr: 'app.cpu'\n  removed_total:\n    expr: 'app.cpu'\n  by_env:\n    expr: 'app.cpu'\n    group_by: [env]\n")
	addr := exporter(t, "--rules.file="+rulesFile, "--rules.max-series=2")
	push := func(env string) {
		resp, err := http.Post("http://"+addr+"/ingest?name=app.cpu{env="+env+"}&sampleRate=100", "text/plain", strings.NewReader("a;b 100\n"))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("ingest: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	for _, env := range []string{"a", "b", "c"} {
		push(env)
	}
	waitFor(t, addr, "kept_total", "kept_total 3")
	waitFor(t, addr, "probe_exporter_rule_series_dropped_total", `probe_exporter_rule_series_dropped_total{rule="by_env"} 1`)
	write("metrics-export-rules:\n  kept_total:\n    expr: 'app.cpu'\n  changed_total:\n    expr: 'app.cpu'\n    node: 'a'\n  by_env:\n    expr: 'app.cpu'\n    group_by: [env]\n")
	resp, err := http.Post("http://"+addr+"/-/reload", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reload: %v %v", err, resp)
	}
	resp.Body.Close()
	push("a")
	waitFor(t, addr, "kept_total", "kept_total 4")
	waitFor(t, addr, "changed_total", "changed_total 1")
	waitFor(t, addr, `by_env{env="a"}`, `by_env{env="a"} 2`)
	if lines := series(t, addr, "removed_total"); len(lines) != 0 {
		t.Errorf("removed rule still served: %v", lines)
	}
	waitFor(t, addr, "probe_exporter_config_last_reload_successful", "probe_exporter_config_last_reload_successful 1")
}
