package collector

import (
	"encoding/binary"
	"math"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/probe-exporter/probe_exporter/config"
)

// nativeSpec is the native histogram form of an exp2 or exp2zero
// histogram whose bounds are powers of two (bucket_multiplier 2^e, 1 when
// unset). Such a classic bucket with bound 2^i counts values in
// (2^(i-1), 2^i], exactly bucket i of a native histogram of schema 0, so
// the same counts are exposed both ways: classic buckets for every format,
// plus the native buckets in protobuf, the format Prometheus asks for when
// it ingests native histograms.
//
// Other multipliers (0.000001 for microseconds to seconds) put the bounds
// between schema 0's, and linear and fixed buckets need custom-bucket
// native histograms (schema -53, Prometheus 3.x); those histograms stay
// classic only.
type nativeSpec struct {
	// zeroSlot is the slot counted in the zero bucket (exp2zero's key 0,
	// bound 0), or -1.
	zeroSlot int
	// first is the first slot of a positive bucket; slot s is native
	// bucket index+(s-first).
	first int
	index int32
	// threshold is the zero bucket's upper bound: the lower bound of the
	// lowest native bucket, so the buckets are contiguous from 0 and
	// Prometheus reads the histogram as native even when it is empty.
	threshold float64
}

// nativeSchema is the schema of the native buckets: bucket i covers
// (2^(i-1), 2^i].
const nativeSchema = 0

func newNativeSpec(h config.Histogram, nslots int) *nativeSpec {
	if h.BucketType != config.BucketExp2 && h.BucketType != config.BucketExp2Zero {
		return nil
	}
	m := h.Multiplier()
	frac, exp := math.Frexp(m)
	if m <= 0 || frac != 0.5 {
		return nil // not a power of two
	}
	e := exp - 1 // m = 2^e
	n := &nativeSpec{zeroSlot: -1}
	// Classic bound of key k: exp2: 2^(k+e); exp2zero: 0 for k = 0, else
	// 2^(k-1+e).
	idx := h.BucketMin + e
	if h.BucketType == config.BucketExp2Zero {
		if h.BucketMin == 0 {
			n.zeroSlot, n.first = 0, 1
		}
		idx = h.BucketMin + n.first - 1 + e
	}
	top := idx + nslots - 1 - n.first
	// Bounds that are not finite, non-zero doubles, or indexes beyond
	// int32, have no native bucket.
	if n.first >= nslots || idx-1 < -1074 || top > 1023 {
		return nil
	}
	n.index = int32(idx)
	n.threshold = math.Ldexp(1, idx-1)
	return n
}

// bucketSpan is a run of consecutive native buckets, offset from the end of
// the previous run (the first: from index 0).
type bucketSpan struct {
	offset int32
	length uint32
}

// layout returns the zero bucket's count and the positive spans and count
// deltas of one series from its cumulative counts, laid out as client_golang
// lays out a const native histogram (prometheus.NewConstNativeHistogram):
// buckets with counts, a gap of one or two empty buckets written as zeros,
// longer gaps starting a new span. spans and deltas are reused.
func (n *nativeSpec) layout(cum []uint64, spans []bucketSpan, deltas []int64) (uint64, []bucketSpan, []int64) {
	spans, deltas = spans[:0], deltas[:0]
	var zero uint64
	raw := func(s int) uint64 {
		if s == 0 {
			return cum[0]
		}
		return cum[s] - cum[s-1]
	}
	if n.zeroSlot >= 0 {
		zero = raw(n.zeroSlot)
	}
	var prev int64
	next := int32(0)
	for s := n.first; s < len(cum); s++ {
		c := raw(s)
		if c == 0 {
			continue
		}
		i := n.index + int32(s-n.first)
		gap := i - next
		if len(spans) == 0 || gap > 2 {
			spans = append(spans, bucketSpan{offset: gap})
		} else {
			for ; gap > 0; gap-- {
				spans[len(spans)-1].length++
				deltas = append(deltas, -prev)
				prev = 0
			}
		}
		spans[len(spans)-1].length++
		deltas = append(deltas, int64(c)-prev)
		prev = int64(c)
		next = i + 1
	}
	return zero, spans, deltas
}

// addDTO sets the native fields of h.
func (n *nativeSpec) addDTO(h *dto.Histogram, cum []uint64) {
	zero, spans, deltas := n.layout(cum, nil, nil)
	h.Schema = proto.Int32(nativeSchema)
	h.ZeroThreshold = proto.Float64(n.threshold)
	h.ZeroCount = proto.Uint64(zero)
	for _, s := range spans {
		h.PositiveSpan = append(h.PositiveSpan, &dto.BucketSpan{Offset: proto.Int32(s.offset), Length: proto.Uint32(s.length)})
	}
	h.PositiveDelta = deltas
}

// Protobuf field tags of the native fields of io.prometheus.client.Histogram.
const (
	tagHistSchema        = 5<<3 | 0 // sint32
	tagHistZeroThreshold = 6<<3 | 1
	tagHistZeroCount     = 7<<3 | 0
	tagHistPositiveSpan  = 12<<3 | 2
	tagHistPositiveDelta = 13<<3 | 0 // sint64, not packed (proto2)
	tagSpanOffset        = 1<<3 | 0  // sint32
	tagSpanLength        = 2<<3 | 0
)

func zigzag(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

func spanSize(s bucketSpan) int {
	return 1 + varintSize(zigzag(int64(s.offset))) + 1 + varintSize(uint64(s.length))
}

// protoNative returns the encoded size of the native fields of a series
// with cumulative counts cum and, if write, appends them to b, in field
// order after the classic ones (as proto.Marshal writes them).
func (sw *streamWriter) protoNative(n *nativeSpec, cum []uint64, write bool) int {
	var zero uint64
	zero, sw.spans, sw.deltas = n.layout(cum, sw.spans, sw.deltas)
	size := 2 + 9 + 1 + varintSize(zero)
	for _, s := range sw.spans {
		size += lenField(spanSize(s))
	}
	for _, d := range sw.deltas {
		size += 1 + varintSize(zigzag(d))
	}
	if !write {
		return size
	}
	b := append(sw.buf, tagHistSchema, byte(zigzag(nativeSchema)), tagHistZeroThreshold)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(n.threshold))
	b = binary.AppendUvarint(append(b, tagHistZeroCount), zero)
	for _, s := range sw.spans {
		b = binary.AppendUvarint(append(b, tagHistPositiveSpan), uint64(spanSize(s)))
		b = binary.AppendUvarint(append(b, tagSpanOffset), zigzag(int64(s.offset)))
		b = binary.AppendUvarint(append(b, tagSpanLength), uint64(s.length))
	}
	for _, d := range sw.deltas {
		b = binary.AppendUvarint(append(b, tagHistPositiveDelta), zigzag(d))
	}
	sw.buf = b
	return size
}
