package rules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

func TestParseQuery(t *testing.T) {
	for _, tc := range []struct {
		expr    string
		app     string
		tags    map[string]string
		want    bool
		wantErr string
	}{
		{expr: "", app: "x.cpu", want: true},
		{expr: `app.cpu`, app: "app.cpu", want: true},
		{expr: `app.cpu`, app: "other.cpu", want: false},
		{expr: `{env="staging"}`, app: "a.cpu", tags: map[string]string{"env": "staging"}, want: true},
		{expr: `{env="staging"}`, app: "a.cpu", tags: map[string]string{"env": "prod"}, want: false},
		{expr: `app.cpu{env="staging",version=~"1\\..*"}`, app: "app.cpu", tags: map[string]string{"env": "staging", "version": "1.2"}, want: true},
		{expr: `app.cpu{env="staging",version=~"1\\..*"}`, app: "app.cpu", tags: map[string]string{"env": "staging", "version": "10"}, want: false},
		{expr: `{env!="prod"}`, app: "a", tags: map[string]string{}, want: true},
		{expr: `{env!="prod"}`, app: "a", tags: map[string]string{"env": "prod"}, want: false},
		{expr: `{env!~"p.*"}`, app: "a", tags: map[string]string{}, want: true},
		{expr: `{env!~"p.*"}`, app: "a", tags: map[string]string{"env": "prod"}, want: false},
		{expr: `{env=~"st.*"}`, app: "a", tags: map[string]string{}, want: false},
		{expr: `{env="a,b"}`, app: "a", tags: map[string]string{"env": "a,b"}, want: true},
		{expr: `{env=prod}`, wantErr: "double-quoted"},
		{expr: `{env="prod"`, wantErr: "unclosed"},
		{expr: `{env=~"("}`, wantErr: "missing closing"},
		{expr: `{="x"}`, wantErr: "invalid matcher"},
		{expr: `bad app{}`, wantErr: "invalid application name"},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			q, err := ParseQuery(tc.expr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := q.Matches(tc.app, tc.tags); got != tc.want {
				t.Fatalf("Matches(%q, %v) = %v, want %v", tc.app, tc.tags, got, tc.want)
			}
		})
	}
}

