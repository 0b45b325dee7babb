package rules

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

// the rules of Pyroscope's export-rules documentation.
const seedRules = `metrics-export-rules:
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
`

func TestSeedRules(t *testing.T) {
	s, err := Parse("rules.yaml", []byte(seedRules))
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
		{"bad-name:\n  expr: ''\n", `rule "bad-name": not a valid Prometheus metric name`},
		{"x:\n  node: '('\n", `rule "x": node:`},
		{"x:\n  expr: '{a=b}'\n", `rule "x": expr:`},
		{"x:\n  exp: ''\n", `rule "x": line`},
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
