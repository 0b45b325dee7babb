package collector

import (
	"encoding/binary"
	"io"
	"math"
	"math/bits"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// wireFormat is how map families are written.
type wireFormat int

const (
	wireText        wireFormat = iota // text 0.0.4
	wireOpenMetrics                   // OpenMetrics 0.0.1 and 1.0.0
	wireProtoDelim                    // length-delimited protobuf MetricFamily
	wireOther                         // built as dto and handed to expfmt
)

func wireFormatOf(f expfmt.Format) wireFormat {
	switch f.FormatType() {
	case expfmt.TypeTextPlain:
		return wireText
	case expfmt.TypeProtoDelim:
		return wireProtoDelim
	case expfmt.TypeOpenMetrics:
		if v := f.Version(); v == expfmt.OpenMetricsVersion_1_0_0 || v == expfmt.OpenMetricsVersion_0_0_1 {
			return wireOpenMetrics
		}
	}
	return wireOther
}

// streamWriter writes map families straight from frames, byte for byte as
// client_golang's expfmt encoders write the same families (text,
// OpenMetrics 1.0) or as the same protobuf messages (delimited protobuf),
// through one reused buffer and without building a dto object per series.
//
// Native histograms (nativeSpec) are written by the protobuf writer only,
// next to their classic buckets; the text formats write the classic
// buckets, as client_golang's encoders do. A new kind of family (several
// values per key) adds its values to frame, a case to each writer, and,
// where a format cannot carry it, the same fallback as metrics with
// escaped names: frame.toDTO and expfmt. TestHandlerMatchesClientGolang
// then holds it to client_golang's output.
type streamWriter struct {
	w       io.Writer
	buf     []byte
	err     error
	scratch []byte
	sizes   []int // protobuf: encoded size of each series' Metric
	// protobuf native histograms: one series' spans and deltas.
	spans  []bucketSpan
	deltas []int64
}

const streamFlushAt = 32 << 10

func (sw *streamWriter) flush() error {
	if sw.err == nil && len(sw.buf) > 0 {
		_, sw.err = sw.w.Write(sw.buf)
	}
	sw.buf = sw.buf[:0]
	return sw.err
}

func (sw *streamWriter) maybeFlush() {
	if len(sw.buf) >= streamFlushAt {
		sw.flush()
	}
}

// writeFamily writes one family made of frames of the same name and kind
// (one per config defining it); it writes nothing if no frame has series.
func (sw *streamWriter) writeFamily(format wireFormat, frames []*frame) error {
	n := 0
	for _, f := range frames {
		n += len(f.ids)
	}
	if n == 0 {
		return sw.err
	}
	switch format {
	case wireText:
		sw.writeTextHeader(frames[0].mm)
		for _, f := range frames {
			sw.writeTextSamples(f, false)
		}
	case wireOpenMetrics:
		sw.writeOpenMetricsHeader(frames[0].mm)
		for _, f := range frames {
			sw.writeTextSamples(f, true)
		}
	case wireProtoDelim:
		sw.writeProto(frames)
	}
	return sw.flush()
}

func (sw *streamWriter) writeTextHeader(mm *mapMetric) {
	b := append(sw.buf, "# HELP "...)
	b = append(b, mm.name...)
	b = append(b, ' ')
	b = appendEscaped(b, mm.help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, mm.name...)
	switch mm.kind {
	case kindCounter:
		b = append(b, " counter\n"...)
	case kindGauge:
		b = append(b, " gauge\n"...)
	case kindHistogram:
		b = append(b, " histogram\n"...)
	}
	sw.buf = b
}

// writeOpenMetricsHeader writes HELP and TYPE as expfmt does: a counter
// named *_total is described without the suffix; other counters are of
// type unknown.
func (sw *streamWriter) writeOpenMetricsHeader(mm *mapMetric) {
	name, typ := mm.name, ""
	switch mm.kind {
	case kindCounter:
		typ = " unknown\n"
		if strings.HasSuffix(name, "_total") {
			name, typ = name[:len(name)-len("_total")], " counter\n"
		}
	case kindGauge:
		typ = " gauge\n"
	case kindHistogram:
		typ = " histogram\n"
	}
	b := append(sw.buf, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = appendEscaped(b, mm.help, true)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	sw.buf = append(b, typ...)
}

func (sw *streamWriter) writeTextSamples(f *frame, om bool) {
	mm := f.mm
	appendFloat := appendTextFloat
	if om {
		appendFloat = appendOpenMetricsFloat
	}
	if mm.hist == nil {
		for i := range f.ids {
			b := append(sw.buf, mm.name...)
			if blk := f.block(i); len(blk) > 0 {
				b = append(append(append(b, '{'), blk...), '}')
			}
			b = append(b, ' ')
			b = appendFloat(b, f.vals[i])
			sw.buf = append(b, '\n')
			sw.maybeFlush()
		}
		return
	}
	les := mm.hist.leText
	if om {
		les = mm.hist.leOpenMetrics
	}
	nb := len(mm.hist.bounds)
	for i := range f.ids {
		blk := f.block(i)
		counts := f.counts[i*nb : (i+1)*nb]
		b := sw.buf
		for k, le := range les {
			b = append(b, mm.name...)
			b = append(b, "_bucket{"...)
			if len(blk) > 0 {
				b = append(append(b, blk...), ',')
			}
			b = append(b, le...)
			b = append(b, ' ')
			c := counts[min(k, nb-1)] // the +Inf bucket holds the sample count
			if om {
				b = strconv.AppendUint(b, c, 10)
			} else {
				b = appendTextFloat(b, float64(c))
			}
			b = append(b, '\n')
		}
		for _, part := range [...]string{"_sum", "_count"} {
			b = append(b, mm.name...)
			b = append(b, part...)
			if len(blk) > 0 {
				b = append(append(append(b, '{'), blk...), '}')
			}
			b = append(b, ' ')
			switch {
			case part == "_sum":
				b = appendFloat(b, f.sums[i])
			case om:
				b = strconv.AppendUint(b, counts[nb-1], 10)
			default:
				b = appendTextFloat(b, float64(counts[nb-1]))
			}
			b = append(b, '\n')
		}
		sw.buf = b
		sw.maybeFlush()
	}
}

// appendTextFloat formats a value as the text format does.
func appendTextFloat(b []byte, f float64) []byte {
	switch {
	case f == 1:
		return append(b, '1')
	case f == 0:
		return append(b, '0')
	case f == -1:
		return append(b, "-1"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	case f > 0 && f < 1e6 && f == math.Trunc(f):
		// What 'g' gives for these (the exponent form starts at 1e6), faster.
		return strconv.AppendUint(b, uint64(f), 10)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendOpenMetricsFloat formats a value as OpenMetrics 1.0 does (always
// with a dot or an exponent).
func appendOpenMetricsFloat(b []byte, f float64) []byte {
	switch {
	case f == 1:
		return append(b, "1.0"...)
	case f == 0:
		return append(b, "0.0"...)
	case f == -1:
		return append(b, "-1.0"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	case f > 0 && f < 1e6 && f == math.Trunc(f):
		return append(strconv.AppendUint(b, uint64(f), 10), '.', '0')
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'g', -1, 64)
	for _, c := range b[start:] {
		if c == 'e' || c == '.' {
			return b
		}
	}
	return append(b, '.', '0')
}

// Protobuf field tags of io.prometheus.client messages (metrics.proto).
const (
	tagFamilyName   = 1<<3 | 2
	tagFamilyHelp   = 2<<3 | 2
	tagFamilyType   = 3<<3 | 0
	tagFamilyMetric = 4<<3 | 2
	tagMetricLabel  = 1<<3 | 2
	tagMetricGauge  = 2<<3 | 2
	tagMetricCount  = 3<<3 | 2
	tagMetricHist   = 7<<3 | 2
	tagLabelName    = 1<<3 | 2
	tagLabelValue   = 2<<3 | 2
	tagValue        = 1<<3 | 1 // Counter.value, Gauge.value: double
	tagHistCount    = 1<<3 | 0
	tagHistSum      = 2<<3 | 1
	tagHistBucket   = 3<<3 | 2
	tagBucketCount  = 1<<3 | 0
	tagBucketBound  = 2<<3 | 1
)

func varintSize(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func lenField(n int) int { return 1 + varintSize(uint64(n)) + n }

// writeProto writes the frames as one length-delimited MetricFamily. The
// sizes of messages come first in protobuf, so a first pass measures each
// series (label values unescaped from the block) and a second writes it.
func (sw *streamWriter) writeProto(frames []*frame) {
	mm := frames[0].mm
	typ := dto.MetricType_COUNTER
	switch mm.kind {
	case kindGauge:
		typ = dto.MetricType_GAUGE
	case kindHistogram:
		typ = dto.MetricType_HISTOGRAM
	}
	size := lenField(len(mm.name)) + lenField(len(mm.help)) + 1 + varintSize(uint64(typ))
	sw.sizes = sw.sizes[:0]
	for _, f := range frames {
		for i := range f.ids {
			n := sw.protoMetric(f, i, false)
			sw.sizes = append(sw.sizes, n)
			size += lenField(n)
		}
	}
	b := binary.AppendUvarint(sw.buf, uint64(size))
	b = appendString(b, tagFamilyName, mm.name)
	b = appendString(b, tagFamilyHelp, mm.help)
	b = binary.AppendUvarint(append(b, tagFamilyType), uint64(typ))
	sw.buf = b
	s := 0
	for _, f := range frames {
		for i := range f.ids {
			sw.buf = binary.AppendUvarint(append(sw.buf, tagFamilyMetric), uint64(sw.sizes[s]))
			sw.protoMetric(f, i, true)
			s++
			sw.maybeFlush()
		}
	}
}

// protoMetric returns the encoded size of series i's Metric message and,
// if write, appends it to the buffer.
func (sw *streamWriter) protoMetric(f *frame, i int, write bool) int {
	mm := f.mm
	size := 0
	sw.scratch = mm.blockValues(f.block(i), sw.scratch, func(k int, v []byte) {
		name := mm.names[mm.order[k]]
		lp := lenField(len(name)) + lenField(len(v))
		size += lenField(lp)
		if write {
			b := binary.AppendUvarint(append(sw.buf, tagMetricLabel), uint64(lp))
			b = appendString(b, tagLabelName, name)
			b = binary.AppendUvarint(append(b, tagLabelValue), uint64(len(v)))
			sw.buf = append(b, v...)
		}
	})
	if mm.hist == nil {
		size += lenField(9)
		if write {
			tag := byte(tagMetricCount)
			if mm.kind == kindGauge {
				tag = tagMetricGauge
			}
			b := append(sw.buf, tag, 9, tagValue)
			sw.buf = binary.LittleEndian.AppendUint64(b, math.Float64bits(f.vals[i]))
		}
		return size
	}
	nb := len(mm.hist.bounds)
	counts := f.counts[i*nb : (i+1)*nb]
	h := 1 + varintSize(counts[nb-1]) + 9
	for _, c := range counts {
		h += lenField(1 + varintSize(c) + 9)
	}
	native := 0
	if mm.hist.native != nil {
		native = sw.protoNative(mm.hist.native, counts, false)
	}
	h += native
	size += lenField(h)
	if write {
		b := binary.AppendUvarint(append(sw.buf, tagMetricHist), uint64(h))
		b = binary.AppendUvarint(append(b, tagHistCount), counts[nb-1])
		b = binary.LittleEndian.AppendUint64(append(b, tagHistSum), math.Float64bits(f.sums[i]))
		for k, c := range counts {
			b = binary.AppendUvarint(append(b, tagHistBucket), uint64(1+varintSize(c)+9))
			b = binary.AppendUvarint(append(b, tagBucketCount), c)
			b = binary.LittleEndian.AppendUint64(append(b, tagBucketBound), math.Float64bits(mm.hist.bounds[k]))
		}
		sw.buf = b
		if native > 0 {
			sw.protoNative(mm.hist.native, counts, true)
		}
	}
	return size
}

func appendString(b []byte, tag byte, s string) []byte {
	b = binary.AppendUvarint(append(b, tag), uint64(len(s)))
	return append(b, s...)
}
