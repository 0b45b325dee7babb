package collector

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// appendBlock renders a label set as `name="value",...` in label name
// order, values made valid UTF-8 and escaped as the text formats escape
// them (backslash, double quote, newline).
func (mm *mapMetric) appendBlock(b []byte, values []string) []byte {
	for i, j := range mm.order {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, mm.names[j]...)
		b = append(b, '=', '"')
		v := values[j]
		if !utf8.ValidString(v) {
			v = strings.ToValidUTF8(v, "\uFFFD")
		}
		b = appendEscaped(b, v, true)
		b = append(b, '"')
	}
	return b
}

// appendEscaped escapes backslash and newline, and double quote if quote.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '"' && quote:
			b = append(b, '\\', '"')
		default:
			b = append(b, c)
		}
	}
	return b
}

// blockValues calls fn with each label value of a block, unescaped, in
// label name order. The slice passed is reused.
func (mm *mapMetric) blockValues(block []byte, scratch []byte, fn func(i int, value []byte)) []byte {
	pos := 0
	for i, j := range mm.order {
		pos += len(mm.names[j]) + 2 // name="
		scratch = scratch[:0]
		for ; block[pos] != '"'; pos++ {
			c := block[pos]
			if c == '\\' {
				pos++
				if c = block[pos]; c == 'n' {
					c = '\n'
				}
			}
			scratch = append(scratch, c)
		}
		pos += 2 // ",
		fn(i, scratch)
	}
	return scratch
}

// compareBlocks orders two label blocks of the metric as the registry
// orders series: by label values, in label name order.
func (mm *mapMetric) compareBlocks(a, b []byte) int {
	i, j := 0, 0
	for _, k := range mm.order {
		skip := len(mm.names[k]) + 2
		i += skip
		j += skip
		for {
			ca, ea := unescapeAt(a, &i)
			cb, eb := unescapeAt(b, &j)
			switch {
			case ea && eb:
			case ea:
				return -1
			case eb:
				return 1
			case ca != cb:
				return int(ca) - int(cb)
			default:
				continue
			}
			break
		}
		i++ // ,
		j++
	}
	return 0
}

// unescapeAt reads one byte of an escaped value at *pos; end is true at
// the closing quote, which it consumes.
func unescapeAt(b []byte, pos *int) (c byte, end bool) {
	c = b[*pos]
	*pos++
	switch c {
	case '"':
		return 0, true
	case '\\':
		c = b[*pos]
		*pos++
		if c == 'n' {
			c = '\n'
		}
	}
	return c, false
}

// sortNew sorts the series added since the last sort into the others
// and renumbers every series in that order.
func (mm *mapMetric) sortNew() { mm.relayout(mm.sortedOrder()) }

// sortedOrder is the order of every series once the series added since
// the last sort are merged into the others.
func (mm *mapMetric) sortedOrder() []int32 {
	n := mm.series.len()
	cmp := func(a, b int32) int { return mm.compareBlocks(mm.series.at(int(a)), mm.series.at(int(b))) }
	fresh := make([]int32, 0, n-mm.nsorted)
	for id := mm.nsorted; id < n; id++ {
		fresh = append(fresh, int32(id))
	}
	slices.SortFunc(fresh, cmp)
	order := make([]int32, 0, n)
	a, b := int32(0), fresh
	for int(a) < mm.nsorted && len(b) > 0 {
		if cmp(b[0], a) < 0 {
			order, b = append(order, b[0]), b[1:]
		} else {
			order, a = append(order, a), a+1
		}
	}
	for ; int(a) < mm.nsorted; a++ {
		order = append(order, a)
	}
	return append(order, b...)
}

// relayout keeps the series listed in order (old ids), renumbered in that
// order, and returns the new id of every old id (-1: dropped). Keys of
// dropped series are decoded again if seen.
func (mm *mapMetric) relayout(order []int32) []int32 {
	remap := mm.series.rebuild(order)
	n := len(order)
	sgen := make([]uint32, n)
	var vals []float64
	var counts, sums []uint64
	nv := mm.nvals()
	if mm.hist == nil {
		vals = make([]float64, n*nv)
	} else {
		counts = make([]uint64, n*len(mm.hist.bounds))
		sums = make([]uint64, n)
	}
	for id, old := range order {
		sgen[id] = mm.sgen[old]
		if mm.hist == nil {
			copy(vals[id*nv:(id+1)*nv], mm.vals[int(old)*nv:(int(old)+1)*nv])
		} else {
			nb := len(mm.hist.bounds)
			copy(counts[id*nb:], mm.counts[int(old)*nb:(int(old)+1)*nb])
			sums[id] = mm.sums[old]
		}
	}
	mm.sgen, mm.vals, mm.counts, mm.sums = sgen, vals, counts, sums
	mm.nsorted = n
	renumber := func(ids []int32) {
		for k, id := range ids {
			if id >= 0 {
				if ids[k] = remap[id]; ids[k] < 0 {
					ids[k] = keyRedecode
				}
			}
		}
	}
	renumber(mm.keySeries)
	renumber(mm.labelKeySeries)
	return remap
}
