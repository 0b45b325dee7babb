package collector

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/procexit"
)

// BenchmarkExpiry is the collect phase of a pid-keyed map with its
// entries expiring on process exit (the exit tracepoint loaded and drained
// every scrape) against the same map with expire: never, interleaved.
// Nothing exits among the map's pids, so nothing is deleted: this is the
// price of watching.
func BenchmarkExpiry(b *testing.B) {
	exits := procexit.New(nil, 0)
	defer exits.Close()
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			m := newMap(b, ebpf.Hash, 8, uint32(n))
			keys := make([][8]byte, n)
			vals := make([]uint64, n)
			for i := range keys {
				copy(keys[i][:], cat(u32(uint32(5_000_000+i)), u32(uint32(i%3)))) // pids no process has
				vals[i] = uint64(i)
			}
			if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
				b.Fatal(err)
			}
			serve := func(expire string) *Collector {
				pid := pidLabel("pid")
				pid.Expire = expire
				cfg := config.Config{Name: "e", Metrics: config.Metrics{Counters: []config.Counter{{
					Name: "c_total", Help: "h", Labels: []config.Label{pid, uintLabel("op", 4)},
				}}}}
				c := New(Options{Exits: exits})
				cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"c_total": m}))
				if cc.Err != nil {
					b.Fatal(cc.Err)
				}
				c.SetConfigs([]*Config{cc})
				collectOnce(b, c, n)
				return c
			}
			on, off := serve(""), serve(config.ExpireNever)
			var tOn, tOff time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t := time.Now()
				collectOnce(b, on, n)
				tOn += time.Since(t)
				t = time.Now()
				collectOnce(b, off, n)
				tOff += time.Since(t)
			}
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / float64(n) }
			b.ReportMetric(per(tOn), "expiring-ns/key")
			b.ReportMetric(per(tOff), "never-ns/key")
			b.ReportMetric(float64(tOn)/float64(tOff), "expiring/never")
		})
	}
}
