package collector

import (
	"bytes"
	"encoding/binary"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/probe-exporter/probe_exporter/config"
)

// newValueMap creates a real kernel map with valueSize-byte values.
func newValueMap(t testing.TB, typ ebpf.MapType, keySize, valueSize, maxEntries uint32) *ebpf.Map {
	t.Helper()
	spec := &ebpf.MapSpec{Type: typ, KeySize: keySize, ValueSize: valueSize, MaxEntries: maxEntries}
	if typ == ebpf.LPMTrie {
		spec.Flags = 1 // BPF_F_NO_PREALLOC, which tries need
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		t.Skipf("creating a %s map needs BPF privileges: %v", typ, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// stats is the value the tests store: struct { u64 count; u32 fd; u16
// port; u8 flag; u8 pad; }, 16 bytes.
func stats(count uint64, fd uint32, port uint16, flag uint8) []byte {
	b := binary.NativeEndian.AppendUint64(nil, count)
	b = binary.NativeEndian.AppendUint32(b, fd)
	b = binary.NativeEndian.AppendUint16(b, port)
	return append(b, flag, 0)
}

var statsValues = []config.Value{
	{Name: "reads_total", Help: "reads", Offset: 0, Size: 8},
	{Name: "last_fd", Help: "the last fd", Offset: 8, Size: 4, Type: config.ValueGauge},
	{Name: "port", Help: "a port", Offset: 12, Size: 2, Type: config.ValueGauge},
	{Name: "flags_total", Help: "flags", Offset: 14, Size: 1},
}

func valuesConfig(labels []config.Label, vals []config.Value) config.Config {
	return config.Config{Name: "t", Path: "t.yaml", Metrics: config.Metrics{Counters: []config.Counter{{
		Name: "st", Line: 3, Labels: labels, Values: vals,
	}}}}
}

func serveValues(t *testing.T, cfg config.Config, m *ebpf.Map) *Collector {
	t.Helper()
	c := New(Options{})
	cc := c.NewConfig(objectWith(cfg, map[string]*ebpf.Map{"st": m}))
	if cc.Err != nil {
		t.Fatal(cc.Err)
	}
	c.SetConfigs([]*Config{cc})
	return c
}

func TestMultiValue(t *testing.T) {
	for _, typ := range []ebpf.MapType{ebpf.Hash, ebpf.LPMTrie} { // batched, iterated
		t.Run(typ.String(), func(t *testing.T) {
			m := newValueMap(t, typ, 8, 16, 16)
			key := func(k uint32) []byte {
				if typ == ebpf.LPMTrie {
					return cat(u32(32), u32(k)) // prefix length, then the data
				}
				return cat(u32(k), u32(0))
			}
			if err := m.Put(key(1), stats(10, 3, 8080, 1)); err != nil {
				t.Fatal(err)
			}
			if err := m.Put(key(2), stats(1<<40, 7, 443, 255)); err != nil {
				t.Fatal(err)
			}
			labels := []config.Label{uintLabel("pad", 4), uintLabel("k", 4)}
			if typ != ebpf.LPMTrie {
				labels = []config.Label{{Name: "k", Size: 4, Padding: 4, Decoders: []config.Decoder{{Name: "uint"}}}}
			}
			c := serveValues(t, valuesConfig(labels, statsValues), m)
			want := "probe_exporter_flags_total k=1 1\nprobe_exporter_flags_total k=2 255\n" +
				"probe_exporter_last_fd k=1 3\nprobe_exporter_last_fd k=2 7\n" +
				"probe_exporter_port k=1 8080\nprobe_exporter_port k=2 443\n" +
				"probe_exporter_reads_total k=1 10\nprobe_exporter_reads_total k=2 1.099511627776e+12\n"
			if typ == ebpf.LPMTrie {
				want = strings.NewReplacer("k=1", "k=1 pad=32", "k=2", "k=2 pad=32").Replace(want)
			}
			for i := 0; i < 2; i++ {
				got := scrape(t, c, "probe_exporter_flags_total", "probe_exporter_last_fd", "probe_exporter_port", "probe_exporter_reads_total")
				if got != want {
					t.Fatalf("scrape %d:\n%s\nwant:\n%s", i, got, want)
				}
			}
			if err := m.Put(key(1), stats(11, 4, 8080, 1)); err != nil {
				t.Fatal(err)
			}
			got := scrape(t, c, "probe_exporter_reads_total", "probe_exporter_last_fd")
			if !strings.Contains(got, "probe_exporter_reads_total k=1") || !strings.Contains(got, " 11\n") || !strings.Contains(got, " 4\n") {
				t.Fatalf("after update:\n%s", got)
			}
		})
	}
}

func TestMultiValuePerCPU(t *testing.T) {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	// 12-byte values: the kernel lays per-CPU values out 16 bytes apart.
	m := newValueMap(t, ebpf.PerCPUHash, 4, 12, 8)
	vals := make([][12]byte, ncpu)
	var count, bytes uint64
	for cpu := range vals {
		c, b := uint64(cpu+1), uint64(100*(cpu+1))
		binary.NativeEndian.PutUint64(vals[cpu][0:], c)
		binary.NativeEndian.PutUint32(vals[cpu][8:], uint32(b))
		count, bytes = count+c, bytes+b
	}
	if err := m.Put(u32(5), vals); err != nil {
		t.Fatal(err)
	}
	two := []config.Value{{Name: "calls_total", Help: "calls", Offset: 0, Size: 8}, {Name: "bytes_total", Help: "bytes", Offset: 8, Size: 4}}
	t.Run("summed", func(t *testing.T) {
		c := serveValues(t, valuesConfig([]config.Label{uintLabel("k", 4)}, two), m)
		want := "probe_exporter_bytes_total k=5 " + fmtFloat(float64(bytes)) + "\nprobe_exporter_calls_total k=5 " + fmtFloat(float64(count)) + "\n"
		if got := scrape(t, c, "probe_exporter_calls_total", "probe_exporter_bytes_total"); got != want {
			t.Fatalf("got\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("split by cpu", func(t *testing.T) {
		c := serveValues(t, valuesConfig([]config.Label{uintLabel("k", 4), uintLabel("cpu", 4)}, two), m)
		var want strings.Builder
		for _, fam := range []struct {
			name string
			per  uint64
		}{{"bytes_total", 100}, {"calls_total", 1}} {
			for cpu := 0; cpu < ncpu; cpu++ {
				want.WriteString("probe_exporter_" + fam.name + " cpu=" + itoa(cpu) + " k=5 " + fmtFloat(float64(fam.per*uint64(cpu+1))) + "\n")
			}
		}
		if got := scrape(t, c, "probe_exporter_calls_total", "probe_exporter_bytes_total"); got != want.String() {
			t.Fatalf("got\n%s\nwant\n%s", got, want.String())
		}
	})
}

func TestMultiValueErrors(t *testing.T) {
	m := newValueMap(t, ebpf.Hash, 4, 12, 8)
	for _, tc := range []struct {
		name   string
		labels []config.Label
		vals   []config.Value
		want   string
	}{
		{"past the end", []config.Label{uintLabel("k", 4)},
			[]config.Value{{Name: "a", Help: "h", Offset: 0, Size: 8, Line: 5}, {Name: "b", Help: "h", Offset: 8, Size: 8, Line: 6}},
			`t.yaml:6: metric "st": value "b" takes bytes 8-15 but map "st" has 12-byte values`},
		{"key size", []config.Label{uintLabel("k", 8)},
			[]config.Value{{Name: "a", Help: "h", Offset: 0, Size: 8}},
			`t.yaml:3: metric "st": labels take 8 bytes (sizes + padding) but map "st" has 4-byte keys`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Options{})
			cc := c.NewConfig(objectWith(valuesConfig(tc.labels, tc.vals), map[string]*ebpf.Map{"st": m}))
			if cc.Err == nil || cc.Err.Error() != tc.want {
				t.Fatalf("error %v, want %q", cc.Err, tc.want)
			}
		})
	}
}

// TestMultiValueHandler holds the streamed families of a multi-value map
// to client_golang's output in every streamed format.
func TestMultiValueHandler(t *testing.T) {
	m := newValueMap(t, ebpf.Hash, 4, 16, 16)
	for k := uint32(0); k < 5; k++ {
		if err := m.Put(u32(k), stats(uint64(k)*1000+1, k, uint16(k*7), uint8(k))); err != nil {
			t.Fatal(err)
		}
	}
	c := serveValues(t, valuesConfig([]config.Label{uintLabel("k", 4)}, statsValues), m)
	reg := prometheus.NewRegistry()
	ref := httptest.NewServer(promhttp.HandlerFor(prometheus.Gatherers{reg, c}, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	defer ref.Close()
	got := httptest.NewServer(c.Handler(reg, HandlerOpts{EnableOpenMetrics: true}))
	defer got.Close()
	for _, accept := range []string{
		"text/plain;version=0.0.4",
		"application/openmetrics-text;version=1.0.0",
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
	} {
		wantHdr, want := fetch(t, ref.URL, accept, "")
		_, body := fetch(t, got.URL, accept, "")
		format := expfmt.ResponseFormat(wantHdr)
		if format.FormatType() != expfmt.TypeProtoDelim && !bytes.Equal(body, want) {
			t.Fatalf("%s: body differs\n%s", accept, lineDiff(string(body), string(want)))
		}
		equalFamilies(t, parse(t, body, format), parse(t, want, format))
	}
}
