package collector

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/internal/testkit"
)

// exposeFixture is a collector over maps holding the cases the streaming
// writers must get right, and a registry with static metrics whose names
// sort between the map families'.
func exposeFixture(t *testing.T) (*Collector, *prometheus.Registry) {
	t.Helper()
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	// Strings that need escaping, that are not UTF-8, that sort before
	// and after the closing quote of a rendered value, duplicates.
	strs := newMap(t, ebpf.Hash, 12, 64)
	for i, s := range []string{"plain", `q"uote`, `back\slash`, "new\nline", "x", "x!", "x ", "\xff\xfebad", "", "é"} {
		put(t, strs, cat(u32(uint32(i%3)), str(s, 8)), uint64(i*1000+1))
	}
	put(t, strs, cat(u32(0), str("dup\x00aaa", 8)), 7) // the string decoder stops at NUL
	put(t, strs, cat(u32(0), str("dup\x00bbb", 8)), 5)
	put(t, strs, cat(u32(2), str("big", 8)), 1<<62)
	put(t, strs, cat(u32(2), str("mid", 8)), 1234567)

	gauges := newMap(t, ebpf.Array, 4, 4)
	for i := uint32(0); i < 4; i++ {
		put(t, gauges, u32(i), uint64(i)*100000)
	}
	nolabels := newMap(t, ebpf.Array, 4, 1)
	put(t, nolabels, u32(0), 1)

	percpu := newMap(t, ebpf.PerCPUHash, 4, 8)
	vals := make([]uint64, ncpu)
	for i := range vals {
		vals[i] = uint64(i + 1)
	}
	if err := percpu.Put(u32(3), vals); err != nil {
		t.Fatal(err)
	}
	percpu2 := newMap(t, ebpf.PerCPUHash, 4, 8)
	if err := percpu2.Put(u32(3), vals); err != nil {
		t.Fatal(err)
	}

	hist := newMap(t, ebpf.Hash, 16, 256)
	for dev := uint32(0); dev < 3; dev++ {
		for b := uint64(0); b <= 6; b++ {
			put(t, hist, cat(u32(dev), u32(0), u64(b)), uint64(dev+1)*(b+1)*100000)
		}
	}
	put(t, hist, cat(u32(9), u32(0), u64(40)), 3) // a bucket outside the range
	nolabelHist := newMap(t, ebpf.Hash, 8, 8)
	for b := uint32(0); b < 4; b++ {
		put(t, nolabelHist, cat(u32(0), u32(b)), uint64(b))
	}
	odd := newMap(t, ebpf.Hash, 4, 8)
	put(t, odd, u32(1), 2)

	cfg := config.Config{Name: "t", Metrics: config.Metrics{
		Counters: []config.Counter{
			{Name: "strings_total", Help: "help with \\ and \n and \"", Labels: []config.Label{
				{Name: "op", Size: 4, Decoders: []config.Decoder{{Name: "uint"}, {Name: "static_map", AllowUnknown: true, StaticMap: map[string]string{"1": "a\"b"}}}},
				{Name: "comm", Size: 8, Decoders: []config.Decoder{{Name: "string"}}},
			}},
			{Name: "events", Help: "a counter not named _total"},
			{Name: "cpu_total", Help: "split", Labels: []config.Label{uintLabel("vec", 4), uintLabel("cpu", 4)}},
			{Name: "summed_total", Help: "summed", Labels: []config.Label{uintLabel("vec", 4)}},
			{Name: "odd_names_total", Help: "a label name only UTF-8 allows", Labels: []config.Label{uintLabel("odd.name", 4)}},
		},
		Gauges: []config.Counter{{Name: "level", Help: "", Labels: []config.Label{uintLabel("slot", 4)}}},
		Histograms: []config.Histogram{
			{Name: "lat_seconds", Help: "h", BucketType: config.BucketExp2, BucketMin: 0, BucketMax: 5, BucketMultiplier: 1e-6,
				Labels: []config.Label{{Name: "dev", Size: 4, Padding: 4, Decoders: []config.Decoder{{Name: "uint"}}}, uintLabel("bucket", 8)}},
			{Name: "sizes", Help: "linear", BucketType: config.BucketLinear, BucketMin: 0, BucketMax: 2, BucketMultiplier: 1.5,
				Labels: []config.Label{uintLabel("pad", 4), uintLabel("bucket", 4)}},
		},
	}}
	cfg.Metrics.Counters[1].Labels = nil
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{
		"strings_total": strs, "events": nolabels, "cpu_total": percpu, "summed_total": percpu2,
		"odd_names_total": odd, "level": gauges, "lat_seconds": hist, "sizes": nolabelHist,
	}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})

	reg := prometheus.NewRegistry()
	for _, name := range []string{"aaa_first", "probe_exporter_m_between", "zzz_last"} {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: "static"}, []string{"l"})
		g.WithLabelValues("v").Set(2.5)
		reg.MustRegister(g)
	}
	return c, reg
}

