package collector

import (
	"bytes"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/config"
)

// TestSummary: the landing page's summary of a config is its last
// scrape's series, histogram buckets summed over series, and the bytes of
// its families in the last /metrics answer.
func TestSummary(t *testing.T) {
	hm := newMap(t, ebpf.Hash, 16, 64)
	dev := func(d uint32, bucket uint64) []byte { return cat(u32(d), u32(0), u64(bucket)) }
	put(t, hm, dev(8, 1), 3)
	put(t, hm, dev(8, 3), 4)
	put(t, hm, dev(8, 5), 100)
	put(t, hm, dev(9, 0), 1)
	put(t, hm, dev(9, 3), 2)
	cm := newMap(t, ebpf.Hash, 4, 64)
	for i := range uint32(5) {
		put(t, cm, u32(i), uint64(i))
	}
	cfg := config.Config{Name: "t", Metrics: config.Metrics{
		Counters: []config.Counter{{Name: "calls_total", Help: "c", Labels: []config.Label{uintLabel("n", 4)}}},
		Histograms: []config.Histogram{{
			Name: "lat_seconds", Help: "h", BucketType: config.BucketExp2, BucketMin: 0, BucketMax: 4,
			Labels: []config.Label{{Name: "dev", Size: 4, Padding: 4, Decoders: []config.Decoder{{Name: "uint"}}}, uintLabel("bucket", 8)},
		}},
	}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"lat_seconds": hm, "calls_total": cm}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	if s := cc.Summary(); s.Scraped || s.Series != 0 {
		t.Fatalf("summary before any scrape: %+v", s)
	}
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(c.Handler(reg, HandlerOpts{Registry: reg}))
	defer srv.Close()
	rsp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(rsp.Body); err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()

	s := cc.Summary()
	if !s.Scraped || s.Series != 7 {
		t.Errorf("series = %d (scraped %v), want 5 counters and 2 histograms", s.Series, s.Scraped)
	}
	if len(s.Histograms) != 1 {
		t.Fatalf("histograms: %+v", s.Histograms)
	}
	h := s.Histograms[0]
	if want := []uint64{1, 3, 0, 6, 0}; !slices.Equal(h.Counts, want) || h.Series != 2 || !h.Exp2 {
		t.Errorf("histogram summary %+v, want counts %v over 2 series", h, want)
	}
	if want := []float64{1, 2, 4, 8, 16}; !slices.Equal(h.Bounds, want) {
		t.Errorf("bounds %v, want %v", h.Bounds, want)
	}
	// The config's bytes are the lines of its two families.
	var want int64
	for _, l := range strings.SplitAfter(body.String(), "\n") {
		if strings.Contains(l, "probe_exporter_lat_seconds") || strings.Contains(l, "probe_exporter_calls_total") {
			want += int64(len(l))
		}
	}
	if s.ScrapeBytes != want {
		t.Errorf("scrape bytes %d, the config's lines take %d of\n%s", s.ScrapeBytes, want, body.String())
	}
}

// BenchmarkSummary100k is the landing page's cost per config at 100k
// series: one pass over the last scrape's series, no map read.
func BenchmarkSummary100k(b *testing.B) {
	c := benchCollector(b, benchMap(b, 100_000))
	c.gather.Gather()
	cfg := c.Configs()[0]
	b.ResetTimer()
	for b.Loop() {
		if s := cfg.Summary(); s.Series != 100_000 {
			b.Fatalf("%d series", s.Series)
		}
	}
}
