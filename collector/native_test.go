package collector

import (
	"bytes"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/probe-exporter/probe_exporter/config"
)

// time0: the maps have no start time.
var time0 time.Time

const acceptProto = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"

// TestNativeSpec: which bucket types and multipliers have a native form,
// and every classic bound of a slot is exactly the upper bound 2^i of its
// schema 0 bucket.
func TestNativeSpec(t *testing.T) {
	for _, tc := range []struct {
		name      string
		h         config.Histogram
		native    bool
		zeroSlot  int
		index     int32
		threshold float64
	}{
		{"exp2", config.Histogram{BucketType: "exp2", BucketMin: 0, BucketMax: 3}, true, -1, 0, 0.5},
		{"exp2 from 3", config.Histogram{BucketType: "exp2", BucketMin: 3, BucketMax: 9}, true, -1, 3, 4},
		{"exp2 KiB", config.Histogram{BucketType: "exp2", BucketMin: 0, BucketMax: 15, BucketMultiplier: 1024}, true, -1, 10, 512},
		{"exp2 halves", config.Histogram{BucketType: "exp2", BucketMin: 0, BucketMax: 4, BucketMultiplier: 0.5}, true, -1, -1, 0.25},
		{"exp2 2^-30", config.Histogram{BucketType: "exp2", BucketMin: 0, BucketMax: 40, BucketMultiplier: math.Ldexp(1, -30)}, true, -1, -30, math.Ldexp(1, -31)},
		{"exp2zero", config.Histogram{BucketType: "exp2zero", BucketMin: 0, BucketMax: 5}, true, 0, 0, 0.5},
		{"exp2zero from 2", config.Histogram{BucketType: "exp2zero", BucketMin: 2, BucketMax: 5, BucketMultiplier: 4}, true, -1, 3, 4},
		{"exp2 microseconds", config.Histogram{BucketType: "exp2", BucketMin: 0, BucketMax: 26, BucketMultiplier: 1e-6}, false, 0, 0, 0},
		{"exp2 times 3", config.Histogram{BucketType: "exp2", BucketMin: 0, BucketMax: 3, BucketMultiplier: 3}, false, 0, 0, 0},
		{"exp2 negative", config.Histogram{BucketType: "exp2", BucketMin: 0, BucketMax: 3, BucketMultiplier: -2}, false, 0, 0, 0},
		{"exp2 beyond doubles", config.Histogram{BucketType: "exp2", BucketMin: 1000, BucketMax: 1030}, false, 0, 0, 0},
		{"linear", config.Histogram{BucketType: "linear", BucketMin: 0, BucketMax: 3, BucketMultiplier: 2}, false, 0, 0, 0},
		{"fixed", config.Histogram{BucketType: "fixed", BucketKeys: []float64{1, 2, 4}}, false, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newHistSpec(tc.h)
			if err != nil {
				t.Fatal(err)
			}
			n := s.native
			if !tc.native {
				if n != nil {
					t.Fatalf("native %+v, want none", *n)
				}
				return
			}
			if n == nil {
				t.Fatal("no native form")
			}
			if n.zeroSlot != tc.zeroSlot || n.index != tc.index || n.threshold != tc.threshold {
				t.Fatalf("zero slot %d, index %d, threshold %v; want %d, %d, %v", n.zeroSlot, n.index, n.threshold, tc.zeroSlot, tc.index, tc.threshold)
			}
			if n.zeroSlot >= 0 && s.bounds[n.zeroSlot] != 0 {
				t.Fatalf("zero slot's bound is %v", s.bounds[n.zeroSlot])
			}
			for slot := n.first; slot < len(s.bounds); slot++ {
				i := int(n.index) + slot - n.first
				if want := math.Ldexp(1, i); s.bounds[slot] != want {
					t.Fatalf("slot %d: classic bound %v, native bucket %d ends at %v", slot, s.bounds[slot], i, want)
				}
			}
			if n.threshold != math.Ldexp(1, int(n.index)-1) {
				t.Fatalf("threshold %v is not the lower bound of bucket %d", n.threshold, n.index)
			}
		})
	}
}

// nativeFixture: histograms with and without a native form, over real
// kernel maps. Bucket counts per key (absent keys count 0) and the sum.
type nativeCase struct {
	hist    config.Histogram
	series  map[uint32]map[uint64]uint64 // dev -> bucket key -> count (the sum key included)
	bounds  []float64
	zeroKey int64 // the key counted in the zero bucket, or -1
	index   int   // native index of the key after zeroKey / bucket_min
	native  bool
}

