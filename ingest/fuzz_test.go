package ingest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/google/pprof/profile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
	"github.com/probe-exporter/probe_exporter/rules"
)

// fuzzTarget pushes bodies to a handler over a rule set and reads back
// what /metrics would serve.
type fuzzTarget struct {
	h       *Handler
	metrics http.Handler
}

func newFuzzTarget(t testing.TB) *fuzzTarget {
	s, err := rules.Parse("r.yaml", []byte(`metrics-export-rules:
  total:
    expr: ""
  by_env:
    node: 'a;b'
    group_by: [env]
recording_rules:
  - metric_name: rec_cpu
    matchers: ['{__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds"}']
    group_by: [env]
    stacktrace_filter: {function_name: {function_name: b}}
`))
	if err != nil {
		t.Fatal(err)
	}
	s.SetMaxSeries(50)
	reg := prometheus.NewPedanticRegistry()
	h := NewHandler(s, Options{MaxBodyBytes: 1 << 20, MaxDecompressedBytes: 1 << 20, MaxInflightBytes: 8 << 20})
	reg.MustRegister(s, s.Stats(), h)
	return &fuzzTarget{h: h, metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError})}
}

func (f *fuzzTarget) push(query string, body []byte) int {
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ingest?"+query, bytes.NewReader(body)))
	return rec.Code
}

// scrape parses what is served; it fails the test if the text does not
// parse, and returns every sample by its series.
func (f *fuzzTarget) scrape(t *testing.T) map[string]float64 {
	rec := httptest.NewRecorder()
	f.metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatalf("served text does not parse: %v\n%s", err, rec.Body)
	}
	out := map[string]float64{}
	for name, mf := range families {
		for _, m := range mf.Metric {
			key := name
			for _, l := range m.Label {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out["gauge:"+key] = m.Gauge.GetValue()
			}
		}
	}
	return out
}

// checkMonotonic fails if a counter went down or vanished.
func checkMonotonic(t *testing.T, before, after map[string]float64) {
	for k, v := range before {
		if len(k) > 6 && k[:6] == "gauge:" {
			continue
		}
		if w, ok := after[k]; !ok || w < v {
			t.Fatalf("counter %s went from %v to %v (present %v)", k, v, w, ok)
		}
	}
}

// FuzzFolded: whatever the body and name, no 5xx, counters never
// decrease, and the served text parses.
func FuzzFolded(f *testing.F) {
	for _, s := range []string{"a;b;c 10\n", "a 1\nb 2", "bad", "a;b notanumber", "", "a;b 18446744073709551615\na;b 1", "a;b -5", "a;b NaN"} {
		f.Add("app.cpu{env=prod}", "folded", []byte(s))
	}
	f.Add("app.cpu{env=a\xffb}", "lines", []byte("a;b\n"))
	f.Add("app.cpu{env=x}", "lines", []byte("a;b\na;b\n"))
	// The bombs, at sizes within the target's 1 MiB bound.
	f.Add("app.cpu", "folded", testkit.DistinctFolded(20_000))
	f.Add("app.cpu", "folded", testkit.DeepFolded(5000))
	f.Add("app.cpu", "lines", testkit.GzipBytes(testkit.DeepFolded(5000)))
	tgt := newFuzzTarget(f)
	f.Fuzz(func(t *testing.T, name, format string, data []byte) {
		before := tgt.scrape(t)
		q := "name=" + url.QueryEscape(name) + "&format=" + url.QueryEscape(format) + "&sampleRate=100"
		if code := tgt.push(q, data); code >= 500 && code != http.StatusServiceUnavailable {
			t.Fatalf("push answered %d", code)
		}
		checkMonotonic(t, before, tgt.scrape(t))
	})
}

// FuzzPprof: pprof bodies (raw or gzipped) never make a 5xx, and counters
// never decrease.
func FuzzPprof(f *testing.F) {
	f.Add([]byte("not a profile"))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Add(cpuProfile(f))
	// The bombs that fit in a small seed: 10M empty samples in 19.5 KB of
	// gzip, 20M empty strings, a string of 60 MiB.
	f.Add(testkit.GzipBytes(testkit.EmptySamplesPprof(10_000_000)))
	f.Add(testkit.GzipBytes(testkit.TinyItemsPprof(6, 20_000_000)))
	f.Add(testkit.GzipBytes(testkit.HugeStringsPprof(1, 60<<20)))
	f.Add(testkit.DeepStacksPprof(20, 5000))
	f.Add(testkit.HugeStringsPprof(2, 600<<10))
	tgt := newFuzzTarget(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		before := tgt.scrape(t)
		if code := tgt.push("name=app{env=p}&format=pprof", data); code >= 500 && code != http.StatusServiceUnavailable {
			t.Fatalf("push answered %d", code)
		}
		checkMonotonic(t, before, tgt.scrape(t))
	})
}

// FuzzPprofCounts: countPprof, which bounds a profile before it is
// decoded, counts exactly what github.com/google/pprof's decoder builds,
// and never panics, whatever the bytes.
func FuzzPprofCounts(f *testing.F) {
	f.Add(gunzipped(f, cpuProfile(f)))
	f.Add(testkit.EmptySamplesPprof(100))
	f.Add(testkit.TinyItemsPprof(4, 100))
	f.Add(testkit.TinyItemsPprof(5, 100))
	f.Add(testkit.TinyItemsPprof(6, 100))
	f.Add(testkit.HugeStringsPprof(3, 1000))
	f.Add(testkit.HugeStringsPprof(1, maxStringBytes+1))
	f.Add(testkit.DeepStacksPprof(10, 50))
	f.Add(testkit.DeepStacksPprof(2, maxFrames+1))
	f.Add(testkit.LabelsPprof(10, 5))
	f.Add(testkit.LabelsPprof(1, maxSampleLabels+1))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := countPprof(data)
		prof, perr := profile.ParseUncompressed(data)
		if err != nil || perr != nil {
			return
		}
		values, refs, lines := 0, 0, 0
		for _, s := range prof.Sample {
			values += len(s.Value)
			refs += len(s.Location)
		}
		for _, l := range prof.Location {
			lines += len(l.Line)
		}
		got := [...]int{c.sampleTypes, c.samples, c.values, c.locationRefs, c.locations, c.lines, c.functions, c.mappings}
		want := [...]int{len(prof.SampleType), len(prof.Sample), values, refs, len(prof.Location), lines, len(prof.Function), len(prof.Mapping)}
		if got != want {
			t.Fatalf("counted (types, samples, values, refs, locations, lines, functions, mappings) %v, decoded %v", got, want)
		}
	})
}
