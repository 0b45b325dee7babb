package collector

import (
	"encoding/binary"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/loader"
)

// newMap creates a real kernel map (the tests run as root).
func newMap(t testing.TB, typ ebpf.MapType, keySize, maxEntries uint32) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: typ, KeySize: keySize, ValueSize: 8, MaxEntries: maxEntries})
	if err != nil {
		t.Skipf("creating a %s map needs BPF privileges: %v", typ, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func put(t testing.TB, m *ebpf.Map, key []byte, value uint64) {
	t.Helper()
	if err := m.Put(key, value); err != nil {
		t.Fatalf("put %x: %v", key, err)
	}
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

func str(s string, n int) []byte {
	b := make([]byte, n)
	copy(b, s)
	return b
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func uintLabel(name string, size uint) config.Label {
	return config.Label{Name: name, Size: size, Decoders: []config.Decoder{{Name: "uint"}}}
}

// objectWith wraps maps as a loaded object.
func objectWith(cfg config.Config, maps map[string]*ebpf.Map) *loader.Object {
	return &loader.Object{Config: cfg, Collection: &ebpf.Collection{Maps: maps, Programs: map[string]*ebpf.Program{}}}
}

func scrape(t *testing.T, c *Collector, names ...string) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	var sb strings.Builder
	mfs, err := prometheus.Gatherers{reg, c}.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, mf := range mfs {
		if len(want) > 0 && !want[mf.GetName()] {
			continue
		}
		for _, m := range mf.GetMetric() {
			sb.WriteString(mf.GetName())
			for _, l := range m.GetLabel() {
				sb.WriteString(" " + l.GetName() + "=" + l.GetValue())
			}
			switch {
			case m.Counter != nil:
				sb.WriteString(" " + fmtFloat(m.GetCounter().GetValue()))
			case m.Gauge != nil:
				sb.WriteString(" " + fmtFloat(m.GetGauge().GetValue()))
			case m.Histogram != nil:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					sb.WriteString(" " + fmtFloat(b.GetUpperBound()) + ":" + fmtFloat(float64(b.GetCumulativeCount())))
				}
				sb.WriteString(" count=" + fmtFloat(float64(h.GetSampleCount())) + " sum=" + fmtFloat(h.GetSampleSum()))
			}
			sb.WriteString("\n")
		}
	}
	return sb.String()
}

func fmtFloat(f float64) string {
	return strings.TrimSuffix(strings.TrimSuffix(strconvF(f), ".0"), ".")
}

func TestCounters(t *testing.T) {
	m := newMap(t, ebpf.Hash, 16, 64)
	// Two raw keys decode to the same labels (the padding differs), so
	// their values merge; an unknown op is mapped to unknown:3.
	put(t, m, cat(u32(1), u32(0), str("a", 8)), 5)
	put(t, m, cat(u32(1), u32(7), str("a", 8)), 2)
	put(t, m, cat(u32(2), u32(0), str("b", 8)), 11)
	put(t, m, cat(u32(3), u32(0), str("c", 8)), 1)

	cfg := config.Config{Name: "t", Path: "t.yaml", Metrics: config.Metrics{Counters: []config.Counter{{
		Name: "ops_total", Help: "ops", Line: 3,
		Labels: []config.Label{
			{Name: "op", Size: 4, Padding: 4, Decoders: []config.Decoder{{Name: "uint"}, {Name: "static_map", StaticMap: map[string]string{"1": "read", "2": "write"}}}},
			{Name: "command", Size: 8, Decoders: []config.Decoder{{Name: "string"}}},
		},
	}}}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"ops_total": m}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	want := "probe_exporter_ops_total command=a op=read 7\n" +
		"probe_exporter_ops_total command=b op=write 11\n" +
		"probe_exporter_ops_total command=c op=unknown:3 1\n"
	for i := 0; i < 3; i++ { // cached decoding gives the same answer
		if got := scrape(t, c, "probe_exporter_ops_total"); got != want {
			t.Fatalf("scrape %d:\n%s\nwant:\n%s", i, got, want)
		}
	}
	// Values are read afresh on each scrape.
	put(t, m, cat(u32(2), u32(0), str("b", 8)), 12)
	if got := scrape(t, c, "probe_exporter_ops_total"); !strings.Contains(got, "command=b op=write 12\n") {
		t.Fatalf("after update:\n%s", got)
	}
}

func TestRegexpDropsLabelSet(t *testing.T) {
	m := newMap(t, ebpf.Hash, 8, 8)
	put(t, m, str("keep", 8), 1)
	put(t, m, str("drop", 8), 2)
	cfg := config.Config{Name: "t", Metrics: config.Metrics{Gauges: []config.Counter{{
		Name: "g", Help: "h",
		Labels: []config.Label{{Name: "comm", Size: 8, Decoders: []config.Decoder{{Name: "string"}, {Name: "regexp", Regexps: []string{"^keep$"}}}}},
	}}}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"g": m}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	if got, want := scrape(t, c, "probe_exporter_g"), "probe_exporter_g comm=keep 1\n"; got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestNoLabels(t *testing.T) {
	m := newMap(t, ebpf.Array, 4, 1)
	put(t, m, u32(0), 42)
	cfg := config.Config{Name: "t", Metrics: config.Metrics{Counters: []config.Counter{{Name: "events_total", Help: "h"}}}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"events_total": m}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	if got, want := scrape(t, c, "probe_exporter_events_total"), "probe_exporter_events_total 42\n"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestPerCPU(t *testing.T) {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]uint64, ncpu)
	for i := range vals {
		vals[i] = uint64(10 * (i + 1))
	}
	var total uint64
	for _, v := range vals {
		total += v
	}
	mk := func() *ebpf.Map {
		m := newMap(t, ebpf.PerCPUHash, 4, 8)
		if err := m.Put(u32(7), vals); err != nil {
			t.Fatal(err)
		}
		return m
	}
	t.Run("summed", func(t *testing.T) {
		cfg := config.Config{Name: "t", Metrics: config.Metrics{Counters: []config.Counter{{Name: "c", Help: "h", Labels: []config.Label{uintLabel("vec", 4)}}}}}
		c := New(Options{})
		cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"c": mk()}))
		if cc.Err != nil {
			t.Fatal(cc.Err)
		}
		c.SetConfigs([]*Config{cc})
		if got, want := scrape(t, c, "probe_exporter_c"), "probe_exporter_c vec=7 "+fmtFloat(float64(total))+"\n"; got != want {
			t.Fatalf("got %q want %q", got, want)
		}
	})
	t.Run("split by cpu", func(t *testing.T) {
		cfg := config.Config{Name: "t", Metrics: config.Metrics{Counters: []config.Counter{{Name: "c", Help: "h", Labels: []config.Label{uintLabel("vec", 4), uintLabel("cpu", 2)}}}}}
		c := New(Options{})
		cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"c": mk()}))
		if cc.Err != nil {
			t.Fatal(cc.Err)
		}
		c.SetConfigs([]*Config{cc})
		var want strings.Builder
		for cpu, v := range vals {
			want.WriteString("probe_exporter_c cpu=" + itoa(cpu) + " vec=7 " + fmtFloat(float64(v)) + "\n")
		}
		if got := scrape(t, c, "probe_exporter_c"); got != want.String() {
			t.Fatalf("got\n%s\nwant\n%s", got, want.String())
		}
	})
}