func TestSeedRules(t *testing.T) {
	s, err := Parse("rules.yaml", []byte(testkit.ExportRules))
	if err != nil {
		t.Fatal(err)
	}
	// 100 Hz samples: prod spends 126 samples in slowFunction, 50 in
	// fastFunction; staging 170 and 30.
	prod := []Sample{{"main;slowFunction", 100}, {"main;slowFunction;work", 26}, {"main;fastFunction", 50}}
	staging := []Sample{{"main;slowFunction", 170}, {"main;fastFunction", 30}}
	s.Observe("simple.golang.app.cpu", map[string]string{"env": "prod"}, "samples", 100, prod)
	s.Observe("simple.golang.app.cpu", map[string]string{"env": "staging"}, "samples", 100, staging)
	s.Observe("simple.golang.app.cpu", map[string]string{}, "samples", 100, []Sample{{"main;slowFunction", 10}})
	want := `
# HELP a_simple_app_slow_env Profile export rule a_simple_app_slow_env: expr (all), node slowFunction.
# TYPE a_simple_app_slow_env counter
a_simple_app_slow_env{env=""} 0.1
a_simple_app_slow_env{env="prod"} 1.26
a_simple_app_slow_env{env="staging"} 1.7
# HELP a_simple_app_slow_env_prod Profile export rule a_simple_app_slow_env_prod: expr {env="prod"}, node slowFunction.
# TYPE a_simple_app_slow_env_prod counter
a_simple_app_slow_env_prod 1.26
# HELP a_simple_app_total Profile export rule a_simple_app_total: expr (all), node total.
# TYPE a_simple_app_total counter
a_simple_app_total 3.86
`
	if err := testutil.CollectAndCompare(s, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	// Other units count as they are.
	s2, _ := Parse("r.yaml", []byte("bytes_total:\n  node: alloc\n"))
	s2.Observe("a.alloc_space", nil, "bytes", 100, []Sample{{"main;alloc", 4096}})
	if v := testutil.ToFloat64(s2); v != 4096 {
		t.Fatalf("bytes: %v", v)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

func TestNodeUnanchored(t *testing.T) {
	s, err := Parse("r.yaml", []byte("x:\n  node: 'a;b'\n"))
	if err != nil {
		t.Fatal(err)
	}
	s.Observe("app.cpu", nil, "samples", 100, []Sample{{"a;b;c", 100}, {"z;a;b", 100}, {"a;c", 100}})
	if v := testutil.ToFloat64(s); v != 2 {
		t.Fatalf("value %v, want 2", v)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"bad-name:\n  expr: ''\n", `rule "bad-name": "bad-name" is not a valid Prometheus metric name`},
		{"x:\n  node: '('\n", `rule "x": node:`},
		{"x:\n  expr: a.cpu\n\n  group_by: {a: b}\n", `r.yaml:1: rule "x": line 4: cannot unmarshal !!map into []string`},
		{"x:\n  expr: '{a=b}'\n", `rule "x": expr:`},
		{"x:\n  exp: ''\n", `r.yaml:2: rule "x": unknown field "exp" (want expr, node, group_by, labels)`},
		{"x:\n  group_by: ['a-b']\n", `group_by "a-b"`},
		{"- a\n", "want a map of rules"},
	} {
		if _, err := Parse("r.yaml", []byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	s, err := Parse("r.yaml", []byte("metrics-export-rules: {}\n"))
	if err != nil || len(s.Rules()) != 0 {
		t.Fatalf("empty rules: %v %v", s, err)
	}
}

func TestInheritOnReload(t *testing.T) {
	v1 := `metrics-export-rules:
  kept:
    expr: 'app.cpu'
  changed:
    expr: 'app.cpu'
  removed:
    expr: 'app.cpu'
recording_rules:
  - metric_name: rec_kept
    matchers: ['{__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds"}']
`
	v2 := `metrics-export-rules:
  kept:
    expr: 'app.cpu'
  changed:
    expr: 'app.cpu'
    node: 'a'
recording_rules:
  - metric_name: rec_kept
    matchers: ['{__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds"}']
`
	old, err := Parse("r.yaml", []byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	old.Observe("app.cpu", nil, "samples", 100, []Sample{{"a;b", 200}})
	next, err := Parse("r.yaml", []byte(v2))
	if err != nil {
		t.Fatal(err)
	}
	next.Inherit(old)
	next.Observe("app.cpu", nil, "samples", 100, []Sample{{"a;b", 100}})
	want := `
# HELP changed Profile export rule changed: expr app.cpu, node a.
# TYPE changed counter
changed 1
# HELP kept Profile export rule kept: expr app.cpu, node total.
# TYPE kept counter
kept 3
# HELP rec_kept Pyroscope recording rule rec_kept: matchers {__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds"}.
# TYPE rec_kept counter
rec_kept 3e+09
`
	if err := testutil.CollectAndCompare(next, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestRecordingRuleErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"recording_rules:\n  - metric_name: x\n    matchers: ['{foo=\"bar\"}']\n", "exactly one __profile_type__"},
		{"recording_rules:\n  - metric_name: x\n    matchers: ['{__profile_type__=~\"a\"}']\n", "must be matched with ="},
		{"recording_rules:\n  - metric_name: ''\n    matchers: ['{__profile_type__=\"a\"}']\n", "r.yaml:2: recording rule \"\": \"\" is not a valid"},
		{"recording_rules:\n  - metric_name: x\n    matchers: ['{foo=\"bar}']\n", "matcher"},
		{"recording_rules:\n  - metric_name: x\n    matchers: ['{__profile_type__=\"a\"}']\n    external_labels: [{name: 'a-b', value: v}]\n", "external_labels name"},
		{"recording_rules:\n  - metric_name: x\n    matchers: ['{__profile_type__=\"a\"}']\n    bogus: 1\n", `r.yaml:4: recording rule: unknown field "bogus" (want id, generation, profile_type, metric_name, matchers, group_by, external_labels, stacktrace_filter)`},
		{"recording_rules:\n  - metric_name: x\n    matchers: ['{__profile_type__=\"a\"}']\n\n    stacktrace_filter: {function_name: {function_nam: f}}\n", `r.yaml:5: recording rule: unknown field "function_nam" (want function_name, metric_type)`},
		{"metrics-export-rules:\n  # comment\n\n  r:\n    expr: a.cpu\n\n    nod: x\n", `r.yaml:7: rule "r": unknown field "nod" (want expr, node, group_by, labels)`},
		{"recording_rules:\n  - metric_name: x\n    matchers: ['{__profile_type__=\"a\"}']\n  - metric_name: x\n    matchers: ['{__profile_type__=\"a\"}']\n", "also made by the rule at line 2"},
		{"metrics-export-rules:\n  x_average: {}\nrecording_rules:\n  - metric_name: x\n    matchers: ['{__profile_type__=\"a\"}']\n", "metric x_average is also made"},
		{"recording_rules: {}\n", "want a list"},
		{"metrics-export-rules: {}\nother: 1\n", `unknown key "other"`},
	} {
		if _, err := Parse("r.yaml", []byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestProfileLabels(t *testing.T) {
	for _, tc := range []struct {
		app, units, svc, pt string
	}{
		{"myapp.cpu", "samples", "myapp", "process_cpu:cpu:nanoseconds:cpu:nanoseconds"},
		{"a.b.inuse_space", "bytes", "a.b", "memory:inuse_space:bytes:space:bytes"},
		{"myapp", "samples", "myapp", "process_cpu:cpu:nanoseconds:cpu:nanoseconds"},
		{"myapp.widgets", "objects", "myapp", "widgets:widgets:objects:widgets:objects"},
		{"myapp.off_cpu", "nanoseconds", "myapp", "off_cpu:off_cpu:nanoseconds:off_cpu:nanoseconds"},
	} {
		l := ProfileLabels(tc.app, tc.units, map[string]string{"env": "x"})
		if l[LabelServiceName] != tc.svc || l[LabelProfileType] != tc.pt || l["env"] != "x" {
			t.Errorf("%s: %v", tc.app, l)
		}
	}
}

// TestConcurrentObserveCollect: observes, collects and an Inherit at once
// (run with -race); the totals come out exact.
func TestConcurrentObserveCollect(t *testing.T) {
	const rulesYAML = "metrics-export-rules:\n  total: {}\n  node:\n    node: 'a;b'\n    group_by: [env]\n"
	s, err := Parse("r.yaml", []byte(rulesYAML))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				s.Observe("app.cpu", map[string]string{"env": fmt.Sprint(i % 7)}, "samples", 100, []Sample{{"a;b;c", 1}, {fmt.Sprintf("x;%d", i), 1}})
			}
		}(g)
	}
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				testutil.CollectAndCount(s)
				testutil.CollectAndCount(s.Stats())
			}
		}()
	}
	wg.Wait()
	next, _ := Parse("r.yaml", []byte(rulesYAML))
	next.Inherit(s)
	if v := testutil.ToFloat64(&only{next, "total"}); v != 8*500*2/100.0 {
		t.Fatalf("total %v", v)
	}
}

// only collects one rule's metric.
type only struct {
	s    *Set
	name string
}

func (o *only) Describe(chan<- *prometheus.Desc) {}
func (o *only) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 1000)
	o.s.Collect(all)
	close(all)
	for m := range all {
		if strings.Contains(m.Desc().String(), `fqName: "`+o.name+`"`) {
			ch <- m
		}
	}
}