// TestHandlerMatchesClientGolang serves the same maps through Handler and
// through promhttp over the Gatherer, in every format and encoding, and
// requires the same headers and bytes (protobuf: the same messages), and
// output that expfmt parses into the same families.
func TestHandlerMatchesClientGolang(t *testing.T) {
	c, reg := exposeFixture(t)
	for _, om := range []bool{false, true} {
		ref := httptest.NewServer(promhttp.HandlerFor(prometheus.Gatherers{reg, c}, promhttp.HandlerOpts{EnableOpenMetrics: om}))
		defer ref.Close()
		got := httptest.NewServer(c.Handler(reg, HandlerOpts{EnableOpenMetrics: om}))
		defer got.Close()
		for _, tc := range []struct{ name, accept, encoding, query string }{
			{"default", "", "", ""},
			{"text", "text/plain;version=0.0.4", "", ""},
			{"text gzip", "text/plain;version=0.0.4", "gzip", ""},
			{"text underscores", "text/plain;version=0.0.4;escaping=underscores", "", ""},
			{"openmetrics 1.0", "application/openmetrics-text;version=1.0.0", "gzip", ""},
			{"openmetrics 0.0.1", "application/openmetrics-text;version=0.0.1;q=0.9,text/plain;q=0.5", "", ""},
			{"prometheus default", "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1", "gzip", ""},
			{"protobuf", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;q=0.1", "gzip", ""},
			{"protobuf text", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", "", ""},
			{"protobuf compact", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=compact-text", "", ""},
			{"identity preferred", "", "gzip;q=0.5, identity", ""},
			{"name filter", "", "", "?name[]=probe_exporter_lat_seconds&name[]=zzz_last"},
		} {
			name := tc.name
			if om {
				name += " with OpenMetrics"
			}
			t.Run(name, func(t *testing.T) {
				wantHdr, want := fetch(t, ref.URL+tc.query, tc.accept, tc.encoding)
				gotHdr, body := fetch(t, got.URL+tc.query, tc.accept, tc.encoding)
				for _, h := range []string{"Content-Type", "Content-Encoding", "Vary"} {
					if g, w := gotHdr.Values(h), wantHdr.Values(h); strings.Join(g, "|") != strings.Join(w, "|") {
						t.Errorf("%s: %q, want %q", h, g, w)
					}
				}
				format := expfmt.ResponseFormat(gotHdr)
				if format.FormatType() == expfmt.TypeProtoDelim {
					equalFamilies(t, parse(t, body, format), parse(t, want, format))
					return
				}
				if !bytes.Equal(body, want) {
					t.Fatalf("body differs\n%s", lineDiff(string(body), string(want)))
				}
				if format != expfmt.FmtUnknown {
					equalFamilies(t, parse(t, body, format), parse(t, want, format))
				}
			})
		}
	}
}

// TestHandlerParses checks that expfmt reads back exactly what the maps
// hold, in each format the handler streams.
func TestHandlerParses(t *testing.T) {
	c, reg := exposeFixture(t)
	srv := httptest.NewServer(c.Handler(reg, HandlerOpts{EnableOpenMetrics: true}))
	defer srv.Close()
	mfs, err := c.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		// (The label name of odd_names is escaped on the way.)
		if len(mf.Metric) > 0 && mf.GetName() != "probe_exporter_odd_names_total" {
			want[mf.GetName()] = mf
		}
	}
	for _, accept := range []string{"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"} {
		hdr, body := fetch(t, srv.URL, accept, "")
		got := map[string]*dto.MetricFamily{}
		for _, mf := range parse(t, body, expfmt.ResponseFormat(hdr)) {
			if _, ok := want[mf.GetName()]; ok {
				got[mf.GetName()] = mf
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d map families, want %d", accept, len(got), len(want))
		}
		for name, mf := range want {
			if !proto.Equal(got[name], mf) {
				t.Errorf("%s: %s\ngot  %v\nwant %v", accept, name, got[name], mf)
			}
		}
	}
	// A spot check of values against the maps themselves.
	_, body := fetch(t, srv.URL, "text/plain", "")
	for _, line := range []string{
		`probe_exporter_strings_total{comm="q\"uote",op="a\"b"} 1001`,
		`probe_exporter_strings_total{comm="dup",op="0"} 12`,
		"probe_exporter_strings_total{comm=\"\ufffdbad\",op=\"a\\\"b\"} 7001",
		`probe_exporter_strings_total{comm="mid",op="2"} 1.234567e+06`,
		`probe_exporter_lat_seconds_bucket{dev="1",le="+Inf"} 4.2e+06`,
		`probe_exporter_lat_seconds_sum{dev="1"} 1.4`,
		`probe_exporter_sizes_bucket{pad="0",le="3"} 3`,
		`probe_exporter_events 1`,
	} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("no line %s in\n%s", line, body)
		}
	}
}

// TestHandlerSlowAndParallelClients: a client that stops reading does not
// hold up other scrapes, and parallel scrapes all see every series.
func TestHandlerSlowAndParallelClients(t *testing.T) {
	const n = 150_000
	m := newMap(t, ebpf.Hash, 4, n)
	for i := uint32(0); i < n; i += 1000 {
		keys := make([]uint32, 1000)
		vals := make([]uint64, 1000)
		for j := range keys {
			keys[j], vals[j] = i+uint32(j), uint64(j)
		}
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Config{Name: "t", Metrics: config.Metrics{Counters: []config.Counter{{Name: "c_total", Help: "h", Labels: []config.Label{uintLabel("k", 4)}}}}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"c_total": m}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	srv := httptest.NewServer(c.Handler(prometheus.NewRegistry(), HandlerOpts{DisableCompression: true}))
	defer srv.Close()

	// The slow client reads its headers and then nothing: its response
	// (6 MB) fills the socket buffers and the handler blocks writing.
	dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	slowClient := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	slow, err := slowClient.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 2; j++ {
				_, body := fetch(t, srv.URL, "", "gzip")
				if got := bytes.Count(body, []byte("\nprobe_exporter_c_total{")); got != n {
					errs <- errors.New("a scrape saw " + itoa(got) + " series, want " + itoa(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, err := io.Copy(io.Discard, slow.Body); err != nil || n == 0 {
		t.Fatalf("slow client read %d bytes: %v", n, err)
	}
}

// fetch scrapes url asking for the format accept and the encoding (none
// when empty) and returns the headers and the body, decompressed; a status
// other than 200 is an error.
func fetch(t *testing.T, url, accept, encoding string) (http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Error(err)
		return nil, nil
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	req.Header.Set("Accept-Encoding", encoding)
	if encoding == "" {
		req.Header.Del("Accept-Encoding")
	}
	// testkit leaves Content-Encoding to us.
	code, hdr, raw, err := testkit.TryDo(req)
	if err != nil {
		t.Error(err)
		return nil, nil
	}
	body := raw
	if hdr.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Error(err)
			return nil, nil
		}
		if body, err = io.ReadAll(gz); err != nil {
			t.Error(err)
		}
	}
	if code != http.StatusOK {
		t.Errorf("status %d: %s", code, body)
	}
	return hdr, body
}

func parse(t *testing.T, body []byte, format expfmt.Format) []*dto.MetricFamily {
	t.Helper()
	dec := expfmt.NewDecoder(bytes.NewReader(body), format)
	var mfs []*dto.MetricFamily
	for {
		mf := &dto.MetricFamily{}
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			return mfs
		}
		if err != nil {
			t.Fatalf("parsing %s: %v", format, err)
		}
		mfs = append(mfs, mf)
	}
}

// equalFamilies compares families in name order (the text decoder
// returns them in no particular order).
func equalFamilies(t *testing.T, got, want []*dto.MetricFamily) {
	t.Helper()
	byName := func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) }
	slices.SortFunc(got, byName)
	slices.SortFunc(want, byName)
	if len(got) != len(want) {
		t.Fatalf("%d families, want %d", len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("family %d:\ngot  %v\nwant %v", i, got[i], want[i])
		}
	}
}

func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + itoa(i+1) + ":\ngot  " + gl + "\nwant " + wl
		}
	}
	return ""
}

