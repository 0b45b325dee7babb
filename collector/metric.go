package collector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cilium/ebpf"
	dto "github.com/prometheus/client_model/go"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/decoder"
)

type metricKind int

const (
	kindCounter metricKind = iota
	kindGauge
	kindHistogram
)

// series is one label set of a metric. Raw keys that decode to the same
// labels share one series, so their values are merged.
type series struct {
	pairs []*dto.LabelPair // sorted by name, shared by every scrape
	gen   uint64           // scrape generation that last touched it
	value float64
	hist  histValue
}

// dropped is the cache value of raw keys whose label set a decoder dropped.
var dropped = &series{}

// mapMetric turns one BPF map into one metric family.
type mapMetric struct {
	name   string
	help   string
	kind   metricKind
	reader *mapReader
	// labels decode the key (for histograms: without the bucket field).
	labels *decoder.Labels
	// order sorts label values by label name.
	order []int
	names []string

	// Per-CPU maps: values are summed unless the last label is "cpu", in
	// which case each CPU is a series and the CPU number is appended to
	// the key as a cpuSize-byte integer before decoding.
	splitCPU bool
	cpuSize  int
	// noLabels: the key is a u32 0 and there are no labels.
	noLabels bool
	// cpuOnly: per-CPU map whose only label is cpu; the key is a u32 0.
	cpuOnly bool

	hist       *histSpec
	bucket     *decoder.Labels // decodes the bucket field
	bucketSize int
	bucketKeys map[string]float64

	// cache maps raw keys to their series (or dropped).
	cache  map[string]*series
	intern map[string]*series
	gen    uint64
	keyBuf []byte
	// sorted lists every interned series ordered as the registry orders
	// them (label values in label name order), so that sorting at gather
	// time finds its input already sorted; it is rebuilt when series come
	// or go.
	sorted []*series
	dirty  bool
}

// errKeySize is returned by newMapMetric when labels and key disagree.
type errKeySize struct {
	labels, key uint
}

func (e errKeySize) Error() string {
	return fmt.Sprintf("labels take %d bytes (sizes + padding) but the map's keys are %d bytes", e.labels, e.key)
}

func newMapMetric(kind metricKind, fqName, help string, labels []config.Label, m *ebpf.Map, h *config.Histogram, env *decoder.Env) (*mapMetric, error) {
	reader, err := newMapReader(m)
	if err != nil {
		return nil, err
	}
	mm := &mapMetric{
		name:   fqName,
		help:   help,
		kind:   kind,
		reader: reader,
		cache:  map[string]*series{},
		intern: map[string]*series{},
	}
	// Sizes are bounded at parse time; checked here too, so that no sum
	// can wrap into a key size that matches by accident.
	for _, l := range labels {
		if l.Size > config.MaxLabelBytes || l.Padding > config.MaxLabelBytes {
			return nil, fmt.Errorf("label %q: size %d or padding %d over %d bytes", l.Name, l.Size, l.Padding, config.MaxLabelBytes)
		}
	}
	keySize := uint(m.KeySize())
	percpu := isPerCPU(m.Type())
	keyLabels := labels
	if kind == kindHistogram {
		if len(labels) == 0 {
			return nil, errors.New("a histogram needs at least the bucket label")
		}
		bl := labels[len(labels)-1]
		mm.bucket, err = decoder.NewLabels([]config.Label{bl}, env)
		if err != nil {
			return nil, fmt.Errorf("bucket label: %w", err)
		}
		mm.bucketSize = int(bl.Size + bl.Padding)
		mm.bucketKeys = map[string]float64{}
		keyLabels = labels[:len(labels)-1]
		mm.hist, err = newHistSpec(*h)
		if err != nil {
			return nil, err
		}
	}
	if percpu && len(keyLabels) > 0 && keyLabels[len(keyLabels)-1].Name == "cpu" && kind != kindHistogram {
		mm.splitCPU = true
		mm.cpuSize = int(keyLabels[len(keyLabels)-1].Size)
		if mm.cpuSize != 1 && mm.cpuSize != 2 && mm.cpuSize != 4 && mm.cpuSize != 8 {
			return nil, fmt.Errorf("label \"cpu\" of a per-CPU map must be 1, 2, 4 or 8 bytes, not %d", mm.cpuSize)
		}
		mm.cpuOnly = len(keyLabels) == 1
	}
	mm.noLabels = len(labels) == 0

	var want uint
	for _, l := range labels {
		want += l.Size + l.Padding
	}
	if mm.splitCPU {
		want -= uint(mm.cpuSize)
		if mm.cpuOnly {
			want = 4
		}
	}
	if mm.noLabels {
		want = 4
	}
	if want != keySize {
		return nil, errKeySize{labels: want, key: keySize}
	}

	if len(keyLabels) > 0 {
		mm.labels, err = decoder.NewLabels(keyLabels, env)
		if err != nil {
			return nil, err
		}
	}
	for _, l := range keyLabels {
		mm.names = append(mm.names, l.Name)
	}
	mm.order = make([]int, len(mm.names))
	for i := range mm.order {
		mm.order[i] = i
	}
	sort.SliceStable(mm.order, func(a, b int) bool { return mm.names[mm.order[a]] < mm.names[mm.order[b]] })
	return mm, nil
}

