package rules

import (
	"bytes"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// FuzzParseQuery: FlameQL parsing never panics; what parses can match.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "app.cpu", `{env="prod"}`, `app.cpu{env="staging",version=~"1\\..*"}`, `{a!="b",c!~"d"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuery(s)
		if err != nil {
			return
		}
		q.Matches("app.cpu", map[string]string{"env": "prod"})
	})
}

// FuzzObserve: whatever the tags and values, gathering never fails or
// panics, the text parses, and no counter ever decreases.
func FuzzObserve(f *testing.F) {
	f.Add("prod", "a;b", uint64(5), uint64(18446744073709551615))
	f.Add("a\xffb", "a;b;c", uint64(1), uint64(2))
	f.Add("", "", uint64(0), uint64(0))
	s, err := Parse("r.yaml", []byte(`metrics-export-rules:
  total: {}
  by_env:
    node: 'a;b'
    group_by: [env]
recording_rules:
  - metric_name: rec
    matchers: ['{__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds"}']
    group_by: [env]
    stacktrace_filter: {function_name: {function_name: b}}
`))
	if err != nil {
		f.Fatal(err)
	}
	s.SetMaxSeries(100)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s, s.Stats())
	gather := func(t *testing.T) map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		var buf bytes.Buffer
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
				t.Fatal(err)
			}
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		if _, err := parser.TextToMetricFamilies(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatalf("text does not parse: %v\n%s", err, buf.String())
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.Metric {
				if m.Counter != nil {
					key := mf.GetName()
					for _, l := range m.Label {
						key += "," + l.GetName() + "=" + l.GetValue()
					}
					out[key] = m.Counter.GetValue()
				}
			}
		}
		return out
	}
	f.Fuzz(func(t *testing.T, env, stack string, v1, v2 uint64) {
		before := gather(t)
		s.Observe("app.cpu", map[string]string{"env": env}, "samples", 100, []Sample{{stack, v1}, {stack + ";b", v2}})
		after := gather(t)
		for k, v := range before {
			if w, ok := after[k]; !ok || w < v {
				t.Fatalf("%s went from %v to %v", k, v, w)
			}
		}
	})
}
