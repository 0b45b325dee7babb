package collector

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/probe-exporter/probe_exporter/decoder"
)

// decodeHistogramKey returns the series and bucket slot of a key seen for
// the first time (as addBucket takes it). The labels are decoded from the
// key without its bucket field, the CPU kept at the end.
func (mm *mapMetric) decodeHistogramKey(key []byte, rawLen int) (int32, int16, error) {
	split := rawLen - mm.bucketSize
	vs, err := mm.bucket.Decode(key[split:rawLen])
	if err != nil {
		return 0, 0, fmt.Errorf("bucket: %w", err)
	}
	bkey, err := strconv.ParseFloat(vs[0], 64)
	if err != nil {
		return 0, 0, fmt.Errorf("bucket key %q is not a number", vs[0])
	}
	slot := slotNone
	if bkey == mm.hist.sumKey {
		slot = slotSum
	} else if i, ok := mm.hist.slot[bkey]; ok {
		slot = int16(i)
	}
	labelKey := key[:split]
	if rawLen < len(key) {
		mm.labelBuf = append(append(mm.labelBuf[:0], key[:split]...), key[rawLen:]...)
		labelKey = mm.labelBuf
	}
	lk := mm.labelKeys.find(labelKey)
	if lk >= 0 && mm.labelKeySeries[lk] != keyRedecode {
		return mm.labelKeySeries[lk], slot, nil
	}
	id, err := mm.decodeSeries(labelKey)
	if err != nil {
		return 0, 0, err
	}
	if lk >= 0 {
		mm.labelKeySeries[lk] = id
		return id, slot, nil
	}
	mm.labelKeys.add(labelKey)
	mm.labelKeySeries = append(mm.labelKeySeries, id)
	return id, slot, nil
}

// lookup returns the series of a raw key, decoding it the first time it is
// seen, and marks the series present in this scrape. A negative id without
// error means the label set is dropped.
func (mm *mapMetric) lookup(key []byte) (int32, error) {
	k := mm.findKey(key)
	if k < 0 || mm.keySeries[k] == keyRedecode {
		id, err := mm.decodeSeries(key)
		if err != nil {
			return 0, err
		}
		if k < 0 {
			k = mm.keys.add(key)
			mm.keySeries = append(mm.keySeries, id)
			mm.keyGen = append(mm.keyGen, 0)
			mm.nextKey = k + 1
		} else {
			mm.keySeries[k] = id
		}
	}
	mm.keyGen[k] = mm.gen
	id := mm.keySeries[k]
	if id >= 0 {
		mm.touch(id)
	}
	return id, nil
}

// touch resets a series' values the first time a scrape sees it.
func (mm *mapMetric) touch(id int32) {
	if mm.sgen[id] == mm.gen {
		return
	}
	mm.sgen[id] = mm.gen
	if mm.hist == nil {
		nv := mm.nvals()
		clear(mm.vals[int(id)*nv : (int(id)+1)*nv])
		return
	}
	nb := len(mm.hist.bounds)
	clear(mm.counts[int(id)*nb : (int(id)+1)*nb])
	mm.sums[id] = 0
}

// decodeSeries decodes a raw key into the id of its label set's series
// (keyDropped if a decoder drops it).
func (mm *mapMetric) decodeSeries(key []byte) (int32, error) {
	values, err := mm.decode(key)
	switch {
	case errors.Is(err, decoder.ErrSkipLabelSet):
		return keyDropped, nil
	case err != nil:
		return 0, err
	}
	mm.blockBuf = mm.appendBlock(mm.blockBuf[:0], values)
	if id := mm.series.find(mm.blockBuf); id >= 0 {
		return int32(id), nil
	}
	id := mm.series.add(mm.blockBuf)
	mm.sgen = append(mm.sgen, 0)
	if mm.hist == nil {
		for range mm.nvals() {
			mm.vals = append(mm.vals, 0)
		}
	} else {
		mm.counts = append(mm.counts, make([]uint64, len(mm.hist.bounds))...)
		mm.sums = append(mm.sums, 0)
	}
	return int32(id), nil
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
