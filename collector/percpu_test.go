package collector

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/probe-exporter/probe_exporter/config"
)

// TestPerCPUHistogram: per-CPU histogram maps (hash and array) are summed
// across CPUs, or split into one series per CPU when the label before the
// bucket is "cpu", as per-CPU counters are.
func TestPerCPUHistogram(t *testing.T) {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	// CPU c holds (c+1)*(b+1) in bucket b and 100*(c+1) in the sum key.
	perCPU := func(b uint64) []uint64 {
		vals := make([]uint64, ncpu)
		for c := range vals {
			vals[c] = uint64(c+1) * (b + 1)
		}
		return vals
	}
	sumVals := func() []uint64 {
		vals := make([]uint64, ncpu)
		for c := range vals {
			vals[c] = 100 * uint64(c+1)
		}
		return vals
	}
	// Bucket keys 0..3 (exp2, bounds 1, 2, 4, 8), sum key 4.
	hashMap := func() *ebpf.Map {
		m := newMap(t, ebpf.PerCPUHash, 16, 16)
		for b := uint64(0); b < 4; b += 2 { // buckets 0 and 2 only
			if err := m.Put(cat(u32(7), u32(0), u64(b)), perCPU(b)); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Put(cat(u32(7), u32(0), u64(4)), sumVals()); err != nil {
			t.Fatal(err)
		}
		return m
	}
	arrayMap := func() *ebpf.Map {
		m := newMap(t, ebpf.PerCPUArray, 4, 5)
		for b := uint32(0); b < 4; b += 2 {
			if err := m.Put(u32(b), perCPU(uint64(b))); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Put(u32(4), sumVals()); err != nil {
			t.Fatal(err)
		}
		return m
	}
	// line renders one series as scrape does: cumulative buckets 1, 2, 4,
	// 8 from the counts of buckets 0 and 2 (times f), and the sum.
	line := func(labels string, f uint64) string {
		c0, c2 := f*1, f*3
		return fmt.Sprintf("probe_exporter_h%s 1:%d 2:%d 4:%d 8:%d count=%d sum=%d\n", labels, c0, c0, c0+c2, c0+c2, c0+c2, 100*f)
	}
	var total uint64 // sum over CPUs of c+1
	for c := 0; c < ncpu; c++ {
		total += uint64(c + 1)
	}
	dev := config.Label{Name: "dev", Size: 4, Padding: 4, Decoders: []config.Decoder{{Name: "uint"}}}
	for _, tc := range []struct {
		name   string
		m      func() *ebpf.Map
		labels []config.Label
		want   func() string
	}{
		{"hash summed", hashMap, []config.Label{dev, uintLabel("bucket", 8)}, func() string { return line(" dev=7", total) }},
		{"hash by cpu", hashMap, []config.Label{dev, uintLabel("cpu", 4), uintLabel("bucket", 8)}, func() string {
			var b strings.Builder
			for c := 0; c < ncpu; c++ {
				b.WriteString(line(fmt.Sprintf(" cpu=%d dev=7", c), uint64(c+1)))
			}
			return b.String()
		}},
		{"array summed", arrayMap, []config.Label{uintLabel("bucket", 4)}, func() string { return line("", total) }},
		{"array by cpu", arrayMap, []config.Label{uintLabel("cpu", 2), uintLabel("bucket", 4)}, func() string {
			var b strings.Builder
			for c := 0; c < ncpu; c++ {
				b.WriteString(line(fmt.Sprintf(" cpu=%d", c), uint64(c+1)))
			}
			return b.String()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Config{Name: "t", Metrics: config.Metrics{Histograms: []config.Histogram{{
				Name: "h", Help: "h", BucketType: config.BucketExp2, BucketMin: 0, BucketMax: 3, Labels: tc.labels,
			}}}}
			c := New(Options{})
			cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"h": tc.m()}))
			if cc.Err != nil {
				t.Fatal(cc.Err)
			}
			c.SetConfigs([]*Config{cc})
			for range 2 { // the second scrape reads the cached keys
				if got, want := scrape(t, c, "probe_exporter_h"), tc.want(); got != want {
					t.Fatalf("got\n%s\nwant\n%s", got, want)
				}
			}
		})
	}
}

// TestPerCPUHistogramKeySize: the cpu label of a per-CPU histogram is not
// in the key; on other maps it is, like any label.
func TestPerCPUHistogramKeySize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		typ     ebpf.MapType
		keySize uint32
		cpuSize uint
		wantErr string
	}{
		{"per-CPU, cpu not in the key", ebpf.PerCPUHash, 8, 4, ""},
		{"per-CPU, cpu in the key", ebpf.PerCPUHash, 12, 4, `/etc/x/t.yaml:5: metric "h": labels take 8 bytes`},
		{"per-CPU, cpu of 3 bytes", ebpf.PerCPUHash, 8, 3, `/etc/x/t.yaml:5: metric "h": label "cpu" of a per-CPU map must be 1, 2, 4 or 8 bytes, not 3`},
		{"hash, cpu in the key", ebpf.Hash, 12, 4, ""},
		{"hash, cpu not in the key", ebpf.Hash, 8, 4, `/etc/x/t.yaml:5: metric "h": labels take 12 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMap(t, tc.typ, tc.keySize, 4)
			cfg := config.Config{Name: "t", Path: "/etc/x/t.yaml", Metrics: config.Metrics{Histograms: []config.Histogram{{
				Name: "h", Help: "h", Line: 5, BucketType: config.BucketExp2, BucketMin: 0, BucketMax: 3,
				Labels: []config.Label{uintLabel("dev", 4), uintLabel("cpu", tc.cpuSize), uintLabel("bucket", 4)},
			}}}}
			cc := New(Options{}).NewConfig(objectWith(cfg, map[string]*ebpf.Map{"h": m}))
			switch {
			case tc.wantErr == "" && cc.Err != nil:
				t.Fatal(cc.Err)
			case tc.wantErr != "" && (cc.Err == nil || !strings.Contains(cc.Err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", cc.Err, tc.wantErr)
			}
		})
	}
}
