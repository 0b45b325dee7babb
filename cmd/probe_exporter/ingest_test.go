package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIngestAndExportedMetrics(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte(`metrics-export-rules:
  a_simple_app_total:
    expr: ""
  a_simple_app_slow_env_prod:
    expr: '{env="prod"}'
    node: slowFunction
  a_simple_app_slow_env:
    expr: ""
    node: slowFunction
    labels:
      - "env"
`), 0o644)
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
