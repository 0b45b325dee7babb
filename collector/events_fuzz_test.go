package collector

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/probe-exporter/probe_exporter/config"
)

// FuzzEventRecords feeds records of any length and content (as a BPF
// program fed by other users' syscalls may send them) to a counter and a
// histogram with string, uint and hex labels and a bound of 8 label sets:
// no panic, every record is counted, dropped as malformed or over the
// bound, or dropped by the regexp, and the frames convert to metric
// families. The input is split into records at each 0xff byte.
func FuzzEventRecords(f *testing.F) {
	f.Add([]byte("comm\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08\xff"))
	f.Add([]byte("short\xff\xff"))
	f.Add([]byte("\xc3\x28invalid-utf8\"\\\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xffx"))
	f.Add(make([]byte, 300))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := testEventBuilder(8)
		labels := []config.Label{
			{Name: "comm", Size: 16, Decoders: []config.Decoder{{Name: "string"}, {Name: "regexp", Regexps: []string{"^[^z]"}}}},
			{Name: "n", Size: 2, Padding: 2, Decoders: []config.Decoder{{Name: "uint"}}},
			{Name: "h", Size: 4, Decoders: []config.Decoder{{Name: "hex"}}},
		}
		count, err := b.newEventMetric("f", "ev", kindCounter, "probe_exporter_f_total", "f", labels, nil, nil, nil, 0, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		h := &config.Histogram{BucketType: config.BucketExp2, BucketMin: 0, BucketMax: 20}
		hist, err := b.newEventMetric("f", "ev", kindHistogram, "probe_exporter_f_hist", "f", labels, &config.EventValue{Offset: 24, Size: 8}, nil, h, 0, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		records := 0
		start := 0
		for i := 0; i <= len(data); i++ {
			if i == len(data) || data[i] == 0xff {
				count.Record(data[start:i])
				hist.Record(data[start:i])
				records++
				start = i + 1
			}
		}
		now := time.Now()
		frames := hist.collect(count.collect(nil, now), now)
		var counted float64
		for _, fr := range frames {
			mf := fr.toDTO()
			for _, m := range mf.GetMetric() {
				if c := m.GetCounter(); c != nil {
					counted += c.GetValue()
				}
			}
		}
		dropped := testutil.ToFloat64(b.eventsDropped.WithLabelValues("f", "probe_exporter_f_total", droppedMalformed)) +
			testutil.ToFloat64(b.eventsDropped.WithLabelValues("f", "probe_exporter_f_total", droppedOverLimit))
		if counted+dropped > float64(records) {
			t.Fatalf("%v counted + %v dropped of %d records", counted, dropped, records)
		}
		if n := count.mm.series.len(); n > 8 {
			t.Fatalf("%d label sets, bound 8", n)
		}
	})
}