// TestRecordingRuleFunctionName: stacktrace_filter.function_name is a
// frame's function: the frame itself, or, for a frame named with its file
// and line as the profiler names Python frames (and py-spy folds them),
// the name before " (file:line)". Nothing else of a frame matches.
func TestRecordingRuleFunctionName(t *testing.T) {
	for _, c := range []struct {
		stack, fn string
		want      bool
	}{
		{"main;slowFunction", "slowFunction", true},
		{"main;slowFunction;leaf", "slowFunction", true},
		{"main;slowFunctionX", "slowFunction", false},
		{"main;xslowFunction", "slowFunction", false},
		{"<module> (app.py:1);round_trip (/srv/app/work.py:26)", "round_trip", true},
		{"Worker.run (/srv/w.py:12);leaf", "Worker.run", true},
		{"Worker.run (/srv/w.py:12)", "run", false},
		{"round_trip (/srv/app/work.py:26)", "round_trip (/srv/app/work.py:26)", true},
		{"round_trip (/srv/app/work.py:26)", "round_trip (/srv/app/work.py", false},
		{"round_trip (work.py)", "round_trip", false},
		{"round_trip (work.py:)", "round_trip", false},
		{"round_trip (work.py:2x)", "round_trip", false},
		{"round_trip (:2)", "round_trip", false},
		{"round_trip  (work.py:2)", "round_trip", false},
		{"round_trip (work.py:2) ", "round_trip", false},
	} {
		if got := hasFrame(c.stack, c.fn); got != c.want {
			t.Errorf("hasFrame(%q, %q) = %v, want %v", c.stack, c.fn, got, c.want)
		}
	}
	s, err := Parse("r.yaml", []byte(`recording_rules:
  - metric_name: py_round_trip_nanoseconds
    matchers: ['{__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds", service_name="py"}']
    stacktrace_filter: {function_name: {function_name: round_trip}}
`))
	if err != nil {
		t.Fatal(err)
	}
	s.Observe("py.cpu", nil, "samples", 100, []Sample{
		{"<module> (app.py:1);round_trip (app.py:26);slow_function (app.py:16)", 70},
		{"<module> (app.py:1);other (app.py:40)", 30},
	})
	want := `
# HELP py_round_trip_nanoseconds Pyroscope recording rule py_round_trip_nanoseconds: matchers {__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds", service_name="py"}, function round_trip.
# TYPE py_round_trip_nanoseconds counter
py_round_trip_nanoseconds 7e+08
`
	if err := testutil.CollectAndCompare(s, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestLoadFileErrors: a rules file that cannot be read or parsed is named
// once, with no package prefix for the caller to repeat (the exporter
// said "rules: rules: open rules.yaml: ...").
func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("my_rule:\n  nod: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "rules.yaml")
	for _, tc := range []struct {
		path, prefix string
	}{
		{missing, "open " + missing + ": "},
		{bad, bad + ":"},
	} {
		_, err := LoadFile(tc.path)
		if err == nil {
			t.Fatalf("%s: loaded", tc.path)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, tc.prefix) || strings.Count(msg, filepath.Base(tc.path)) != 1 {
			t.Errorf("%s: %q, want it to start with %q and name the file once", tc.path, msg, tc.prefix)
		}
	}
	if _, err := LoadFile(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}