func TestHistogram(t *testing.T) {
	m := newMap(t, ebpf.Hash, 16, 64)
	dev := func(d uint32, bucket uint64) []byte { return cat(u32(d), u32(0), u64(bucket)) }
	// Buckets 1 and 3 of device 8, and the sum key (bucket_max+1 = 5).
	put(t, m, dev(8, 1), 3)
	put(t, m, dev(8, 3), 4)
	put(t, m, dev(8, 5), 100)
	put(t, m, dev(9, 0), 1)
	cfg := config.Config{Name: "t", Metrics: config.Metrics{Histograms: []config.Histogram{{
		Name: "lat_seconds", Help: "h", BucketType: config.BucketExp2, BucketMin: 0, BucketMax: 4, BucketMultiplier: 0.5,
		Labels: []config.Label{{Name: "dev", Size: 4, Padding: 4, Decoders: []config.Decoder{{Name: "uint"}}}, uintLabel("bucket", 8)},
	}}}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"lat_seconds": m}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	want := "probe_exporter_lat_seconds dev=8 0.5:0 1:3 2:3 4:7 8:7 count=7 sum=50\n" +
		"probe_exporter_lat_seconds dev=9 0.5:1 1:1 2:1 4:1 8:1 count=1 sum=0\n"
	if got := scrape(t, c, "probe_exporter_lat_seconds"); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestHistSpec(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       config.Histogram
		bounds  []float64
		sumKey  float64
		wantErr string
	}{
		{"exp2", config.Histogram{BucketType: "exp2", BucketMin: 0, BucketMax: 3}, []float64{1, 2, 4, 8}, 4, ""},
		{"exp2 multiplier", config.Histogram{BucketType: "exp2", BucketMin: 1, BucketMax: 2, BucketMultiplier: 1e-6}, []float64{2e-6, 4e-6}, 3, ""},
		{"exp2zero", config.Histogram{BucketType: "exp2zero", BucketMin: 0, BucketMax: 3}, []float64{0, 1, 2, 4}, 4, ""},
		{"linear", config.Histogram{BucketType: "linear", BucketMin: 0, BucketMax: 2, BucketMultiplier: 10}, []float64{0, 10, 20}, 3, ""},
		{"fixed", config.Histogram{BucketType: "fixed", BucketKeys: []float64{1, 5, 10}, BucketMultiplier: 2}, []float64{2, 10, 20}, 11, ""},
		{"fixed unsorted", config.Histogram{BucketType: "fixed", BucketKeys: []float64{5, 1}}, nil, 0, "must increase"},
		{"empty range", config.Histogram{BucketType: "exp2", BucketMin: 3, BucketMax: 3}, nil, 0, "must be above"},
		{"bad type", config.Histogram{BucketType: "log10", BucketMax: 3}, nil, 0, "unknown bucket_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newHistSpec(tc.h)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(s.bounds) != len(tc.bounds) {
				t.Fatalf("bounds %v, want %v", s.bounds, tc.bounds)
			}
			for i := range s.bounds {
				if diff := s.bounds[i] - tc.bounds[i]; diff > 1e-12 || diff < -1e-12 {
					t.Fatalf("bounds %v, want %v", s.bounds, tc.bounds)
				}
			}
			if s.sumKey != tc.sumKey {
				t.Fatalf("sum key %v, want %v", s.sumKey, tc.sumKey)
			}
		})
	}
}