var nativeCases = []nativeCase{
	{
		// Gaps of one, two and more empty buckets; an empty histogram;
		// the top bucket.
		hist: config.Histogram{Name: "io_bytes", Help: "exp2 KiB", BucketType: config.BucketExp2, BucketMin: 0, BucketMax: 12, BucketMultiplier: 1024},
		series: map[uint32]map[uint64]uint64{
			1: {0: 5, 2: 3, 5: 7, 6: 7, 7: 2, 11: 1, 13: 123456},
			2: {13: 0},
			3: {12: 9, 13: 1 << 40},
			4: {1: 1, 3: 1, 6: 1, 12: 1},
		},
		zeroKey: -1, index: 10, native: true,
	},
	{
		hist: config.Histogram{Name: "waits", Help: "exp2zero", BucketType: config.BucketExp2Zero, BucketMin: 0, BucketMax: 6},
		series: map[uint32]map[uint64]uint64{
			1: {0: 4, 1: 2, 3: 1, 7: 9},
			2: {0: 3, 7: 0},
			3: {6: 2, 7: 64},
		},
		zeroKey: 0, index: 0, native: true,
	},
	{
		hist:   config.Histogram{Name: "lat_seconds", Help: "exp2 microseconds", BucketType: config.BucketExp2, BucketMin: 0, BucketMax: 4, BucketMultiplier: 1e-6},
		series: map[uint32]map[uint64]uint64{1: {0: 1, 3: 2, 5: 40}},
	},
	{
		hist:   config.Histogram{Name: "lengths", Help: "linear", BucketType: config.BucketLinear, BucketMin: 0, BucketMax: 4, BucketMultiplier: 2},
		series: map[uint32]map[uint64]uint64{1: {0: 1, 3: 2, 5: 40}},
	},
}

func nativeFixture(t *testing.T) *Collector {
	t.Helper()
	cfg := config.Config{Name: "t"}
	maps := map[string]*ebpf.Map{}
	for _, tc := range nativeCases {
		m := newMap(t, ebpf.Hash, 16, 256)
		for dev, buckets := range tc.series {
			for k, v := range buckets {
				put(t, m, cat(u32(dev), u32(0), u64(k)), v)
			}
		}
		h := tc.hist
		h.Labels = []config.Label{{Name: "dev", Size: 4, Padding: 4, Decoders: []config.Decoder{{Name: "uint"}}}, uintLabel("bucket", 8)}
		cfg.Metrics.Histograms = append(cfg.Metrics.Histograms, h)
		maps[h.Name] = m
	}
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, maps))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	return c
}

// want builds, with client_golang, the family a case must produce: a
// const histogram (classic buckets) and, for the native cases, a const
// native histogram of schema 0 over the same counts, in one Histogram.
func (tc nativeCase) want(t *testing.T, withNative bool) *dto.MetricFamily {
	t.Helper()
	h := tc.hist
	spec, err := newHistSpec(h)
	if err != nil {
		t.Fatal(err)
	}
	name := "probe_exporter_" + h.Name
	desc := prometheus.NewDesc(name, h.Help, []string{"dev"}, nil)
	mf := &dto.MetricFamily{Name: proto.String(name), Help: proto.String(h.Help), Type: dto.MetricType_HISTOGRAM.Enum()}
	for dev := uint32(1); int(dev) <= len(tc.series); dev++ {
		keys := tc.series[dev]
		sumKey := uint64(h.BucketMax + 1)
		cum := map[float64]uint64{}
		positive := map[int]int64{}
		var count, zero uint64
		for k := h.BucketMin; k <= h.BucketMax; k++ {
			c := keys[uint64(k)]
			count += c
			cum[spec.bounds[k-h.BucketMin]] = count
			switch {
			case c == 0:
			case int64(k) == tc.zeroKey:
				zero += c
			default:
				first := h.BucketMin
				if tc.zeroKey >= 0 {
					first = int(tc.zeroKey) + 1
				}
				positive[tc.index+k-first] = int64(c)
			}
		}
		sum := float64(keys[sumKey]) * h.Multiplier()
		classic := prometheus.MustNewConstHistogram(desc, count, sum, cum, itoa(int(dev)))
		var m dto.Metric
		if err := classic.Write(&m); err != nil {
			t.Fatal(err)
		}
		if tc.native && withNative {
			threshold := math.Ldexp(1, tc.index-1)
			native := prometheus.MustNewConstNativeHistogram(desc, count, sum, positive, nil, zero, 0, threshold, time0, itoa(int(dev)))
			var nm dto.Metric
			if err := native.Write(&nm); err != nil {
				t.Fatal(err)
			}
			nh := proto.Clone(nm.Histogram).(*dto.Histogram)
			nh.CreatedTimestamp = nil // the maps have no start time
			nh.Bucket = m.Histogram.Bucket
			m.Histogram = nh
		}
		mf.Metric = append(mf.Metric, &m)
	}
	return mf
}