// decodeErrors counts keys whose labels failed to decode.
type decodeErrors interface{ Inc() }

// gather reads the map and returns its metric family. The family's label
// pairs are shared with the series cache (built once per label set and
// never mutated); values live in slabs allocated once per scrape, so a
// scrape allocates per family, not per series.
func (mm *mapMetric) gather(errs decodeErrors) (*dto.MetricFamily, error) {
	mm.gen++
	var firstErr error
	err := mm.reader.read(func(key []byte, vals []uint64) {
		if err := mm.add(key, vals); err != nil {
			errs.Inc()
			if firstErr == nil {
				firstErr = err
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reading map: %w", err)
	}
	if mm.dirty {
		mm.resort()
	}
	n := 0
	for _, s := range mm.sorted {
		if s.gen == mm.gen {
			n++
		}
	}
	mf := &dto.MetricFamily{Name: &mm.name, Help: &mm.help, Metric: make([]*dto.Metric, 0, n)}
	metrics := make([]dto.Metric, n)
	switch mm.kind {
	case kindCounter, kindGauge:
		values := make([]float64, n)
		var counters []dto.Counter
		var gauges []dto.Gauge
		if mm.kind == kindCounter {
			mf.Type = dto.MetricType_COUNTER.Enum()
			counters = make([]dto.Counter, n)
		} else {
			mf.Type = dto.MetricType_GAUGE.Enum()
			gauges = make([]dto.Gauge, n)
		}
		i := 0
		for _, s := range mm.sorted {
			if s.gen != mm.gen {
				continue
			}
			m := &metrics[i]
			m.Label = s.pairs
			values[i] = s.value
			if counters != nil {
				counters[i].Value = &values[i]
				m.Counter = &counters[i]
			} else {
				gauges[i].Value = &values[i]
				m.Gauge = &gauges[i]
			}
			mf.Metric = append(mf.Metric, m)
			i++
		}
	case kindHistogram:
		mf.Type = dto.MetricType_HISTOGRAM.Enum()
		i := 0
		for _, s := range mm.sorted {
			if s.gen != mm.gen {
				continue
			}
			m := &metrics[i]
			m.Label = s.pairs
			m.Histogram = mm.hist.toDTO(&s.hist)
			mf.Metric = append(mf.Metric, m)
			i++
		}
	}
	if mm.gen%64 == 0 {
		mm.evict()
	}
	return mf, firstErr
}

// add accounts one map entry.
func (mm *mapMetric) add(key []byte, vals []uint64) error {
	if mm.kind == kindHistogram {
		return mm.addHistogram(key, vals)
	}
	if mm.splitCPU {
		base := key
		if mm.cpuOnly {
			base = nil
		}
		for cpu, v := range vals {
			mm.keyBuf = appendUint(append(mm.keyBuf[:0], base...), uint64(cpu), mm.cpuSize)
			s, err := mm.lookup(mm.keyBuf)
			if err != nil || s == nil {
				return err
			}
			s.value += float64(v)
		}
		return nil
	}
	var sum uint64
	for _, v := range vals {
		sum += v
	}
	s, err := mm.lookup(key)
	if err != nil || s == nil {
		return err
	}
	s.value += float64(sum)
	return nil
}

func (mm *mapMetric) addHistogram(key []byte, vals []uint64) error {
	split := len(key) - mm.bucketSize
	bkey, ok := mm.bucketKeys[string(key[split:])]
	if !ok {
		vs, err := mm.bucket.Decode(key[split:])
		if err != nil {
			return fmt.Errorf("bucket: %w", err)
		}
		bkey, err = strconv.ParseFloat(vs[0], 64)
		if err != nil {
			return fmt.Errorf("bucket key %q is not a number", vs[0])
		}
		mm.bucketKeys[string(key[split:])] = bkey
	}
	s, err := mm.lookup(key[:split])
	if err != nil || s == nil {
		return err
	}
	var sum uint64
	for _, v := range vals {
		sum += v
	}
	mm.hist.observe(&s.hist, bkey, sum)
	return nil
}

// lookup returns the series for a raw key, decoding it the first time it
// is seen. A nil series without error means the label set is dropped.
func (mm *mapMetric) lookup(key []byte) (*series, error) {
	s, ok := mm.cache[string(key)]
	if !ok {
		values, err := mm.decode(key)
		switch {
		case errors.Is(err, decoder.ErrSkipLabelSet):
			s = dropped
		case err != nil:
			return nil, err
		default:
			s = mm.internSeries(values)
		}
		mm.cache[string(key)] = s
	}
	if s == dropped {
		return nil, nil
	}
	if s.gen != mm.gen {
		s.gen = mm.gen
		s.value = 0
		if mm.hist != nil {
			if s.hist.counts == nil {
				s.hist.counts = make([]uint64, len(mm.hist.bounds))
			}
			clear(s.hist.counts)
			s.hist.sum = 0
		}
	}
	return s, nil
}

func (mm *mapMetric) decode(key []byte) ([]string, error) {
	if mm.labels == nil {
		if !isZero(key) {
			return nil, decoder.ErrSkipLabelSet
		}
		return nil, nil
	}
	return mm.labels.Decode(key)
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// internSeries returns the one series of a label set.
func (mm *mapMetric) internSeries(values []string) *series {
	for i, v := range values {
		if !utf8.ValidString(v) {
			values[i] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	id := strings.Join(values, "\xff")
	if s, ok := mm.intern[id]; ok {
		return s
	}
	s := &series{pairs: make([]*dto.LabelPair, len(values))}
	slab := make([]dto.LabelPair, len(values))
	for i, j := range mm.order {
		slab[i].Name = &mm.names[j]
		slab[i].Value = &values[j]
		s.pairs[i] = &slab[i]
	}
	mm.intern[id] = s
	mm.dirty = true
	return s
}

// resort rebuilds the sorted list of series.
func (mm *mapMetric) resort() {
	mm.sorted = mm.sorted[:0]
	for _, s := range mm.intern {
		mm.sorted = append(mm.sorted, s)
	}
	sort.Slice(mm.sorted, func(i, j int) bool {
		a, b := mm.sorted[i].pairs, mm.sorted[j].pairs
		for k := range a {
			if va, vb := a[k].GetValue(), b[k].GetValue(); va != vb {
				return va < vb
			}
		}
		return false
	})
	mm.dirty = false
}

// evict forgets keys and series not seen in the last scrape, so maps with
// churning keys (pids, sockets) do not grow the cache without bound.
// Dropped keys are forgotten too; they are decoded again if they recur.
func (mm *mapMetric) evict() {
	for k, s := range mm.cache {
		if s == dropped || s.gen != mm.gen {
			delete(mm.cache, k)
		}
	}
	for id, s := range mm.intern {
		if s.gen != mm.gen {
			delete(mm.intern, id)
			mm.dirty = true
		}
	}
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
