package collector

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/prometheus/common/model"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/decoder"
)

type metricKind int

const (
	kindCounter metricKind = iota
	kindGauge
	kindHistogram
)

// Raw keys map to a series id, or to one of these.
const (
	keyDropped  int32 = -1 // a decoder dropped the label set
	keyRedecode int32 = -2 // forgotten (DropPID): decode again if seen
)

// Histogram raw keys map to a bucket slot, or to one of these.
const (
	slotSum  int16 = -1 // the key holding the sum of observed values
	slotNone int16 = -2 // a key outside the configured buckets: ignored
)

// mapMetric turns one BPF map into one metric family.
//
// Its state is flat: raw keys and rendered label blocks live in byteSets
// (arenas plus 32-bit hash tables) and per-series values in slices indexed
// by series id, so a scrape allocates nothing per series and the garbage
// collector has no per-series objects to trace.
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
	// labelsGen is the labels' generation the cached keys were decoded
	// at (see redecodeIfStale).
	labelsGen uint64
	// plain: the metric and label names are legacy Prometheus names, so
	// they are written as they are in every format and escaping scheme
	// (the streaming writers need it; other metrics go through dto).
	plain bool

	// Per-CPU maps: values are summed unless the last label is "cpu" (for
	// histograms: the last before the bucket label), in which case each
	// CPU is a series and the CPU number is appended to the key as a
	// cpuSize-byte integer before decoding.
	splitCPU bool
	cpuSize  int
	// noLabels: the key is a u32 0 and there are no labels.
	noLabels bool
	// cpuOnly: per-CPU counter or gauge whose only label is cpu; the key
	// is a u32 0. (A histogram's key always holds its bucket.)
	cpuOnly bool

	hist       *histSpec
	bucket     *decoder.Labels // decodes the bucket field
	bucketSize int

	// fields are the value fields of a struct-valued map (multivalue.go),
	// the first exported by this metric, the others by their own; vals
	// then holds len(fields) values per series. Nil for u64 values.
	fields []valueField
	// expiry deletes the keys of exited processes and of idle keys from
	// the kernel map (expire.go); nil when the metric has neither.
	expiry *expiry

	// keys are the raw keys seen (with the CPU appended when split by
	// CPU); keySeries, keySlot (histograms) and keyGen are indexed by key id.
	keys      *byteSet
	keySeries []int32
	keySlot   []int16
	keyGen    []uint32
	// labelKeys (histograms) are raw keys without the bucket field, so that
	// a label set is decoded once and not once per bucket.
	labelKeys      *byteSet
	labelKeySeries []int32

	// series are the label blocks, `name="escaped value",...` in label
	// name order, one per distinct label set: raw keys decoding to the
	// same labels share a series and their values merge.
	series *byteSet
	vals   []float64 // counters, gauges: the value in this scrape
	sgen   []uint32  // the scrape that last touched the series
	counts []uint64  // histograms: len(bounds) counts per series, not cumulative
	sums   []uint64  // histograms: raw value of the sum key
	// Series ids below nsorted are in the registry's order (label values
	// in label name order), so frames are built and written walking the
	// arenas in order; ids from nsorted on are new since the last sort.
	nsorted int
	// nextKey is the key id expected next: the kernel returns a map's
	// keys in the same order scrape after scrape and key ids follow the
	// order first seen, so most lookups are one comparison, in order.
	nextKey int
	// grownAt is the number of series when collect last reported that
	// the caches had grown (see collect).
	grownAt  int
	gen      uint32
	keyBuf   []byte
	labelBuf []byte
	blockBuf []byte
	// free holds released frames for reuse (a few: one per scrape in
	// flight), so steady scrapes allocate no frame buffers.
	freeMu sync.Mutex
	free   []*frame
	// owner is the config the metric is read for (the landing page's
	// scrape sizes).
	owner *Config
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
	return newMapMetricOn(reader, kind, fqName, help, labels, h, env)
}

