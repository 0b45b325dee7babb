package collector

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
)

// The benchmarks compare, on the same kernel map in one run:
//   - Raw: reading the map with BatchLookup and nothing else (the floor);
//   - Collect: the collect phase (map read, cached decode, sorted frame);
//   - Scrape: a full HTTP scrape of /metrics (collect, write, gzip, transfer);
//   - Bpftool: `bpftool map dump -j` of the same map (a peer's full dump).
// bench/README.md has the figures.

var benchSizes = []int{1_000, 10_000, 100_000, 1_000_000}

// benchMap fills a hash map with n keys {u32 id, u32 cpu-ish pad, char comm[8]}.
func benchMap(b *testing.B, n int) *ebpf.Map {
	m := newMap(b, ebpf.Hash, 16, uint32(n))
	keys := make([][16]byte, n)
	vals := make([]uint64, n)
	for i := range keys {
		copy(keys[i][:], cat(u32(uint32(i)), u32(uint32(i%7)), str("cmd"+strconv.Itoa(i%10), 8)))
		vals[i] = uint64(i)
	}
	for off := 0; off < n; off += 100_000 {
		end := min(off+100_000, n)
		if _, err := m.BatchUpdate(keys[off:end], vals[off:end], nil); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

func benchCollector(b *testing.B, m *ebpf.Map) *Collector {
	cfg := config.Config{Name: "bench", Metrics: config.Metrics{Counters: []config.Counter{{
		Name: "bench_total", Help: "h",
		Labels: []config.Label{
			uintLabel("id", 4),
			{Name: "kind", Size: 4, Decoders: []config.Decoder{{Name: "uint"}, {Name: "static_map", AllowUnknown: true, StaticMap: map[string]string{"0": "zero", "1": "one"}}}},
			{Name: "comm", Size: 8, Decoders: []config.Decoder{{Name: "string"}}},
		},
	}}}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"bench_total": m}))
	if cc.Err != nil {
		b.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	return c
}

func BenchmarkRawBatchLookup(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			m := benchMap(b, n)
			r, err := newMapReader(m)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				seen := 0
				if err := r.read(func([]byte, []uint64) { seen++ }); err != nil {
					b.Fatal(err)
				}
				if seen != n {
					b.Fatalf("read %d keys, want %d", seen, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/series")
		})
	}
}

// BenchmarkCollect is the collect phase: the map read, cached decode and
// the frame (present series sorted, with values) that is then written.
func BenchmarkCollect(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			m := benchMap(b, n)
			c := benchCollector(b, m)
			collectOnce(b, c, n) // warm the label cache
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				collectOnce(b, c, n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/series")
			b.ReportMetric(float64(cacheBytes(c))/float64(n), "cache-B/series")
		})
	}
}

func collectOnce(b *testing.B, c *Collector, series int) {
	frames := c.gather.frames()
	if len(frames) != 1 || len(frames[0].ids) != series {
		b.Fatalf("collected %d frames, want 1 of %d series", len(frames), series)
	}
	frames[0].release()
}

// cacheBytes is the memory the collector's caches hold.
func cacheBytes(c *Collector) int {
	n := 0
	for _, cfg := range c.Configs() {
		for _, mm := range cfg.metrics {
			n += mm.memory()
		}
	}
	return n
}

// BenchmarkScrape is a full HTTP scrape of /metrics as Prometheus makes it
// (gzip, text), through the streaming handler.
func BenchmarkScrape(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			m := benchMap(b, n)
			c := benchCollector(b, m)
			reg := prometheus.NewRegistry()
			reg.MustRegister(c)
			srv := httptest.NewServer(c.Handler(reg, HandlerOpts{Registry: reg}))
			defer srv.Close()
			scrapeOnce(b, srv.URL) // warm
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				scrapeOnce(b, srv.URL)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/series")
		})
	}
}

func scrapeOnce(b *testing.B, url string) {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
}

func BenchmarkBpftoolDump(b *testing.B) {
	bpftool, err := exec.LookPath("bpftool")
	if err != nil {
		b.Skip("bpftool not installed")
	}
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			m := benchMap(b, n)
			if _, err := os.Stat("/sys/fs/bpf/.probe_exporter_bench"); err != nil {
				// Mount bpffs if it is not there (the kernel's default place).
				_ = unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "")
			}
			pin := filepath.Join("/sys/fs/bpf", fmt.Sprintf("probe_exporter_bench_%d", os.Getpid()))
			if err := m.Pin(pin); err != nil {
				b.Skipf("pinning needs bpffs at /sys/fs/bpf: %v", err)
			}
			defer m.Unpin()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cmd := exec.Command(bpftool, "map", "dump", "-j", "pinned", pin)
				cmd.Stdout = io.Discard
				if err := cmd.Run(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/series")
		})
	}
}

