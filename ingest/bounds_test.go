package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/probe-exporter/probe_exporter/rules"
)

// server runs the handler and a /metrics of the rules on a real HTTP
// server.
type server struct {
	*httptest.Server
	set *rules.Set
	h   *Handler
}

func newServer(t *testing.T, rulesYAML string, opts Options) *server {
	t.Helper()
	s, err := rules.Parse("r.yaml", []byte(rulesYAML))
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(s, opts)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s, s.Stats(), h)
	mux := http.NewServeMux()
	mux.Handle("/ingest", h)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &server{Server: srv, set: s, h: h}
}

func (s *server) push(t *testing.T, query string, hdr map[string]string, body io.Reader) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+"/ingest?"+query, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// metric returns the line of /metrics starting with prefix ("" if none).
func (s *server) metric(t *testing.T, prefix string) string {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			return sc.Text()
		}
	}
	return ""
}

const simpleRules = `metrics-export-rules:
  cpu_total:
    expr: 'app.cpu'
  cpu_by_env:
    expr: 'app.cpu'
    group_by: [env]
`

func TestValidation(t *testing.T) {
	s := newServer(t, simpleRules, Options{})
	for _, tc := range []struct{ name, body, want string }{
		{"app.cpu{env=a%FFb}", "a;b 1", "not valid UTF-8"},
		{"app.cpu", "a;b -5", "negative"},
		{"app.cpu", "a;b NaN", "not finite"},
		{"app.cpu", "a;b 1e999", "not finite"},
		{"app.cpu", "a;b 1.5", "not a non-negative integer"},
		{"app.cpu", "a;b 18446744073709551616", "overflows 64 bits"},
		{"app.cpu", "a;b 18446744073709551615\na;c 1", "add up to more than 2^64-1"},
		{"app.cpu{env=" + strings.Repeat("x", 3000) + "}", "a 1", "longer than"},
	} {
		code, _, msg := s.push(t, "name="+tc.name, nil, strings.NewReader(tc.body))
		if code != 400 || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %q: %d %q, want 400 %q", tc.name, tc.body, code, msg, tc.want)
		}
	}
	// A negative pprof value.
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "alloc_space", Unit: "bytes"}},
		Sample:     []*profile.Sample{{Value: []int64{-5}}},
	}
	var buf bytes.Buffer
	p.Write(&buf)
	if code, _, msg := s.push(t, "name=app&format=pprof", nil, &buf); code != 400 || !strings.Contains(msg, "negative") {
		t.Errorf("negative pprof: %d %q", code, msg)
	}
	// Nothing was counted, and /metrics serves.
	if line := s.metric(t, "cpu_total"); line != "" {
		t.Errorf("counted a rejected push: %s", line)
	}
}

// TestNonUTF8NeverPanics: a label value that is not UTF-8, handed to the
// rules by another sink, is left out of the exposition; the other series
// and rules are served.
func TestNonUTF8NeverPanics(t *testing.T) {
	s := newServer(t, simpleRules, Options{})
	s.set.Observe("app.cpu", map[string]string{"env": "a\xffb"}, "samples", 100, []rules.Sample{{Stack: "a", Value: 100}})
	s.set.Observe("app.cpu", map[string]string{"env": "ok"}, "samples", 100, []rules.Sample{{Stack: "a", Value: 100}})
	if got := s.metric(t, "cpu_total "); got != "cpu_total 2" {
		t.Errorf("cpu_total: %q", got)
	}
	if got := s.metric(t, `cpu_by_env{env="ok"}`); got != `cpu_by_env{env="ok"} 1` {
		t.Errorf("cpu_by_env: %q", got)
	}
}

