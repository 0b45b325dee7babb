package collector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/loader"
)

// Multi-value maps: a map whose value is a struct (`struct { u64 count;
// u64 bytes; }`) exports one family per field listed in the config's
// values. The map is read once per scrape; its keys are decoded once and
// the fields' families share the label blocks of the first.

// valueField is one field of a struct value.
type valueField struct {
	offset, size int
	// mm is the family the field is exported as: the map's own mapMetric
	// for the first field, a family of its own (name, help, kind; the
	// label names and order shared) for the others.
	mm *mapMetric
}

// read returns the field of one value, native byte order, unsigned.
func (f valueField) read(v []byte) uint64 {
	b := v[f.offset : f.offset+f.size]
	switch f.size {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.NativeEndian.Uint16(b))
	case 4:
		return uint64(binary.NativeEndian.Uint32(b))
	}
	return binary.NativeEndian.Uint64(b)
}

// nvals is the number of values kept per series: one, or one per field.
func (mm *mapMetric) nvals() int {
	if len(mm.fields) == 0 {
		return 1
	}
	return len(mm.fields)
}

// newValuesMetric sets up the families of a counter or gauge entry with
// values: its map must exist and every field lie within its values.
func (b *configBuilder) newValuesMetric(obj *loader.Object, kind metricKind, m config.Counter) (*mapMetric, error) {
	where := func(line int) string {
		if line == 0 {
			line = m.Line
		}
		return fmt.Sprintf("%s:%d", path(obj.Config), line)
	}
	bm := obj.Map(m.MapName())
	if bm == nil {
		return nil, fmt.Errorf("%s: metric %q: the object has no map %q (it has: %s)", where(m.Line), m.Name, m.MapName(), strings.Join(mapNames(obj), ", "))
	}
	valueSize := int(bm.ValueSize())
	for _, v := range m.Values {
		if end := int(v.Offset + v.Size); end > valueSize {
			return nil, fmt.Errorf("%s: metric %q: value %q takes bytes %d-%d but map %q has %d-byte values", where(v.Line), m.Name, v.Name, v.Offset, end-1, m.MapName(), valueSize)
		}
	}
	reader, err := newRawMapReader(bm)
	if err != nil {
		return nil, fmt.Errorf("%s: metric %q: %w", where(m.Line), m.Name, err)
	}
	fieldKind := func(v config.Value) metricKind {
		switch v.Type {
		case config.ValueCounter:
			return kindCounter
		case config.ValueGauge:
			return kindGauge
		}
		return kind
	}
	fq := func(name string) string { return prometheus.BuildFQName(b.prefix, "", name) }
	first := m.Values[0]
	mm, err := newMapMetricOn(reader, fieldKind(first), fq(first.Name), first.Help, m.Labels, nil, b.env)
	var ks errKeySize
	switch {
	case errors.As(err, &ks):
		return nil, fmt.Errorf("%s: metric %q: labels take %d bytes (sizes + padding) but map %q has %d-byte keys", where(m.Line), m.Name, ks.labels, m.MapName(), ks.key)
	case err != nil:
		return nil, fmt.Errorf("%s: metric %q: %w", where(m.Line), m.Name, err)
	}
	for i, v := range m.Values {
		fam := mm
		if i > 0 {
			name := fq(v.Name)
			fam = &mapMetric{
				name:  name,
				help:  v.Help,
				kind:  fieldKind(v),
				names: mm.names,
				order: mm.order,
				plain: mm.plain && model.LegacyValidation.IsValidMetricName(name),
			}
		}
		mm.fields = append(mm.fields, valueField{offset: int(v.Offset), size: int(v.Size), mm: fam})
	}
	if mm.expiry, err = b.newExpiry(obj.Config, mm, m.MapName(), m.Labels, m.MaxAge); err != nil {
		return nil, fmt.Errorf("%s: metric %q: %w", where(m.Line), m.Name, err)
	}
	return mm, nil
}

// addValues accounts one entry of a multi-value map: each field summed
// across CPUs (or one series per CPU when the last label is cpu).
func (mm *mapMetric) addValues(key, val []byte) error {
	stride, ncpu, nv := mm.reader.stride, mm.reader.ncpu, len(mm.fields)
	if mm.splitCPU {
		base := key
		if mm.cpuOnly {
			base = nil
		}
		for cpu := 0; cpu < ncpu; cpu++ {
			mm.keyBuf = appendUint(append(mm.keyBuf[:0], base...), uint64(cpu), mm.cpuSize)
			id, err := mm.lookup(mm.keyBuf)
			if err != nil || id < 0 {
				return err
			}
			v := val[cpu*stride : (cpu+1)*stride]
			for j, f := range mm.fields {
				mm.vals[int(id)*nv+j] += float64(f.read(v))
			}
		}
		return nil
	}
	id, err := mm.lookup(key)
	if err != nil || id < 0 {
		return err
	}
	for j, f := range mm.fields {
		var sum uint64
		for cpu := 0; cpu < ncpu; cpu++ {
			sum += f.read(val[cpu*stride:])
		}
		mm.vals[int(id)*nv+j] += float64(sum)
	}
	return nil
}

// valueFrames appends the frames of the fields after the first, built
// from the first field's frame f of the same scrape: the same series,
// each field's values.
func (mm *mapMetric) valueFrames(f *frame, frames []*frame) []*frame {
	nv := len(mm.fields)
	for j := 1; j < nv; j++ {
		fam := mm.fields[j].mm
		g := &frame{mm: fam}
		fam.freeMu.Lock()
		if n := len(fam.free); n > 0 {
			g = fam.free[n-1]
			fam.free = fam.free[:n-1]
		}
		fam.freeMu.Unlock()
		g.blocks = f.blocks
		g.ids, g.vals = append(g.ids[:0], f.ids...), g.vals[:0]
		for _, id := range f.ids {
			g.vals = append(g.vals, mm.vals[int(id)*nv+j])
		}
		frames = append(frames, g)
	}
	return frames
}