// TestFloatFormats: the writers format values as expfmt does.
func TestFloatFormats(t *testing.T) {
	for _, f := range []float64{0, 1, -1, 2, 7, 99999, 999999, 1e6, 1234567, 1 << 53, 0.5, 1e-6, 1.5e300, math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), -3, 123456.5} {
		for _, om := range []bool{false, true} {
			mf := &dto.MetricFamily{Name: proto.String("x"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(f)}}}}
			var want bytes.Buffer
			var got []byte
			if om {
				if _, err := expfmt.MetricFamilyToOpenMetrics(&want, mf); err != nil {
					t.Fatal(err)
				}
				got = append([]byte("# TYPE x gauge\nx "), appendOpenMetricsFloat(nil, f)...)
			} else {
				if _, err := expfmt.MetricFamilyToText(&want, mf); err != nil {
					t.Fatal(err)
				}
				got = append([]byte("# TYPE x gauge\nx "), appendTextFloat(nil, f)...)
			}
			if got = append(got, '\n'); string(got) != want.String() {
				t.Errorf("%v (OpenMetrics %v): %q, want %q", f, om, got, want.String())
			}
		}
	}
}

// failingWriter is a client that goes away after its first n bytes.
type failingWriter struct {
	*httptest.ResponseRecorder
	n int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k, _ := w.ResponseRecorder.Write(p[:w.n])
		w.n = 0
		return k, syscall.EPIPE
	}
	w.n -= len(p)
	return w.ResponseRecorder.Write(p)
}

