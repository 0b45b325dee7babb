package collector

// evict forgets keys and series not seen in the last scrape, so maps with
// churning keys (pids, sockets) do not grow the cache without bound.
// Dropped keys are forgotten too; they are decoded again if they recur.
func (mm *mapMetric) evict() {
	live := func(k int) bool { return mm.keyGen[k] == mm.gen && mm.keySeries[k] >= 0 }
	stale := 0
	for k := range mm.keySeries {
		if !live(k) {
			stale++
		}
	}
	var order []int32
	for id, g := range mm.sgen {
		if g == mm.gen {
			order = append(order, int32(id))
		}
	}
	if stale == 0 && len(order) == len(mm.sgen) {
		return
	}
	mm.relayout(order)

	keyRemap := mm.keys.compact(live)
	keySeries := make([]int32, mm.keys.len())
	keyGen := make([]uint32, mm.keys.len())
	var keySlot []int16
	if mm.hist != nil {
		keySlot = make([]int16, mm.keys.len())
	}
	for old, k := range keyRemap {
		if k < 0 {
			continue
		}
		keySeries[k] = mm.keySeries[old]
		keyGen[k] = mm.keyGen[old]
		if keySlot != nil {
			keySlot[k] = mm.keySlot[old]
		}
	}
	mm.keySeries, mm.keyGen, mm.keySlot = keySeries, keyGen, keySlot
	if mm.labelKeys != nil {
		lk := mm.labelKeys.compact(func(k int) bool { return mm.labelKeySeries[k] >= 0 })
		series := make([]int32, mm.labelKeys.len())
		for old, k := range lk {
			if k >= 0 {
				series[k] = mm.labelKeySeries[old]
			}
		}
		mm.labelKeySeries = series
	}
}

// forget makes a raw key be decoded afresh if it is seen again.
func (mm *mapMetric) forget(key []byte) {
	if k := mm.keys.find(key); k >= 0 {
		mm.keySeries[k] = keyRedecode
	}
	if mm.labelKeys != nil {
		if k := mm.labelKeys.find(key[:len(key)-mm.bucketSize]); k >= 0 {
			mm.labelKeySeries[k] = keyRedecode
		}
	}
}

// memory is the bytes the metric's caches hold.
func (mm *mapMetric) memory() int {
	n := mm.keys.bytes() + mm.series.bytes() + 4*cap(mm.keySeries) + 2*cap(mm.keySlot) + 4*cap(mm.keyGen) +
		8*cap(mm.vals) + 4*cap(mm.sgen) + 8*cap(mm.counts) + 8*cap(mm.sums)
	if mm.labelKeys != nil {
		n += mm.labelKeys.bytes() + 4*cap(mm.labelKeySeries)
	}
	return n
}