func TestCountersSaturate(t *testing.T) {
	s := newServer(t, simpleRules, Options{})
	s.push(t, "name=app.cpu", nil, strings.NewReader("a;b 5"))
	if got := s.metric(t, "cpu_total "); got != "cpu_total 0.05" {
		t.Fatalf("after 5: %q", got)
	}
	if code, _, msg := s.push(t, "name=app.cpu", nil, strings.NewReader("a;b 18446744073709551615")); code != 200 {
		t.Fatalf("%d %s", code, msg)
	}
	if got := s.metric(t, "cpu_total "); got != "cpu_total 1.8446744073709552e+17" {
		t.Fatalf("after 2^64-1: %q (want the saturated value, never less)", got)
	}
	s.push(t, "name=app.cpu", nil, strings.NewReader("a;b 7"))
	if got := s.metric(t, "cpu_total "); got != "cpu_total 1.8446744073709552e+17" {
		t.Fatalf("after more: %q", got)
	}
	if got := s.metric(t, `probe_exporter_rule_saturated_total{rule="cpu_total"}`); got != `probe_exporter_rule_saturated_total{rule="cpu_total"} 2` {
		t.Errorf("saturation metric: %q", got)
	}
}

func gzipped(t *testing.T, size int, pattern string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zeros := bytes.Repeat([]byte(pattern), (1<<20)/len(pattern))
	for n := 0; n < size; n += len(zeros) {
		zw.Write(zeros)
	}
	zw.Close()
	return buf.Bytes()
}

// TestDecompressionBomb: a small gzip of much more than the bound is cut
// off while decompressing, whichever way it comes.
func TestDecompressionBomb(t *testing.T) {
	s := newServer(t, simpleRules, Options{MaxDecompressedBytes: 4 << 20})
	bomb := gzipped(t, 64<<20, "\x00")
	lines := gzipped(t, 64<<20, "a;b 1\n")
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	fw, _ := mw.CreateFormFile("profile", "profile.pprof")
	fw.Write(bomb)
	mw.Close()
	var ms runtime.MemStats
	for _, tc := range []struct {
		name, query string
		hdr         map[string]string
		body        []byte
	}{
		{"pprof magic", "name=app&format=pprof", nil, bomb},
		{"folded magic", "name=app.cpu", nil, lines},
		{"content-encoding", "name=app.cpu", map[string]string{"Content-Encoding": "gzip"}, lines},
		{"multipart", "name=app", map[string]string{"Content-Type": mw.FormDataContentType()}, mp.Bytes()},
	} {
		code, _, msg := s.push(t, tc.query, tc.hdr, bytes.NewReader(tc.body))
		if code != 413 || !strings.Contains(msg, "decompressed body over 4194304 bytes") {
			t.Errorf("%s: %d %q", tc.name, code, msg)
		}
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > 200<<20 {
			t.Errorf("%s: heap %d MiB after a 4 MiB bound", tc.name, ms.HeapAlloc>>20)
		}
	}
	// A gzipped profile sent with Content-Encoding: gzip is decompressed
	// twice, each bounded; a third layer is refused, never handed to the
	// pprof parser (which would decompress it without a bound).
	if code, _, msg := s.push(t, "name=app&format=pprof", map[string]string{"Content-Encoding": "gzip"}, bytes.NewReader(gzipOf(cpuProfile(t)))); code != 200 {
		t.Errorf("gzip content-encoding of a gzipped profile: %d %q", code, msg)
	}
	if code, _, msg := s.push(t, "name=app&format=pprof", map[string]string{"Content-Encoding": "gzip"}, bytes.NewReader(gzipOf(gzipOf(cpuProfile(t))))); code != 400 || !strings.Contains(msg, "gzip inside gzip") {
		t.Errorf("nested gzip: %d %q", code, msg)
	}
	if n := s.h.inflight.Load(); n != 0 {
		t.Errorf("in-flight bytes %d after every push ended", n)
	}
}

func gzipOf(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// TestSlowBody: a body that does not arrive within the deadline is
// answered 408 and its connection closed.
func TestSlowBody(t *testing.T) {
	s := newServer(t, simpleRules, Options{BodyTimeout: 300 * time.Millisecond})
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /ingest?name=app.cpu HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\na;b 1\n")
	conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a generous overall bound
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow body: %d", resp.StatusCode)
	}
	// Scrapes are not affected by the ingest deadline.
	if line := s.metric(t, "probe_exporter_ingest_requests_total{code=\"408\"}"); line != `probe_exporter_ingest_requests_total{code="408"} 1` {
		t.Errorf("408 not counted: %q", line)
	}
}

