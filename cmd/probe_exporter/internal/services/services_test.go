package services

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/probe-exporter/probe_exporter/cmd/probe_exporter/internal/component"
	"github.com/probe-exporter/probe_exporter/profile"
	"github.com/probe-exporter/probe_exporter/rules"
	"github.com/probe-exporter/probe_exporter/scripts"
	"github.com/probe-exporter/probe_exporter/web"
)

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRules: a push to /ingest counts in the rules; a reload keeps the
// counter of an unchanged rule; a broken file keeps the old rules.
func TestRules(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, file, "metrics-export-rules:\n  app_total:\n    expr: app.cpu\n")
	r, err := NewRules(RulesOptions{File: file})
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]web.Route{}
	for _, rt := range r.Routes() {
		routes[rt.Path] = rt
	}
	if routes["/exported-metrics"].Link == "" || routes["/ingest"].Handler == nil {
		t.Fatalf("routes: %+v", routes)
	}
	push := func() {
		req := httptest.NewRequest("POST", "/ingest?name=app.cpu&sampleRate=100", strings.NewReader("main;work 100\n"))
		rec := httptest.NewRecorder()
		routes["/ingest"].Handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("push: %d %s", rec.Code, rec.Body)
		}
	}
	push()
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	push()
	if got := testutil.ToFloat64(r.Live()); got != 2 {
		t.Errorf("app_total %v after a reload, want 2", got)
	}
	write(t, file, "metrics-export-rules:\n  app_total:\n    exrp: app.cpu\n")
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "rules.yaml") {
		t.Errorf("reload of a broken file: %v, want its name", err)
	}
	var st web.Status
	r.Status(&st)
	if len(st.Rules) != 1 || !strings.HasPrefix(st.Rules[0].Text, `app_total: expr "app.cpu"`) {
		t.Errorf("status after a failed reload: %v", st.Rules)
	}
}

// TestRulesFileErrors: a rules file that cannot be read is an error at
// start, with its name.
func TestRulesFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	write(t, bad, "metrics-export-rules:\n  x:\n    node: '('\n")
	for _, tc := range []struct{ name, file, want string }{
		{"missing", filepath.Join(dir, "none.yaml"), "none.yaml"},
		{"bad regexp", bad, "bad.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewRules(RulesOptions{File: tc.file}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewRules: %v, want an error naming %s", err, tc.want)
			}
		})
	}
	r, err := NewRules(RulesOptions{})
	if err != nil {
		t.Fatalf("no rules file: %v", err)
	}
	if err := r.Reload(); err != nil {
		t.Errorf("reload without a rules file: %v", err)
	}
	var _ rules.Sink = r.Live()
}

// TestProfilerTargetsFile: a targets file the profiler cannot use is an
// error naming it, before anything is loaded.
func TestProfilerTargetsFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, data, want string }{
		{"unknown field", "targets:\n  - app: a\n    offcpu: true\n", `targets.yaml:3: unknown field "offcpu" (want app, tags, off_cpu, comm, exe, cmdline, cgroup, pid)`},
		{"unknown top-level field", "target:\n  - app: a\n", `targets.yaml:1: unknown field "target" (want targets)`},
		{"wrong type", "targets:\n  - app: a\n    comm: x\n    off_cpu: yes please\n", "targets.yaml:4: cannot unmarshal !!str `yes please` into bool"},
		{"no app", "targets:\n  - comm: x\n", "targets.yaml:2: target 1 has no app"},
		{"app not a name", "targets:\n  - app: a\n    comm: x\n  - app: 'my app{}'\n    comm: y\n", `targets.yaml:4: app "my app{}": want letters, digits and _ . - /`},
		{"tag not a name", "targets:\n  - app: a\n    comm: x\n    tags: {'bad key': v}\n", `targets.yaml:2: app "a": tag "bad key": want letters`},
		{"reserved tag", "targets:\n  - app: a\n    comm: x\n    tags: {__name__: v}\n", `tag "__name__": want letters`},
		{"tag the profiler sets", "targets:\n  - app: a\n    comm: x\n    tags: {pid: '1'}\n", `targets.yaml:2: app "a": tag "pid" is set by the profiler`},
		{"no selector", "targets:\n  - app: a\n", `targets.yaml:2: app "a": selector is empty`},
		{"bad regexp", "targets:\n  - app: a\n    cmdline: '(x'\n", `targets.yaml:2: app "a": cmdline: error parsing regexp`},
		{"tabs", "targets:\n\t- app: a\n", "targets.yaml:2: found character that cannot start any token"},
		{"empty", "", "targets.yaml: empty"},
		{"no targets", "targets: []\n", "targets.yaml: no targets"},
		{"not YAML", "targets: [\n", "targets.yaml"},
		{"no watcher", "targets:\n  - app: a\n    comm: x\n", "process targets are unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, "targets.yaml")
			write(t, file, tc.data)
			_, err := NewProfiler(ProfilerOptions{TargetsFile: file, Rules: rules.NewLive(nil)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewProfiler: %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := NewProfiler(ProfilerOptions{TargetsFile: filepath.Join(dir, "none.yaml")}); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// TestScripts: the scripts are routed from every path no other route
// takes and listed on the landing page.
func TestScripts(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.sh"), []byte("#!/bin/sh\necho 'hello 1'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := NewScripts(scripts.Options{Dir: dir, NoCgroups: true})
	if err != nil {
		t.Fatal(err)
	}
	routes := s.Routes()
	if len(routes) != 1 || routes[0].Path != "/" {
		t.Fatalf("routes: %+v", routes)
	}
	rec := httptest.NewRecorder()
	routes[0].Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/nothing.sh", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("an unknown script: %d", rec.Code)
	}
	var st web.Status
	s.Status(&st)
	if len(st.Scripts) != 1 || st.Scripts[0].Name != "hello.sh" || st.Scripts[0].Kind != "exec" {
		t.Errorf("status: %+v", st.Scripts)
	}
	if kinds := s.Kinds(); len(kinds) != 1 || kinds[0] != scripts.KindExec {
		t.Errorf("kinds: %v", kinds)
	}
}

// What the group asks each part for: a method whose signature drifted
// would silently stop being asked.
var (
	_ component.Reloader   = (*Rules)(nil)
	_ component.Router     = (*Rules)(nil)
	_ component.Statuser   = (*Rules)(nil)
	_ prometheus.Collector = (*Rules)(nil)
	_ component.Reloader   = (*Scripts)(nil)
	_ component.Router     = (*Scripts)(nil)
	_ component.Statuser   = (*Scripts)(nil)
	_ prometheus.Collector = (*Scripts)(nil)
	_ component.Component  = (*profile.Profiler)(nil)
	_ io.Closer            = (*profile.Profiler)(nil)
	_ prometheus.Collector = (*profile.Profiler)(nil)
	_ component.Component  = (*Tracing)(nil)
	_ io.Closer            = (*Tracing)(nil)
)
