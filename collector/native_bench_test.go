package collector

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/config"
)

// Accept headers of Prometheus 2.42: with --enable-feature=native-histograms
// (protobuf first), and without.
const (
	acceptNativeProm  = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
	acceptClassicProm = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

// BenchmarkNativeHistogramScrape: the scrape cost of one histogram family
// with and without its native form, on the same map (10,000 label sets x 27
// exp2 buckets, every bucket counted: the native form's largest). Two
// configs read it, identical but for bucket_multiplier: 2^-20 (native) and
// 0.000001 (classic only). Each iteration scrapes, one after the other,
// both in protobuf as Prometheus asks with native histograms enabled, and
// the native one in OpenMetrics as Prometheus asks without (classic
// buckets: the same bytes as before native histograms). gzip as
// Prometheus asks.
func BenchmarkNativeHistogramScrape(b *testing.B) {
	const sets, buckets = 10_000, 27
	const keys = sets * (buckets + 1)
	m := newMap(b, ebpf.Hash, 16, keys)
	hkeys := make([][16]byte, 0, keys)
	vals := make([]uint64, 0, keys)
	for s := 0; s < sets; s++ {
		for k := 0; k <= buckets; k++ {
			hkeys = append(hkeys, [16]byte(cat(u32(uint32(s)), u32(0), u64(uint64(k)))))
			vals = append(vals, uint64(k+1))
		}
	}
	if _, err := m.BatchUpdate(hkeys, vals, nil); err != nil {
		b.Fatal(err)
	}
	serve := func(mult float64) (string, *Collector) {
		cfg := config.Config{Name: "bench", Metrics: config.Metrics{Histograms: []config.Histogram{{
			Name: "lat_seconds", Help: "h", BucketType: config.BucketExp2, BucketMin: 0, BucketMax: buckets - 1, BucketMultiplier: mult,
			Labels: []config.Label{{Name: "dev", Size: 4, Padding: 4, Decoders: []config.Decoder{{Name: "uint"}}}, uintLabel("bucket", 8)},
		}}}}
		c := New(Options{})
		cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"lat_seconds": m}))
		if cc.Err != nil {
			b.Fatal(cc.Err)
		}
		c.SetConfigs([]*Config{cc})
		srv := httptest.NewServer(c.Handler(prometheus.NewRegistry(), HandlerOpts{EnableOpenMetrics: true}))
		b.Cleanup(srv.Close)
		return srv.URL, c
	}
	nativeURL, nc := serve(math.Ldexp(1, -20))
	classicURL, cc := serve(1e-6)
	if nc.Configs()[0].metrics[0].hist.native == nil || cc.Configs()[0].metrics[0].hist.native != nil {
		b.Fatal("want one native and one classic histogram")
	}
	type side struct {
		url, accept string
		d           time.Duration
		bytes       int64
	}
	sides := []*side{
		{url: classicURL, accept: acceptNativeProm},
		{url: nativeURL, accept: acceptNativeProm},
		{url: nativeURL, accept: acceptClassicProm},
	}
	for _, s := range sides {
		s.bytes = scrapeAccept(b, s.url, s.accept, "identity")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, s := range sides {
			t := time.Now()
			scrapeAccept(b, s.url, s.accept, "gzip")
			s.d += time.Since(t)
		}
	}
	per := func(s *side) float64 { return float64(s.d.Nanoseconds()) / float64(b.N) / sets }
	b.ReportMetric(per(sides[0]), "proto-classic-ns/series")
	b.ReportMetric(per(sides[1]), "proto-native-ns/series")
	b.ReportMetric(per(sides[2]), "openmetrics-ns/series")
	b.ReportMetric(float64(sides[1].d)/float64(sides[0].d), "native/classic")
	b.ReportMetric(float64(sides[0].bytes)/sets, "proto-classic-B/series")
	b.ReportMetric(float64(sides[1].bytes)/sets, "proto-native-B/series")
}

// BenchmarkNativeHistogramWrite isolates what the native form adds: the
// writers alone on frames collected once from the maps of
// BenchmarkNativeHistogramScrape, into io.Discard, protobuf without and
// with the native buckets, and text (classic, the same for both).
func BenchmarkNativeHistogramWrite(b *testing.B) {
	const sets, buckets = 10_000, 27
	m := newMap(b, ebpf.Hash, 16, sets*(buckets+1))
	for s := 0; s < sets; s++ {
		for k := 0; k <= buckets; k++ {
			put(b, m, cat(u32(uint32(s)), u32(0), u64(uint64(k))), uint64(k+1))
		}
	}
	frameOf := func(mult float64) *frame {
		cfg := config.Config{Name: "bench", Metrics: config.Metrics{Histograms: []config.Histogram{{
			Name: "lat_seconds", Help: "h", BucketType: config.BucketExp2, BucketMin: 0, BucketMax: buckets - 1, BucketMultiplier: mult,
			Labels: []config.Label{{Name: "dev", Size: 4, Padding: 4, Decoders: []config.Decoder{{Name: "uint"}}}, uintLabel("bucket", 8)},
		}}}}
		c := New(Options{})
		cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"lat_seconds": m}))
		if cc.Err != nil {
			b.Fatal(cc.Err)
		}
		c.SetConfigs([]*Config{cc})
		return c.gather.frames()[0]
	}
	native, classic := frameOf(math.Ldexp(1, -20)), frameOf(1e-6)
	sides := []struct {
		f      *frame
		format wireFormat
		d      time.Duration
	}{{f: classic, format: wireProtoDelim}, {f: native, format: wireProtoDelim}, {f: native, format: wireText}}
	sw := &streamWriter{w: io.Discard}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range sides {
			s := &sides[k]
			t := time.Now()
			if err := sw.writeFamily(s.format, []*frame{s.f}); err != nil {
				b.Fatal(err)
			}
			s.d += time.Since(t)
		}
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / sets }
	b.ReportMetric(per(sides[0].d), "proto-classic-ns/series")
	b.ReportMetric(per(sides[1].d), "proto-native-ns/series")
	b.ReportMetric(per(sides[2].d), "text-ns/series")
	b.ReportMetric(float64(sides[1].d)/float64(sides[0].d), "native/classic")
}

// scrapeAccept scrapes url with an Accept header and returns the bytes
// read (compressed if gzip).
func scrapeAccept(b *testing.B, url, accept, encoding string) int64 {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("Accept-Encoding", encoding)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