// countingLogger counts the lines logged.
type countingLogger struct{ lines []string }

func (l *countingLogger) Println(v ...any) {
	l.lines = append(l.lines, strings.TrimSpace(fmt.Sprintln(v...)))
}

// TestHandlerClientGone: a client that goes away mid-answer costs one log
// line and one error count, not one per family left to write: a client
// that disconnects at will must not flood the log.
func TestHandlerClientGone(t *testing.T) {
	c, reg := exposeFixture(t)
	// n: bytes the client takes before it goes (gzip writes only its
	// header before the answer is compressed and flushed at the end).
	for _, tc := range []struct {
		name, accept, encoding string
		n                      int
	}{
		{"text", "", "", 100},
		{"text, gzip", "", "gzip", 5},
		{"protobuf", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "", 100},
		{"openmetrics", "application/openmetrics-text;version=1.0.0", "", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logger := &countingLogger{}
			errs := prometheus.NewRegistry()
			h := c.Handler(reg, HandlerOpts{ErrorLog: logger, Registry: errs, EnableOpenMetrics: true})
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.Header.Set("Accept", tc.accept)
			req.Header.Set("Accept-Encoding", tc.encoding)
			h.ServeHTTP(&failingWriter{ResponseRecorder: httptest.NewRecorder(), n: tc.n}, req)
			if len(logger.lines) != 1 {
				t.Errorf("%d lines logged, want 1:\n%s", len(logger.lines), strings.Join(logger.lines, "\n"))
			}
			mfs, err := errs.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var encoding float64
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					if mf.GetName() == "promhttp_metric_handler_errors_total" && m.GetLabel()[0].GetValue() == "encoding" {
						encoding = m.GetCounter().GetValue()
					}
				}
			}
			if encoding != 1 {
				t.Errorf("promhttp_metric_handler_errors_total{cause=\"encoding\"} = %v, want 1", encoding)
			}
		})
	}
}