// TestInflightBound: while one push holds most of the budget, another is
// answered 503 with Retry-After; once it ends, pushes are accepted again.
func TestInflightBound(t *testing.T) {
	s := newServer(t, simpleRules, Options{MaxInflightBytes: 8 << 20})
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/ingest?name=app&format=pprof", pr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	chunk := bytes.Repeat([]byte{0}, 1<<20)
	for i := 0; i < 2; i++ {
		pw.Write(chunk)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.h.inflight.Load() < 2<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("in-flight bytes stayed at %d", s.h.inflight.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// 60,000 distinct stacks: about 7 MiB to decode, under the bound alone.
	var many strings.Builder
	for i := 0; i < 60000; i++ {
		fmt.Fprintf(&many, "main;stack-%012d 1\n", i)
	}
	code, hdr, msg := s.push(t, "name=app.cpu", nil, strings.NewReader(many.String()))
	if code != 503 || hdr.Get("Retry-After") == "" {
		t.Errorf("over the bound: %d %q Retry-After=%q", code, msg, hdr.Get("Retry-After"))
	}
	pw.Close()
	<-done
	if code, _, msg := s.push(t, "name=app.cpu", nil, strings.NewReader("a;b 100")); code != 200 {
		t.Errorf("after the holder ended: %d %s", code, msg)
	}
	if n := s.h.inflight.Load(); n != 0 {
		t.Errorf("in-flight bytes %d after every push ended", n)
	}
}

func TestSeriesBound(t *testing.T) {
	s := newServer(t, simpleRules, Options{})
	s.set.SetMaxSeries(3)
	for i := 0; i < 5; i++ {
		if code, _, msg := s.push(t, fmt.Sprintf("name=app.cpu{env=e%d}", i), nil, strings.NewReader("a 100")); code != 200 {
			t.Fatal(code, msg)
		}
	}
	s.push(t, "name=app.cpu{env=e0}", nil, strings.NewReader("a 100")) // an existing label set still counts
	if got := s.metric(t, `cpu_by_env{env="e0"}`); got != `cpu_by_env{env="e0"} 2` {
		t.Errorf("existing series: %q", got)
	}
	if got := s.metric(t, `cpu_by_env{env="e3"}`); got != "" {
		t.Errorf("over the bound: %q", got)
	}
	if got := s.metric(t, `probe_exporter_rule_series_dropped_total{rule="cpu_by_env"}`); got != `probe_exporter_rule_series_dropped_total{rule="cpu_by_env"} 2` {
		t.Errorf("dropped: %q", got)
	}
	if got := s.metric(t, `probe_exporter_rule_series{rule="cpu_by_env"}`); got != `probe_exporter_rule_series{rule="cpu_by_env"} 3` {
		t.Errorf("series: %q", got)
	}
}

// TestStackCacheDoesNotPin: many large pushes through a node rule leave
// the heap bounded by the cache bounds, not by what was pushed.
func TestStackCacheDoesNotPin(t *testing.T) {
	s := newServer(t, "metrics-export-rules:\n  node_rule:\n    node: 'main;x'\n", Options{})
	var body strings.Builder
	for round := 0; round < 30; round++ {
		body.Reset()
		for i := 0; i < 2000; i++ {
			fmt.Fprintf(&body, "main;x;%d-%d-%s 1\n", round, i, strings.Repeat("f", 1000))
		}
		if code, _, msg := s.push(t, "name=app.cpu", nil, strings.NewReader(body.String())); code != 200 {
			t.Fatal(code, msg)
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	// 60 MB were pushed; the cache holds at most 8 MiB of stacks.
	if ms.HeapAlloc > 40<<20 {
		t.Errorf("heap %d MiB after 60 MB of pushes", ms.HeapAlloc>>20)
	}
	if got := s.metric(t, "node_rule "); got != "node_rule 600" {
		t.Errorf("node_rule: %q", got)
	}
}

// TestUnits: CPU samples become seconds by the sample rate, CPU
// nanoseconds by 1e9; bytes count as they are; in-use memory is averaged
// by Pyroscope, so it is a gauge of the latest profile.
func TestUnits(t *testing.T) {
	s := newServer(t, `metrics-export-rules:
  alloc_bytes:
    expr: 'app.alloc_space'
  inuse_bytes:
    expr: 'app.inuse_space'
  objects:
    expr: 'obj.objects'
`, Options{})
	heap := func(alloc, inuse int64) io.Reader {
		fn := &profile.Function{ID: 1, Name: "main"}
		loc := &profile.Location{ID: 1, Line: []profile.Line{{Function: fn}}}
		p := &profile.Profile{
			SampleType: []*profile.ValueType{{Type: "alloc_space", Unit: "bytes"}, {Type: "inuse_space", Unit: "bytes"}},
			PeriodType: &profile.ValueType{Type: "space", Unit: "bytes"}, Period: 512 * 1024,
			Sample:   []*profile.Sample{{Location: []*profile.Location{loc}, Value: []int64{alloc, inuse}}},
			Location: []*profile.Location{loc}, Function: []*profile.Function{fn},
		}
		var buf bytes.Buffer
		p.Write(&buf)
		return &buf
	}
	for _, v := range [][2]int64{{4096, 1000}, {4096, 300}} {
		if code, _, msg := s.push(t, "name=app&format=pprof&sampleRate=100", nil, heap(v[0], v[1])); code != 200 {
			t.Fatal(code, msg)
		}
	}
	if got := s.metric(t, "alloc_bytes "); got != "alloc_bytes 8192" {
		t.Errorf("alloc_space (summed, not divided by the rate): %q", got)
	}
	if got := s.metric(t, "inuse_bytes_average "); got != "inuse_bytes_average 300" {
		t.Errorf("inuse_space (averaged: the latest profile): %q", got)
	}
	if got := s.metric(t, "inuse_bytes "); got != "" {
		t.Errorf("inuse_space counted as a sum: %q", got)
	}
	// aggregationType=average on a folded push.
	for _, v := range []string{"a 10", "a 4"} {
		s.push(t, "name=obj.objects&units=objects&aggregationType=average", nil, strings.NewReader(v))
	}
	if got := s.metric(t, "objects_average "); got != "objects_average 4" {
		t.Errorf("average folded push: %q", got)
	}
}

// TestRecordingRules: today's Pyroscope recording rules, by matchers over
// service_name and __profile_type__, with a function filter, group_by and
// external labels; CPU in nanoseconds as Pyroscope's CPU type counts.
func TestRecordingRules(t *testing.T) {
	s := newServer(t, `recording_rules:
  - metric_name: svc_cpu_nanoseconds
    matchers:
      - '{__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds", service_name="myapp"}'
    group_by: [env]
    external_labels:
      - name: team
        value: core
  - metric_name: svc_slow_cpu_nanoseconds
    matchers:
      - '{__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds", service_name=~"my.*", env!="staging"}'
    stacktrace_filter:
      function_name:
        function_name: slowFunction
  - metric_name: svc_alloc_bytes
    matchers: ['{__profile_type__="memory:alloc_space:bytes:space:bytes"}']
`, Options{})
	for env, body := range map[string]string{"prod": "main;slowFunction 75\nmain;fastFunction 25\nmain;slowFunctionX 5", "staging": "main;slowFunction 10"} {
		if code, _, msg := s.push(t, "name=myapp.cpu{env="+env+"}&sampleRate=100", nil, strings.NewReader(body)); code != 200 {
			t.Fatal(code, msg)
		}
	}
	s.push(t, "name=other.cpu", nil, strings.NewReader("main;slowFunction 100"))
	for _, want := range []string{
		`svc_cpu_nanoseconds{env="prod",team="core"} 1.05e+09`,
		`svc_cpu_nanoseconds{env="staging",team="core"} 1e+08`,
		`svc_slow_cpu_nanoseconds 7.5e+08`,
	} {
		name, _, _ := strings.Cut(want, " ")
		if got := s.metric(t, name+" "); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if got := s.metric(t, "svc_alloc_bytes"); got != "" {
		t.Errorf("CPU pushes matched the alloc rule: %q", got)
	}
}
