package collector

import (
	"encoding/binary"
	"fmt"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/config"
)

// BenchmarkMultiValue compares, on the same n keys, a struct-valued map
// exported as two counters (values: count at 0, bytes at 8) with the same
// two counters from two u64 maps. Each iteration collects and scrapes
// both, one after the other, so both meet the same load; the ratios are
// of the sums (below 1: the multi-value map costs less).
func BenchmarkMultiValue(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			multi := newValueMap(b, ebpf.Hash, 16, 16, uint32(n))
			counts, bytes := newMap(b, ebpf.Hash, 16, uint32(n)), newMap(b, ebpf.Hash, 16, uint32(n))
			keys := make([][16]byte, n)
			vals := make([][16]byte, n)
			cv, bv := make([]uint64, n), make([]uint64, n)
			for i := range keys {
				copy(keys[i][:], cat(u32(uint32(i)), u32(uint32(i%7)), str("cmd"+strconv.Itoa(i%10), 8)))
				cv[i], bv[i] = uint64(i), uint64(i)*4096
				binary.NativeEndian.PutUint64(vals[i][0:], cv[i])
				binary.NativeEndian.PutUint64(vals[i][8:], bv[i])
			}
			for off := 0; off < n; off += 50_000 {
				end := min(off+50_000, n)
				for _, put := range []struct {
					m    *ebpf.Map
					vals any
				}{{multi, vals[off:end]}, {counts, cv[off:end]}, {bytes, bv[off:end]}} {
					if _, err := put.m.BatchUpdate(keys[off:end], put.vals, nil); err != nil {
						b.Fatal(err)
					}
				}
			}
			labels := []config.Label{
				uintLabel("id", 4),
				{Name: "kind", Size: 4, Decoders: []config.Decoder{{Name: "uint"}, {Name: "static_map", AllowUnknown: true, StaticMap: map[string]string{"0": "zero", "1": "one"}}}},
				{Name: "comm", Size: 8, Decoders: []config.Decoder{{Name: "string"}}},
			}
			serve := func(cfg config.Config, maps map[string]*ebpf.Map) (*Collector, string, func()) {
				c := New(Options{})
				cc := c.NewConfig(objectWith(cfg, maps))
				if cc.Err != nil {
					b.Fatal(cc.Err)
				}
				c.SetConfigs([]*Config{cc})
				reg := prometheus.NewRegistry()
				reg.MustRegister(c)
				srv := httptest.NewServer(c.Handler(reg, HandlerOpts{Registry: reg}))
				return c, srv.URL, srv.Close
			}
			mc, murl, mclose := serve(config.Config{Name: "m", Metrics: config.Metrics{Counters: []config.Counter{{
				Name: "st", Labels: labels, Values: []config.Value{
					{Name: "calls_total", Help: "calls", Offset: 0, Size: 8},
					{Name: "bytes_total", Help: "bytes", Offset: 8, Size: 8},
				},
			}}}}, map[string]*ebpf.Map{"st": multi})
			defer mclose()
			tc, turl, tclose := serve(config.Config{Name: "t", Metrics: config.Metrics{Counters: []config.Counter{
				{Name: "calls_total", Help: "calls", Labels: labels},
				{Name: "bytes_total", Help: "bytes", Labels: labels},
			}}}, map[string]*ebpf.Map{"calls_total": counts, "bytes_total": bytes})
			defer tclose()
			collect := func(c *Collector) {
				frames := c.gather.frames()
				if len(frames) != 2 || len(frames[0].ids) != n || len(frames[1].ids) != n {
					b.Fatalf("collected %d frames, want 2 of %d series", len(frames), n)
				}
				for _, f := range frames {
					f.release()
				}
			}
			scrapeOnce(b, murl) // first sight of every key
			scrapeOnce(b, turl)
			var mCollect, tCollect, mScrape, tScrape time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t := time.Now()
				collect(mc)
				mCollect += time.Since(t)
				t = time.Now()
				collect(tc)
				tCollect += time.Since(t)
				t = time.Now()
				scrapeOnce(b, murl)
				mScrape += time.Since(t)
				t = time.Now()
				scrapeOnce(b, turl)
				tScrape += time.Since(t)
			}
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / float64(n) }
			b.ReportMetric(per(mCollect), "multi-collect-ns/key")
			b.ReportMetric(per(tCollect), "two-maps-collect-ns/key")
			b.ReportMetric(per(mScrape), "multi-scrape-ns/key")
			b.ReportMetric(per(tScrape), "two-maps-scrape-ns/key")
			b.ReportMetric(float64(mCollect)/float64(tCollect), "collect-multi/two")
			b.ReportMetric(float64(mScrape)/float64(tScrape), "scrape-multi/two")
			b.ReportMetric(float64(cacheBytes(mc))/float64(cacheBytes(tc)), "cache-multi/two")
		})
	}
}
