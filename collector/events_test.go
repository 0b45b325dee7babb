package collector

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/decoder"
)

// testEventBuilder is a configBuilder whose counters are fresh.
func testEventBuilder(maxSeries int) *configBuilder {
	s := newStateCollector(&registry{}, "", Namespace)
	return &configBuilder{prefix: Namespace, env: &decoder.Env{}, decoderErrors: s.decoderErrors, expired: s.expired,
		eventsDropped: s.eventsDropped, eventsMaxSeries: maxSeries}
}

var commLabel = config.Label{Name: "comm", Size: 16, Decoders: []config.Decoder{{Name: "string"}}}

// record is a 24-byte record: comm then a u64.
func record(comm string, v uint64) []byte {
	b := make([]byte, 24)
	copy(b, comm)
	binary.NativeEndian.PutUint64(b[16:], v)
	return b
}

// frameLines renders the frames of one collect as text exposition.
func frameLines(t *testing.T, frames []*frame) string {
	t.Helper()
	var sb strings.Builder
	sw := &streamWriter{w: &sb}
	for _, f := range frames {
		if err := sw.writeFamily(wireText, []*frame{f}); err != nil {
			t.Fatal(err)
		}
	}
	return sb.String()
}

func TestBucketSlot(t *testing.T) {
	for _, tc := range []struct {
		h    config.Histogram
		vals []uint64
		want []int
	}{
		{config.Histogram{BucketType: config.BucketExp2, BucketMin: 0, BucketMax: 4},
			[]uint64{0, 1, 2, 3, 4, 5, 16, 17, 1 << 40}, []int{0, 0, 1, 2, 2, 3, 4, 4, 4}},
		{config.Histogram{BucketType: config.BucketExp2, BucketMin: 2, BucketMax: 4},
			[]uint64{0, 4, 5, 8}, []int{0, 0, 1, 1}},
		{config.Histogram{BucketType: config.BucketExp2Zero, BucketMin: 0, BucketMax: 4},
			[]uint64{0, 1, 2, 3, 4, 8, 9}, []int{0, 1, 2, 3, 3, 4, 4}},
		{config.Histogram{BucketType: config.BucketLinear, BucketMin: 1, BucketMax: 5},
			[]uint64{0, 1, 3, 5, 99}, []int{0, 0, 2, 4, 4}},
		{config.Histogram{BucketType: config.BucketFixed, BucketKeys: []float64{10, 100, 1000}},
			[]uint64{0, 10, 11, 100, 999, 5000}, []int{0, 0, 1, 1, 2, 2}},
	} {
		slot := bucketSlot(tc.h)
		for i, v := range tc.vals {
			if got := slot(v); got != tc.want[i] {
				t.Errorf("%s [%d,%d] %v: value %d in slot %d, want %d", tc.h.BucketType, tc.h.BucketMin, tc.h.BucketMax, tc.h.BucketKeys, v, got, tc.want[i])
			}
		}
	}
}