// BenchmarkHistogramCollect: 10,000 label sets x 27 buckets (and the sum
// key: 280,000 map keys), like a per-device latency histogram, beside a
// counter map of as many keys, each iteration reading, collecting and
// scraping both one after the other (so both meet the same load). The
// ratios compare the cost per bucket with the cost per counter series.
func BenchmarkHistogramCollect(b *testing.B) {
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
	cfg := config.Config{Name: "bench", Metrics: config.Metrics{Histograms: []config.Histogram{{
		Name: "lat_seconds", Help: "h", BucketType: config.BucketExp2, BucketMin: 0, BucketMax: buckets - 1, BucketMultiplier: 1e-6,
		Labels: []config.Label{{Name: "dev", Size: 4, Padding: 4, Decoders: []config.Decoder{{Name: "uint"}}}, uintLabel("bucket", 8)},
	}}}}
	hc := New(Options{})
	cc := hc.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"lat_seconds": m}))
	if cc.Err != nil {
		b.Fatal(cc.Err)
	}
	hc.SetConfigs([]*Config{cc})
	cm := benchMap(b, keys)
	c := benchCollector(b, cm)

	type side struct {
		c                    *Collector
		r                    *mapReader
		url                  string
		series               int
		raw, collect, scrape time.Duration
	}
	sides := []*side{{c: hc, series: sets}, {c: c, series: keys}}
	for _, s := range sides {
		srv := httptest.NewServer(s.c.Handler(prometheus.NewRegistry(), HandlerOpts{}))
		defer srv.Close()
		s.url = srv.URL
		var err error
		if s.r, err = newMapReader(s.c.Configs()[0].metrics[0].reader.m); err != nil {
			b.Fatal(err)
		}
		scrapeOnce(b, s.url)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, s := range sides {
			t := time.Now()
			if err := s.r.read(func([]byte, []uint64) {}); err != nil {
				b.Fatal(err)
			}
			s.raw += time.Since(t)
			t = time.Now()
			collectOnce(b, s.c, s.series)
			s.collect += time.Since(t)
			t = time.Now()
			scrapeOnce(b, s.url)
			s.scrape += time.Since(t)
		}
	}
	// Per bucket: of the 27 configured (the sum key's cost falls on them).
	perBucket := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / (sets * buckets) }
	perSeries := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / keys }
	h, k := sides[0], sides[1]
	b.ReportMetric(perBucket(h.raw), "raw-ns/bucket")
	b.ReportMetric(perBucket(h.collect), "collect-ns/bucket")
	b.ReportMetric(perBucket(h.scrape), "scrape-ns/bucket")
	b.ReportMetric(perSeries(k.raw), "counter-raw-ns/series")
	b.ReportMetric(perSeries(k.collect), "counter-collect-ns/series")
	b.ReportMetric(perSeries(k.scrape), "counter-scrape-ns/series")
	b.ReportMetric(perBucket(h.collect)/perSeries(k.collect), "collect-bucket/series")
	b.ReportMetric(perBucket(h.scrape)/perSeries(k.scrape), "scrape-bucket/series")
	b.ReportMetric(float64(cacheBytes(hc))/(sets*buckets), "cache-B/bucket")
}

// BenchmarkSideBySide runs, in every iteration and one after the other on
// the same map, the raw read, the collect phase, a full HTTP scrape and
// (below 1M keys, or with BPFTOOL_1M set) `bpftool map dump -j`, so that
// all four meet the same load on a shared machine; the ratios are of the
// sums. ns/series are per phase.
func BenchmarkSideBySide(b *testing.B) {
	bpftool, _ := exec.LookPath("bpftool")
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			m := benchMap(b, n)
			c := benchCollector(b, m)
			reg := prometheus.NewRegistry()
			reg.MustRegister(c)
			srv := httptest.NewServer(c.Handler(reg, HandlerOpts{Registry: reg}))
			defer srv.Close()
			r, err := newMapReader(m)
			if err != nil {
				b.Fatal(err)
			}
			var pin string
			if bpftool != "" && (n < 1_000_000 || os.Getenv("BPFTOOL_1M") != "") {
				_ = unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "")
				pin = filepath.Join("/sys/fs/bpf", fmt.Sprintf("probe_exporter_side_%d", os.Getpid()))
				if err := m.Pin(pin); err != nil {
					pin = ""
				} else {
					defer m.Unpin()
				}
			}
			scrapeOnce(b, srv.URL) // first sight of every key
			var raw, collect, scrape, dump time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t := time.Now()
				if err := r.read(func([]byte, []uint64) {}); err != nil {
					b.Fatal(err)
				}
				raw += time.Since(t)
				t = time.Now()
				collectOnce(b, c, n)
				collect += time.Since(t)
				t = time.Now()
				scrapeOnce(b, srv.URL)
				scrape += time.Since(t)
				if pin != "" {
					t = time.Now()
					cmd := exec.Command(bpftool, "map", "dump", "-j", "pinned", pin)
					cmd.Stdout = io.Discard
					if err := cmd.Run(); err != nil {
						b.Fatal(err)
					}
					dump += time.Since(t)
				}
			}
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / float64(n) }
			b.ReportMetric(per(raw), "raw-ns/series")
			b.ReportMetric(per(collect), "collect-ns/series")
			b.ReportMetric(per(scrape), "scrape-ns/series")
			b.ReportMetric(float64(collect)/float64(raw), "collect/raw")
			if pin != "" {
				b.ReportMetric(per(dump), "bpftool-ns/series")
				b.ReportMetric(float64(scrape)/float64(dump), "scrape/bpftool")
			}
			b.ReportMetric(float64(cacheBytes(c))/float64(n), "cache-B/series")
		})
	}
}
