package collector

import (
	"encoding/binary"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// toDTO builds the frame's metric family for client_golang's encoders
// (the Gatherer interface, and formats not streamed). Label pairs are
// built afresh: this path allocates per series.
func (f *frame) toDTO() *dto.MetricFamily {
	mm := f.mm
	mf := &dto.MetricFamily{Name: proto.String(mm.name), Help: proto.String(mm.help), Metric: make([]*dto.Metric, len(f.ids))}
	switch mm.kind {
	case kindCounter:
		mf.Type = dto.MetricType_COUNTER.Enum()
	case kindGauge:
		mf.Type = dto.MetricType_GAUGE.Enum()
	case kindHistogram:
		mf.Type = dto.MetricType_HISTOGRAM.Enum()
	}
	metrics := make([]dto.Metric, len(f.ids))
	var scratch []byte
	for i := range f.ids {
		m := &metrics[i]
		pairs := make([]dto.LabelPair, len(mm.order))
		m.Label = make([]*dto.LabelPair, len(mm.order))
		scratch = mm.blockValues(f.block(i), scratch, func(k int, v []byte) {
			pairs[k].Name = &mm.names[mm.order[k]]
			pairs[k].Value = proto.String(string(v))
			m.Label[k] = &pairs[k]
		})
		switch mm.kind {
		case kindCounter:
			m.Counter = &dto.Counter{Value: proto.Float64(f.vals[i])}
		case kindGauge:
			m.Gauge = &dto.Gauge{Value: proto.Float64(f.vals[i])}
		case kindHistogram:
			m.Histogram = mm.hist.toDTO(f.counts[i*len(mm.hist.bounds):(i+1)*len(mm.hist.bounds)], f.sums[i])
		}
		mf.Metric[i] = m
	}
	return mf
}

func appendUint(b []byte, v uint64, size int) []byte {
	switch size {
	case 1:
		return append(b, byte(v))
	case 2:
		return binary.NativeEndian.AppendUint16(b, uint16(v))
	case 4:
		return binary.NativeEndian.AppendUint32(b, uint32(v))
	}
	return binary.NativeEndian.AppendUint64(b, v)
}
