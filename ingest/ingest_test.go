package ingest

import (
	"bytes"
	"compress/gzip"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/probe-exporter/probe_exporter/rules"
)

const testRules = `metrics-export-rules:
  app_total:
    expr: 'myapp.cpu'
  app_slow:
    expr: 'myapp.cpu{env="prod"}'
    node: 'main;slowFunction'
    group_by: [env, region]
`

func setup(t *testing.T) (*rules.Set, *httptest.Server) {
	t.Helper()
	s, err := rules.Parse("r.yaml", []byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewHandler(s, Options{MaxBodyBytes: 1 << 20}))
	t.Cleanup(srv.Close)
	return s, srv
}

func post(t *testing.T, url, ct string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(url, ct, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestFolded(t *testing.T) {
	s, srv := setup(t)
	body := "main;slowFunction 300\nmain;slowFunction;inner 60\nmain;fastFunction 140\n"
	code, msg := post(t, srv.URL+"/ingest?name=myapp.cpu{env=prod}&from=1700000000&until=1700000010&sampleRate=100&spyName=gospy", "text/plain", []byte(body))
	if code != 200 {
		t.Fatalf("%d %s", code, msg)
	}
	want := `
# HELP app_slow Profile export rule app_slow: expr myapp.cpu{env="prod"}, node main;slowFunction.
# TYPE app_slow counter
app_slow{env="prod",region=""} 3.6
# HELP app_total Profile export rule app_total: expr myapp.cpu, node total.
# TYPE app_total counter
app_total 5
`
	if err := testutil.CollectAndCompare(s, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestLines(t *testing.T) {
	s, srv := setup(t)
	body := "main;slowFunction\nmain;slowFunction\nmain;fastFunction\n"
	if code, msg := post(t, srv.URL+"/ingest?name=myapp.cpu&format=lines&sampleRate=1", "", []byte(body)); code != 200 {
		t.Fatalf("%d %s", code, msg)
	}
	if v := testutil.ToFloat64(testutilRule(s, "app_total")); v != 3 {
		t.Fatalf("app_total %v", v)
	}
}

// testutilRule collects one rule's metric.
func testutilRule(s *rules.Set, name string) *singleRule { return &singleRule{s, name} }

func cpuProfile(t testing.TB) []byte {
	t.Helper()
	mainFn := &profile.Function{ID: 1, Name: "main"}
	slowFn := &profile.Function{ID: 2, Name: "slowFunction"}
	fastFn := &profile.Function{ID: 3, Name: "fastFunction"}
	lMain := &profile.Location{ID: 1, Line: []profile.Line{{Function: mainFn}}}
	lSlow := &profile.Location{ID: 2, Line: []profile.Line{{Function: slowFn}}}
	lFast := &profile.Location{ID: 3, Line: []profile.Line{{Function: fastFn}}}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:     10_000_000,
		Sample: []*profile.Sample{
			{Location: []*profile.Location{lSlow, lMain}, Value: []int64{75, 750_000_000}},
			{Location: []*profile.Location{lFast, lMain}, Value: []int64{25, 250_000_000}},
		},
		Location:      []*profile.Location{lMain, lSlow, lFast},
		Function:      []*profile.Function{mainFn, slowFn, fastFn},
		TimeNanos:     time.Now().UnixNano(),
		DurationNanos: 1e9,
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil { // gzipped
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPprof(t *testing.T) {
	for _, kind := range []string{"gzip", "raw", "multipart"} {
		t.Run(kind, func(t *testing.T) {
			s, srv := setup(t)
			body, ct := cpuProfile(t), "binary/octet-stream"
			switch kind {
			case "raw":
				zr, _ := gzip.NewReader(bytes.NewReader(body))
				var raw bytes.Buffer
				raw.ReadFrom(zr)
				body = raw.Bytes()
			case "multipart":
				var mp bytes.Buffer
				mw := multipart.NewWriter(&mp)
				fw, _ := mw.CreateFormFile("profile", "profile.pprof")
				fw.Write(body)
				mw.Close()
				body, ct = mp.Bytes(), mw.FormDataContentType()
			}
			url := srv.URL + "/ingest?name=myapp.cpu{env=prod,region=eu}&sampleRate=100&spyName=gospy"
			if kind != "multipart" {
				url += "&format=pprof"
			}
			if code, msg := post(t, url, ct, body); code != 200 {
				t.Fatalf("%d %s", code, msg)
			}
			want := `
# HELP app_slow Profile export rule app_slow: expr myapp.cpu{env="prod"}, node main;slowFunction.
# TYPE app_slow counter
app_slow{env="prod",region="eu"} 0.75
# HELP app_total Profile export rule app_total: expr myapp.cpu, node total.
# TYPE app_total counter
app_total 1
`
			if err := testutil.CollectAndCompare(s, strings.NewReader(want)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	_, srv := setup(t)
	for _, tc := range []struct {
		query, body string
		code        int
		want        string
	}{
		{"", "a 1", 400, "invalid application name"},
		{"name=app{env", "a 1", 400, "unclosed"},
		{"name=app&sampleRate=x", "a 1", 400, "sampleRate"},
		{"name=app&from=yesterday", "a 1", 400, "from"},
		{"name=app&format=xml", "a 1", 400, "format"},
		{"name=app", "a;b notanumber", 400, "line 1: count"},
		{"name=app", "nospace", 400, "line 1"},
		{"name=app&format=pprof", "not a profile", 400, "pprof"},
		{"name=app&format=tree", "a 1", 400, "not supported"},
		{"name=app&from=20&until=10", "a 1", 400, "until is before from"},
		{"name=app", strings.Repeat("a;b 1\n", 200000), 413, "over"},
	} {
		code, msg := post(t, srv.URL+"/ingest?"+tc.query, "", []byte(tc.body))
		if code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q, want %d %q", tc.query, code, msg, tc.code, tc.want)
		}
	}
	resp, _ := http.Get(srv.URL + "/ingest?name=app")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
}

func TestParseTime(t *testing.T) {
	now := time.Unix(1700000000, 0)
	for in, want := range map[string]time.Time{
		"1700000000":          time.Unix(1700000000, 0),
		"1700000000000":       time.UnixMilli(1700000000000),
		"1700000000000000":    time.UnixMicro(1700000000000000),
		"1700000000000000000": time.Unix(0, 1700000000000000000),
		"now":                 now,
		"now-1h":              now.Add(-time.Hour),
		"":                    now,
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v %v, want %v", in, got, err, want)
		}
	}
}