// TestEventMetric: a counter of records, a counter summing a value, a
// histogram, and values fields, fed the same records; short records are
// counted as malformed, a regexp drops records, label sets past the bound
// are dropped and counted, and raw bytes after a string's NUL share its
// series.
func TestEventMetric(t *testing.T) {
	b := testEventBuilder(2)
	labels := []config.Label{{Name: "comm", Size: 16, Decoders: []config.Decoder{{Name: "string"}, {Name: "regexp", Regexps: []string{"^[a-c]"}}}}}
	count, err := b.newEventMetric("c", "ev", kindCounter, "probe_exporter_events_total", "records", labels, nil, nil, nil, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := b.newEventMetric("c", "ev", kindCounter, "probe_exporter_bytes_total", "bytes", labels, &config.EventValue{Offset: 16, Size: 8}, nil, nil, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	h := &config.Histogram{BucketType: config.BucketExp2, BucketMin: 0, BucketMax: 3}
	hist, err := b.newEventMetric("c", "ev", kindHistogram, "probe_exporter_sizes", "sizes", labels, &config.EventValue{Offset: 16, Size: 8}, nil, h, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := b.newEventMetric("c", "ev", kindCounter, "unused", "", labels, nil, []config.Value{
		{Name: "low_total", Help: "low byte", Offset: 16, Size: 1},
		{Name: "high_total", Help: "high half", Offset: 20, Size: 4},
	}, nil, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.newEventMetric("c", "ev", kindCounter, "x", "x", labels, &config.EventValue{Offset: 96, Size: 8}, nil, nil, 0, 100); err == nil || !strings.Contains(err.Error(), "records need 104 bytes") {
		t.Errorf("value past the largest record: %v", err)
	}
	ms := []*eventMetric{count, sum, hist, vals}
	feed := func(raw []byte) {
		for _, m := range ms {
			m.Record(raw)
		}
	}
	a2 := record("a", 2)
	copy(a2[2:], "\x00garbage") // same label as "a"
	for _, r := range [][]byte{record("a", 1), a2, record("b", 5), record("b", 1<<32+9), record("zzz", 7), record("c", 1), record("c", 2), []byte("short")} {
		feed(r)
	}
	var frames []*frame
	for _, m := range ms {
		frames = m.collect(frames, time.Now())
	}
	got := frameLines(t, frames)
	for _, want := range []string{
		`probe_exporter_events_total{comm="a"} 2`,
		`probe_exporter_events_total{comm="b"} 2`,
		`probe_exporter_bytes_total{comm="a"} 3`,
		`probe_exporter_bytes_total{comm="b"} 4.29496731e+09`,
		`probe_exporter_sizes_bucket{comm="a",le="1"} 1`,
		`probe_exporter_sizes_bucket{comm="a",le="2"} 2`,
		`probe_exporter_sizes_bucket{comm="b",le="4"} 0`,
		`probe_exporter_sizes_bucket{comm="b",le="8"} 2`,
		`probe_exporter_sizes_sum{comm="b"} 4.29496731e+09`,
		`probe_exporter_sizes_count{comm="b"} 2`,
		`probe_exporter_low_total{comm="b"} 14`,
		`probe_exporter_high_total{comm="b"} 1`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(got, `"zzz"`) || strings.Contains(got, `"c"`) {
		t.Errorf("dropped or over-limit label sets served:\n%s", got)
	}
	if t.Failed() {
		t.Logf("got:\n%s", got)
	}
	for _, tc := range []struct {
		reason string
		want   float64
	}{{droppedMalformed, 1}, {droppedOverLimit, 2}} {
		if n := testutil.ToFloat64(b.eventsDropped.WithLabelValues("c", "probe_exporter_events_total", tc.reason)); n != tc.want {
			t.Errorf("%s: %v dropped, want %v", tc.reason, n, tc.want)
		}
	}
}

// TestEventMetricExpiry: a series whose process exited is served once
// more, then gone; with max_age, a series without records for that long
// is served once more, then gone, and comes back with its next record.
func TestEventMetricExpiry(t *testing.T) {
	b := testEventBuilder(0)
	exits := &fakeExits{complete: true}
	b.exits = exits
	labels := []config.Label{{Name: "pid", Size: 4, Decoders: []config.Decoder{{Name: "uint"}}, Expire: config.ExpireProcessExit}}
	m, err := b.newEventMetric("c", "ev", kindCounter, "probe_exporter_pid_events_total", "h", labels, nil, nil, nil, config.Duration(time.Minute), 100)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(pid uint32) []byte { return binary.NativeEndian.AppendUint32(nil, pid) }
	m.Record(rec(10))
	m.Record(rec(20))
	now := time.Now()
	scrape := func(at time.Time) string { return frameLines(t, m.collect(nil, at)) }
	if got := scrape(now); !strings.Contains(got, `{pid="10"} 1`) || !strings.Contains(got, `{pid="20"} 1`) {
		t.Fatalf("first scrape:\n%s", got)
	}
	exits.pids = append(exits.pids, 10)
	if got := scrape(now); !strings.Contains(got, `{pid="10"} 1`) {
		t.Errorf("exited process not served once more:\n%s", got)
	}
	if got := scrape(now); strings.Contains(got, `pid="10"`) || !strings.Contains(got, `{pid="20"} 1`) {
		t.Errorf("after its last scrape:\n%s", got)
	}
	later := now.Add(2 * time.Minute)
	if got := scrape(later); !strings.Contains(got, `{pid="20"} 1`) {
		t.Errorf("idle series not served once more:\n%s", got)
	}
	if got := scrape(later); strings.Contains(got, `pid="20"`) {
		t.Errorf("idle series still served:\n%s", got)
	}
	m.Record(rec(20))
	if got := scrape(later); !strings.Contains(got, `{pid="20"} 1`) {
		t.Errorf("series not back with a record:\n%s", got)
	}
	if n := testutil.ToFloat64(b.expired.WithLabelValues("c", "ev", expiredExit)) + testutil.ToFloat64(b.expired.WithLabelValues("c", "ev", expiredMaxAge)); n != 2 {
		t.Errorf("%v expired, want 2", n)
	}
}
