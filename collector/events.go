package collector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/probe-exporter/probe_exporter/config"
	"github.com/probe-exporter/probe_exporter/decoder"
)

// Event metrics: counters and histograms fed by the records of a ring
// buffer or perf event array (events: in the config) as they arrive,
// aggregated here rather than in a kernel map. Each record's first bytes
// are its labels, decoded as a map key is (once per distinct raw label
// bytes: raw keys are cached as a map metric's are); value: is the field
// summed or observed. The aggregate is a mapMetric whose series only
// grow, so a scrape writes it out with the same frames and writers as a
// map's.

// DefaultEventsMaxSeries bounds the label sets of one events metric
// unless Options.EventsMaxSeries says otherwise.
const DefaultEventsMaxSeries = 10_000

// keyOverLimit marks a raw key whose label set would be new past the
// series bound; it is decoded again once series expire.
const keyOverLimit int32 = -3

// Reasons of probe_exporter_event_records_dropped_total.
const (
	droppedMalformed = "malformed"
	droppedOverLimit = "series_limit"
)

// eventMetric is one events entry of a config: a counter (records
// counted, or value summed, or values summed each into its own counter)
// or a histogram of value.
type eventMetric struct {
	// mu serializes records and scrapes: a scrape holds it while it copies
	// the values into its frame, not while the frame is written out.
	mu sync.Mutex
	mm *mapMetric

	mapName   string
	labelSize int
	need      int         // bytes a record must have
	value     *valueField // counter with value:, histogram; nil: count
	// slot returns the bucket slot of a histogram's value.
	slot func(v uint64) int

	maxSeries, maxKeys int

	malformed, overLimit prometheus.Counter
	decodeErrs           prometheus.Counter

	// Per series: the pid of its expiring label (0: none) and when its
	// values last changed (max_age).
	pids    []uint32
	changed []time.Time
	exp     *eventExpiry
}

// eventExpiry ends series as map expiry ends keys: served once after
// their process exited (expire: process_exit) or after max_age without a
// record, then deleted.
type eventExpiry struct {
	exits           ProcessExits
	procRoot        string
	seq             uint64
	pidOff, pidSize int
	// prev are the pids that exited in the previous scrape's window:
	// records still in the buffer may bring their series back once.
	prev    map[uint32]struct{}
	maxAge  time.Duration
	expired map[string]prometheus.Counter
}