// newMapMetricOn is newMapMetric reading through reader.
func newMapMetricOn(reader *mapReader, kind metricKind, fqName, help string, labels []config.Label, h *config.Histogram, env *decoder.Env) (*mapMetric, error) {
	m := reader.m
	var err error
	mm := &mapMetric{
		name:   fqName,
		help:   help,
		kind:   kind,
		reader: reader,
		series: newByteSet(0),
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
		keyLabels = labels[:len(labels)-1]
		mm.hist, err = newHistSpec(*h)
		if err != nil {
			return nil, err
		}
	}
	if percpu && len(keyLabels) > 0 && keyLabels[len(keyLabels)-1].Name == "cpu" {
		mm.splitCPU = true
		mm.cpuSize = int(keyLabels[len(keyLabels)-1].Size)
		if mm.cpuSize != 1 && mm.cpuSize != 2 && mm.cpuSize != 4 && mm.cpuSize != 8 {
			return nil, fmt.Errorf("label \"cpu\" of a per-CPU map must be 1, 2, 4 or 8 bytes, not %d", mm.cpuSize)
		}
		mm.cpuOnly = len(keyLabels) == 1 && kind != kindHistogram
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
	if mm.labels != nil {
		// Names as decoded: a chain may give several labels (kubernetes).
		mm.names = mm.labels.Names()
		mm.labelsGen = mm.labels.Generation()
	}
	mm.order = make([]int, len(mm.names))
	for i := range mm.order {
		mm.order[i] = i
	}
	sort.SliceStable(mm.order, func(a, b int) bool { return mm.names[mm.order[a]] < mm.names[mm.order[b]] })
	mm.plain = model.LegacyValidation.IsValidMetricName(fqName)
	for _, n := range mm.names {
		mm.plain = mm.plain && model.LegacyValidation.IsValidLabelName(n)
	}
	mm.keys = newByteSet(int(keySize))
	if mm.splitCPU {
		mm.keys = newByteSet(int(keySize) + mm.cpuSize)
		if mm.cpuOnly {
			mm.keys = newByteSet(mm.cpuSize)
		}
	}
	if mm.hist != nil {
		n := int(keySize) - mm.bucketSize
		if mm.splitCPU {
			n += mm.cpuSize
		}
		mm.labelKeys = newByteSet(n)
	}
	return mm, nil
}

// decodeErrors counts keys whose labels failed to decode.
type decodeErrors interface{ Inc() }

// frame is one scrape of a map metric: the series present, in the
// registry's order, with their values. It refers to the label blocks of
// the metric without copying them (they are never changed in place), so
// it can be written out after the config's lock is released.
type frame struct {
	mm     *mapMetric
	blocks *byteSet // a copy of the metric's series set header
	ids    []int32  // series present, sorted
	vals   []float64
	// histograms: len(bounds) cumulative counts per series, and the sum.
	counts []uint64
	sums   []float64
}

// block returns the label block of the i-th series of the frame.
func (f *frame) block(i int) []byte { return f.blocks.at(int(f.ids[i])) }

// release returns the frame's buffers for reuse.
func (f *frame) release() {
	f.blocks = nil
	mm := f.mm
	mm.freeMu.Lock()
	if len(mm.free) < 4 {
		mm.free = append(mm.free, f)
	}
	mm.freeMu.Unlock()
}

// collect reads the map and returns the scrape's frame. Callers hold the
// config's lock; the frame stays valid after it is released. grown is set
// when the caches have grown by half (and by 10,000 series) since it was
// last set: the growth left garbage (the caches' old, smaller copies)
// worth returning to the system.
func (mm *mapMetric) collect(errs decodeErrors) (f *frame, grown bool, err error) {
	mm.gen++
	mm.nextKey = 0
	mm.redecodeIfStale()
	var firstErr error
	fail := func(err error) {
		errs.Inc()
		if firstErr == nil {
			firstErr = err
		}
	}
	if mm.expiry != nil {
		mm.expiry.begin()
	}
	if mm.fields != nil {
		err = mm.reader.readRaw(func(key, val []byte) {
			if mm.expiry != nil {
				mm.expiry.see(key, val)
			}
			if err := mm.addValues(key, val); err != nil {
				fail(err)
			}
		})
	} else {
		err = mm.reader.read(func(key []byte, vals []uint64) {
			if mm.expiry != nil {
				mm.expiry.seeU64(key, vals)
			}
			if err := mm.add(key, vals); err != nil {
				fail(err)
			}
		})
	}
	if err != nil {
		if mm.expiry != nil {
			mm.expiry.abort()
		}
		return nil, false, fmt.Errorf("reading map: %w", err)
	}
	if mm.nsorted < mm.series.len() {
		mm.sortNew()
	}
	if n := mm.series.len(); n >= mm.grownAt+max(mm.grownAt/2, 10_000) {
		mm.grownAt, grown = n, true
	}
	f = &frame{mm: mm}
	mm.freeMu.Lock()
	if n := len(mm.free); n > 0 {
		f = mm.free[n-1]
		mm.free = mm.free[:n-1]
	}
	mm.freeMu.Unlock()
	set := *mm.series
	f.blocks = &set
	f.ids, f.vals, f.counts, f.sums = f.ids[:0], f.vals[:0], f.counts[:0], f.sums[:0]
	for i, g := range mm.sgen {
		if g != mm.gen {
			continue
		}
		id := int32(i)
		f.ids = append(f.ids, id)
		if mm.hist == nil {
			f.vals = append(f.vals, mm.vals[int(id)*mm.nvals()])
			continue
		}
		nb := len(mm.hist.bounds)
		var c uint64
		for _, v := range mm.counts[int(id)*nb : (int(id)+1)*nb] {
			c += v
			f.counts = append(f.counts, c)
		}
		f.sums = append(f.sums, float64(mm.sums[id])*mm.hist.multiplier)
	}
	if mm.expiry != nil {
		mm.expiry.end()
	}
	if mm.gen%64 == 0 {
		mm.evict()
		if mm.series.len() < mm.grownAt/2 {
			mm.grownAt = mm.series.len()
		}
	}
	return f, grown, firstErr
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
			id, err := mm.lookup(mm.keyBuf)
			if err != nil || id < 0 {
				return err
			}
			mm.vals[id] += float64(v)
		}
		return nil
	}
	var sum uint64
	for _, v := range vals {
		sum += v
	}
	id, err := mm.lookup(key)
	if err != nil || id < 0 {
		return err
	}
	mm.vals[id] += float64(sum)
	return nil
}