func TestKeySizeMismatch(t *testing.T) {
	m := newMap(t, ebpf.Hash, 16, 8)
	cfg := config.Config{Name: "t", Path: "/etc/x/t.yaml", Metrics: config.Metrics{Counters: []config.Counter{{
		Name: "c", Help: "h", Line: 7, Labels: []config.Label{uintLabel("a", 4), uintLabel("b", 8)},
	}}}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"c": m}))
	want := `/etc/x/t.yaml:7: metric "c": labels take 12 bytes (sizes + padding) but map "c" has 16-byte keys`
	if cc.Err == nil || cc.Err.Error() != want {
		t.Fatalf("error %v\nwant %s", cc.Err, want)
	}
	cfg.Metrics.Counters[0].Name = "missing"
	cc = c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"c": m}))
	if cc.Err == nil || !strings.Contains(cc.Err.Error(), `/etc/x/t.yaml:7: metric "missing": the object has no map "missing" (it has: c)`) {
		t.Fatalf("error %v", cc.Err)
	}
}

// TestWrappingLabelSizes: sizes whose sum wraps around 2^64 to the key
// size are refused, and scraping the other configs goes on.
func TestWrappingLabelSizes(t *testing.T) {
	m := newMap(t, ebpf.Hash, 8, 8)
	cfg := config.Config{Name: "t", Path: "/etc/x/t.yaml", Metrics: config.Metrics{Counters: []config.Counter{{
		Name: "c", Help: "h", Line: 3, Labels: []config.Label{uintLabel("a", 12), uintLabel("b", ^uint(0)-3)},
	}}}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"c": m}))
	if cc.Err == nil || !strings.Contains(cc.Err.Error(), `/etc/x/t.yaml:3: metric "c": label "b": size 18446744073709551612`) {
		t.Fatalf("error %v", cc.Err)
	}
	m.Put(u64(1), u64(5))
	c.SetConfigs([]*Config{cc})
	scrape(t, c) // must not panic
}

func TestConcurrentScrapes(t *testing.T) {
	m := newMap(t, ebpf.Hash, 4, 1024)
	for i := uint32(0); i < 500; i++ {
		put(t, m, u32(i), uint64(i))
	}
	cfg := config.Config{Name: "t", Metrics: config.Metrics{Counters: []config.Counter{{Name: "c", Help: "h", Labels: []config.Label{uintLabel("k", 4)}}}}}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"c": m}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	done := make(chan int, 8)
	for i := 0; i < 8; i++ {
		go func() {
			n := 0
			for j := 0; j < 20; j++ {
				mfs, err := c.Gather()
				if err != nil || len(mfs) != 1 {
					t.Errorf("gather: %v %v", mfs, err)
					return
				}
				n = len(mfs[0].Metric)
			}
			done <- n
		}()
	}
	for i := 0; i < 8; i++ {
		if n := <-done; n != 500 {
			t.Fatalf("scrape saw %d series, want 500", n)
		}
	}
}

func strconvF(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func itoa(i int) string { return strconv.Itoa(i) }