// newEventMetric sets up an events entry: labels over the record's first
// bytes, value and values within maxRecord bytes.
func (b *configBuilder) newEventMetric(cfgName, mapName string, kind metricKind, fqName, help string, labels []config.Label, value *config.EventValue, values []config.Value, h *config.Histogram, maxAge config.Duration, maxRecord int) (*eventMetric, error) {
	need := config.RecordSize(labels, value, values)
	if need > maxRecord {
		return nil, fmt.Errorf("records need %d bytes (labels and value) but map %q carries records of at most %d bytes", need, mapName, maxRecord)
	}
	e := &eventMetric{mapName: mapName, need: need, maxSeries: b.eventsMaxSeries}
	if e.maxSeries <= 0 {
		e.maxSeries = DefaultEventsMaxSeries
	}
	// Raw keys decoding to the same labels (bytes after a string's NUL)
	// share a series; their cache is bounded apart from the series.
	e.maxKeys = 4*e.maxSeries + 1024
	for _, l := range labels {
		e.labelSize += int(l.Size + l.Padding)
	}
	mm := &mapMetric{name: fqName, help: help, kind: kind, series: newByteSet(0), keys: newByteSet(e.labelSize)}
	var err error
	if len(labels) > 0 {
		if mm.labels, err = decoder.NewLabels(labels, b.env); err != nil {
			return nil, err
		}
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
	if value != nil {
		e.value = &valueField{offset: int(value.Offset), size: int(value.Size)}
	}
	if kind == kindHistogram {
		if mm.hist, err = newHistSpec(*h); err != nil {
			return nil, err
		}
		e.slot = bucketSlot(*h)
	}
	for i, v := range values {
		fam := mm
		if i > 0 {
			name := b.fqName(v.Name)
			fam = &mapMetric{name: name, help: v.Help, kind: kindCounter, names: mm.names, order: mm.order,
				plain: mm.plain && model.LegacyValidation.IsValidMetricName(name)}
		} else {
			mm.name = b.fqName(v.Name)
			mm.help = v.Help
			mm.plain = mm.plain && model.LegacyValidation.IsValidMetricName(mm.name)
		}
		mm.fields = append(mm.fields, valueField{offset: int(v.Offset), size: int(v.Size), mm: fam})
	}
	e.mm = mm
	e.malformed = b.eventsDropped.WithLabelValues(cfgName, mm.name, droppedMalformed)
	e.overLimit = b.eventsDropped.WithLabelValues(cfgName, mm.name, droppedOverLimit)
	e.decodeErrs = b.decoderErrors.WithLabelValues(cfgName)

	pidIdx := config.ExpiringLabel(labels)
	if pidIdx < 0 && maxAge == 0 {
		return e, nil
	}
	x := &eventExpiry{exits: b.exits, procRoot: b.procRoot, maxAge: time.Duration(maxAge), prev: map[uint32]struct{}{}, expired: map[string]prometheus.Counter{}}
	if pidIdx >= 0 {
		for _, l := range labels[:pidIdx] {
			x.pidOff += int(l.Size + l.Padding)
		}
		x.pidSize = int(labels[pidIdx].Size)
		x.seq = math.MaxUint64
		if x.exits != nil {
			x.exits.Sync()
			x.seq, _ = x.exits.Since(x.seq, func(uint32) {})
		}
		x.expired[expiredExit] = b.expired.WithLabelValues(cfgName, mapName, expiredExit)
	}
	if x.maxAge > 0 {
		x.expired[expiredMaxAge] = b.expired.WithLabelValues(cfgName, mapName, expiredMaxAge)
	}
	e.exp = x
	return e, nil
}

// bucketSlot returns the function placing a value in the buckets of h as
// the map form's kernel code places it (include/maps.bpf.h): exp2 bucket
// k holds the values in (2^(k-1), 2^k], 0 and 1 in key 0; exp2zero's key
// 0 holds 0 and key k the values in (2^(k-2), 2^(k-1)]; linear key k the
// value k; fixed the first key at or above the value. A value below the
// first bucket counts in it, one above the last in the last.
func bucketSlot(h config.Histogram) func(v uint64) int {
	lo, hi := uint64(h.BucketMin), uint64(h.BucketMax)
	clamp := func(k uint64) int { return int(min(max(k, lo), hi) - lo) }
	exp2 := func(v uint64) uint64 {
		if v <= 1 {
			return 0
		}
		return uint64(bits.Len64(v - 1))
	}
	switch h.BucketType {
	case config.BucketExp2:
		return func(v uint64) int { return clamp(exp2(v)) }
	case config.BucketExp2Zero:
		return func(v uint64) int {
			if v == 0 {
				return clamp(0)
			}
			return clamp(exp2(v) + 1)
		}
	case config.BucketLinear:
		return func(v uint64) int { return clamp(v) }
	}
	keys := h.BucketKeys
	return func(v uint64) int {
		i := sort.SearchFloat64s(keys, float64(v))
		return min(i, len(keys)-1)
	}
}

// Record accounts one record: a record too short for the labels and
// value is counted as malformed; one whose labels a decoder drops is
// ignored; one that would make a label set past the bound is counted.
func (e *eventMetric) Record(raw []byte) {
	if len(raw) < e.need {
		e.malformed.Inc()
		return
	}
	v := uint64(1)
	if e.value != nil {
		v = e.value.read(raw)
	}
	e.mu.Lock()
	id := e.seriesOf(raw[:e.labelSize])
	if id < 0 {
		e.mu.Unlock()
		if id == keyOverLimit {
			e.overLimit.Inc()
		}
		return
	}
	mm := e.mm
	mm.sgen[id] = mm.gen
	switch {
	case mm.hist != nil:
		mm.counts[int(id)*len(mm.hist.bounds)+e.slot(v)]++
		mm.sums[id] += v
	case mm.fields != nil:
		nv := len(mm.fields)
		for j, f := range mm.fields {
			mm.vals[int(id)*nv+j] += float64(f.read(raw))
		}
	default:
		mm.vals[id] += float64(v)
	}
	e.mu.Unlock()
}

// seriesOf returns the series of raw label bytes, decoding them the first
// time they are seen; negative: dropped by a decoder, over the bound, or
// not decoded (counted in decoder errors, tried again next time).
func (e *eventMetric) seriesOf(key []byte) int32 {
	mm := e.mm
	k := mm.keys.find(key)
	if k >= 0 && mm.keySeries[k] != keyRedecode {
		return mm.keySeries[k]
	}
	id, err := e.decode(key)
	if err != nil {
		e.decodeErrs.Inc()
		return keyDropped
	}
	if k >= 0 {
		mm.keySeries[k] = id
		return id
	}
	if mm.keys.len() >= e.maxKeys {
		mm.keys, mm.keySeries = newByteSet(e.labelSize), nil
	}
	mm.keys.add(key)
	mm.keySeries = append(mm.keySeries, id)
	return id
}

// decode returns the series of raw label bytes seen for the first time,
// creating it within the bound.
func (e *eventMetric) decode(key []byte) (int32, error) {
	mm := e.mm
	var values []string
	if mm.labels != nil {
		var err error
		values, err = mm.labels.Decode(key)
		switch {
		case errors.Is(err, decoder.ErrSkipLabelSet):
			return keyDropped, nil
		case err != nil:
			return 0, err
		}
	}
	mm.blockBuf = mm.appendBlock(mm.blockBuf[:0], values)
	if id := mm.series.find(mm.blockBuf); id >= 0 {
		return int32(id), nil
	}
	if mm.series.len() >= e.maxSeries {
		return keyOverLimit, nil
	}
	id := mm.series.add(mm.blockBuf)
	mm.sgen = append(mm.sgen, mm.gen)
	if mm.hist == nil {
		mm.vals = append(mm.vals, make([]float64, mm.nvals())...)
	} else {
		mm.counts = append(mm.counts, make([]uint64, len(mm.hist.bounds))...)
		mm.sums = append(mm.sums, 0)
	}
	var pid uint32
	if e.exp != nil && e.exp.pidSize > 0 {
		b := key[e.exp.pidOff : e.exp.pidOff+e.exp.pidSize]
		if e.exp.pidSize == 4 {
			pid = binary.NativeEndian.Uint32(b)
		} else if p := binary.NativeEndian.Uint64(b); p <= math.MaxUint32 {
			pid = uint32(p)
		}
	}
	e.pids = append(e.pids, pid)
	e.changed = append(e.changed, time.Time{})
	return int32(id), nil
}

// relayout keeps the series listed in order (old ids) and renumbers them,
// as mapMetric.relayout does, with the event metric's own per-series
// state. When series were freed, raw keys that were over the bound are
// decoded again.
func (e *eventMetric) relayout(order []int32) {
	freed := len(order) < e.mm.series.len()
	mm := e.mm
	pids := make([]uint32, len(order))
	changed := make([]time.Time, len(order))
	for id, old := range order {
		pids[id], changed[id] = e.pids[old], e.changed[old]
	}
	e.pids, e.changed = pids, changed
	mm.relayout(order)
	if freed {
		for k, id := range mm.keySeries {
			if id == keyOverLimit {
				mm.keySeries[k] = keyRedecode
			}
		}
	}
}

// collect appends the frames of the metric: every series, with what it
// has counted since it was created. Then series whose process exited or
// that saw no record for max_age are deleted: this was their last scrape.
func (e *eventMetric) collect(frames []*frame, now time.Time) []*frame {
	e.mu.Lock()
	defer e.mu.Unlock()
	mm := e.mm
	if mm.labels != nil {
		if g := mm.labels.Generation(); g != mm.labelsGen {
			// Decoders learnt names (Kubernetes): new records decode
			// afresh; series already made keep their labels.
			mm.labelsGen = g
			mm.keys, mm.keySeries = newByteSet(e.labelSize), nil
		}
	}
	if mm.nsorted < mm.series.len() {
		e.relayout(mm.sortedOrder())
	}
	f := &frame{mm: mm}
	mm.freeMu.Lock()
	if n := len(mm.free); n > 0 {
		f = mm.free[n-1]
		mm.free = mm.free[:n-1]
	}
	mm.freeMu.Unlock()
	set := *mm.series
	f.blocks = &set
	f.ids, f.vals, f.counts, f.sums = f.ids[:0], f.vals[:0], f.counts[:0], f.sums[:0]
	nv := mm.nvals()
	for id := range mm.series.len() {
		f.ids = append(f.ids, int32(id))
		if mm.hist == nil {
			f.vals = append(f.vals, mm.vals[id*nv])
			continue
		}
		nb := len(mm.hist.bounds)
		var c uint64
		for _, v := range mm.counts[id*nb : (id+1)*nb] {
			c += v
			f.counts = append(f.counts, c)
		}
		f.sums = append(f.sums, float64(mm.sums[id])*mm.hist.multiplier)
	}
	frames = append(frames, f)
	if mm.fields != nil {
		frames = mm.valueFrames(f, frames)
	}
	if e.exp != nil {
		e.expire(now)
	}
	mm.gen++
	return frames
}

// window returns the pids that exited since the last call, and whether
// that list is complete.
func (e *eventExpiry) window() (exited map[uint32]struct{}, complete bool) {
	exited = map[uint32]struct{}{}
	if e.exits == nil {
		return exited, false
	}
	e.exits.Sync()
	e.seq, complete = e.exits.Since(e.seq, func(pid uint32) { exited[pid] = struct{}{} })
	return exited, complete
}

// expire deletes the series served for the last time: those whose
// process exited before this scrape (or in the previous one's window;
// looked up in /proc when exits are incomplete), and with max_age those
// without a record for that long.
func (e *eventMetric) expire(now time.Time) {
	x, mm := e.exp, e.mm
	var exited map[uint32]struct{}
	complete := true
	if x.pidSize > 0 {
		exited, complete = x.window()
	}
	var keep []int32
	doomed := 0
	for id := range mm.series.len() {
		if x.maxAge > 0 {
			if mm.sgen[id] == mm.gen || e.changed[id].IsZero() {
				e.changed[id] = now
			} else if now.Sub(e.changed[id]) >= x.maxAge {
				x.expired[expiredMaxAge].Inc()
				doomed++
				continue
			}
		}
		if pid := e.pids[id]; x.pidSize > 0 && pid != 0 {
			_, gone := exited[pid]
			_, before := x.prev[pid]
			if gone || before || (!complete && !procExists(x.procRoot, pid)) {
				x.expired[expiredExit].Inc()
				doomed++
				continue
			}
		}
		keep = append(keep, int32(id))
	}
	if x.pidSize > 0 {
		x.prev = exited
	}
	if doomed > 0 {
		e.relayout(keep)
	}
}

func procExists(root string, pid uint32) bool {
	_, err := os.Stat(filepath.Join(root, strconv.FormatUint(uint64(pid), 10)))
	return !os.IsNotExist(err)
}

// dropPID deletes the series of an exited process whose pid label is the
// metric's expiring one (the userspace watcher's exits).
func (e *eventMetric) dropPID(pid uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.exp == nil || e.exp.pidSize == 0 {
		return
	}
	var keep []int32
	for id, p := range e.pids {
		if p != pid {
			keep = append(keep, int32(id))
		}
	}
	if len(keep) < len(e.pids) {
		e.relayout(keep)
	}
}