// TestNativeMatchesClientGolang: in protobuf, exp2 and exp2zero histograms
// with power-of-two bounds are the classic histogram plus the native one,
// exactly as client_golang builds them from the same counts; the others
// are classic only. Text and OpenMetrics are classic only, byte for byte
// what client_golang writes for the classic histograms.
func TestNativeMatchesClientGolang(t *testing.T) {
	c := nativeFixture(t)
	srv := httptest.NewServer(c.Handler(prometheus.NewRegistry(), HandlerOpts{EnableOpenMetrics: true}))
	defer srv.Close()
	hdr, body := fetch(t, srv.URL, acceptProto, "")
	got := map[string]*dto.MetricFamily{}
	for _, mf := range parse(t, body, expfmt.ResponseFormat(hdr)) {
		got[mf.GetName()] = mf
	}
	for _, tc := range nativeCases {
		want := tc.want(t, true)
		g := got[want.GetName()]
		if !proto.Equal(g, want) {
			t.Errorf("%s:\ngot  %v\nwant %v", want.GetName(), g, want)
		}
		for _, m := range g.GetMetric() {
			if (m.GetHistogram().Schema != nil) != tc.native {
				t.Errorf("%s: native %v, want %v", want.GetName(), m.GetHistogram().Schema != nil, tc.native)
			}
		}
		for _, format := range []expfmt.Format{expfmt.FmtText, expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtOpenMetrics_0_0_1} {
			var buf bytes.Buffer
			enc := expfmt.NewEncoder(&buf, format)
			if err := enc.Encode(tc.want(t, false)); err != nil {
				t.Fatal(err)
			}
			if cl, ok := enc.(expfmt.Closer); ok {
				cl.Close()
			}
			_, body := fetch(t, srv.URL+"?name[]="+want.GetName(), string(format), "")
			if !bytes.Equal(body, buf.Bytes()) {
				t.Errorf("%s in %s:\n%s", want.GetName(), format, lineDiff(string(body), buf.String()))
			}
		}
	}
}

// TestNativeHandlerMatchesPromhttp: the streamed protobuf of native
// histograms is the message client_golang's encoders make of the same
// families (through the Gatherer), in every format and encoding.
func TestNativeHandlerMatchesPromhttp(t *testing.T) {
	c := nativeFixture(t)
	reg := prometheus.NewRegistry()
	ref := httptest.NewServer(promhttp.HandlerFor(prometheus.Gatherers{reg, c}, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	defer ref.Close()
	srv := httptest.NewServer(c.Handler(reg, HandlerOpts{EnableOpenMetrics: true}))
	defer srv.Close()
	for _, accept := range []string{
		acceptProto,
		acceptProto + ";q=0.7,text/plain;q=0.1",
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=compact-text",
		"text/plain;version=0.0.4",
		"application/openmetrics-text;version=1.0.0",
	} {
		for _, encoding := range []string{"", "gzip"} {
			wantHdr, want := fetch(t, ref.URL, accept, encoding)
			gotHdr, body := fetch(t, srv.URL, accept, encoding)
			if g, w := gotHdr.Get("Content-Type"), wantHdr.Get("Content-Type"); g != w {
				t.Errorf("%s: Content-Type %q, want %q", accept, g, w)
			}
			format := expfmt.ResponseFormat(gotHdr)
			if format.FormatType() == expfmt.TypeProtoDelim {
				equalFamilies(t, parse(t, body, format), parse(t, want, format))
				continue
			}
			if !bytes.Equal(body, want) {
				t.Errorf("%s: body differs\n%s", accept, lineDiff(string(body), string(want)))
			}
			if strings.HasPrefix(accept, "text/") && strings.Contains(string(body), "schema") {
				t.Errorf("%s: native fields in text", accept)
			}
		}
	}
}