// findKey returns the id of a raw key, or -1.
func (mm *mapMetric) findKey(key []byte) int {
	k := mm.nextKey
	if k >= mm.keys.len() || !bytes.Equal(mm.keys.at(k), key) {
		k = mm.keys.find(key)
	}
	mm.nextKey = k + 1
	return k
}

// addHistogram accounts one entry of a histogram map: summed across CPUs,
// or one bucket of each CPU's series when split by CPU.
func (mm *mapMetric) addHistogram(key []byte, vals []uint64) error {
	if mm.splitCPU {
		for cpu, v := range vals {
			mm.keyBuf = appendUint(append(mm.keyBuf[:0], key...), uint64(cpu), mm.cpuSize)
			if err := mm.addBucket(mm.keyBuf, len(key), v); err != nil {
				return err
			}
		}
		return nil
	}
	var sum uint64
	for _, v := range vals {
		sum += v
	}
	return mm.addBucket(key, len(key), sum)
}

// addBucket adds v to the bucket (or sum) of key, whose first rawLen bytes
// are the map's key and the rest the CPU (when split by CPU).
func (mm *mapMetric) addBucket(key []byte, rawLen int, v uint64) error {
	k := mm.findKey(key)
	if k < 0 || mm.keySeries[k] == keyRedecode {
		id, slot, err := mm.decodeHistogramKey(key, rawLen)
		if err != nil {
			return err
		}
		if k < 0 {
			k = mm.keys.add(key)
			mm.keySeries = append(mm.keySeries, id)
			mm.keySlot = append(mm.keySlot, slot)
			mm.keyGen = append(mm.keyGen, 0)
			mm.nextKey = k + 1
		} else {
			mm.keySeries[k], mm.keySlot[k] = id, slot
		}
	}
	mm.keyGen[k] = mm.gen
	id := mm.keySeries[k]
	if id < 0 {
		return nil
	}
	mm.touch(id)
	switch slot := mm.keySlot[k]; slot {
	case slotSum:
		mm.sums[id] += v
	case slotNone:
	default:
		mm.counts[int(id)*len(mm.hist.bounds)+int(slot)] += v
	}
	return nil
}
