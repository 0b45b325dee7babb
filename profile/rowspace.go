package profile

import "sort"

// extent is a range of rows of the kernel's rows table.
type extent struct{ first, count uint32 }

// rowSpace hands out the rows of the kernel's rows table. A file's rows
// must be contiguous (the BPF program binary-searches [first,
// first+count)), so freed ranges go back to a free list of extents, kept
// sorted by start and merged with their free neighbours, and an allocation
// takes the lowest extent that fits (address-ordered first fit: the low end
// stays dense and the top stays one large free extent). Rows in use are
// never moved, so no compaction: a process's description in the kernel
// always points at rows that hold its file. What fragmentation leaves (free
// rows in total, but no extent large enough) is refused like a full table.
type rowSpace struct {
	size uint32
	free []extent // sorted by first; no two adjacent
	used uint32
}

func newRowSpace(size uint32) *rowSpace {
	s := &rowSpace{size: size}
	if size > 0 {
		s.free = []extent{{0, size}}
	}
	return s
}

// alloc takes n contiguous rows; n == 0 takes none.
func (s *rowSpace) alloc(n uint32) (extent, bool) {
	if n == 0 {
		return extent{}, true
	}
	for i, e := range s.free {
		if e.count < n {
			continue
		}
		if e.count == n {
			s.free = append(s.free[:i], s.free[i+1:]...)
		} else {
			s.free[i] = extent{e.first + n, e.count - n}
		}
		s.used += n
		return extent{e.first, n}, true
	}
	return extent{}, false
}

// release gives back rows alloc handed out.
func (s *rowSpace) release(e extent) {
	if e.count == 0 {
		return
	}
	s.used -= e.count
	i := sort.Search(len(s.free), func(i int) bool { return s.free[i].first > e.first })
	// Merge with the extent before and the one after when they touch.
	if i > 0 && s.free[i-1].first+s.free[i-1].count == e.first {
		s.free[i-1].count += e.count
		if i < len(s.free) && s.free[i-1].first+s.free[i-1].count == s.free[i].first {
			s.free[i-1].count += s.free[i].count
			s.free = append(s.free[:i], s.free[i+1:]...)
		}
		return
	}
	if i < len(s.free) && e.first+e.count == s.free[i].first {
		s.free[i] = extent{e.first, e.count + s.free[i].count}
		return
	}
	s.free = append(s.free, extent{})
	copy(s.free[i+1:], s.free[i:])
	s.free[i] = e
}

// largest is the size of the largest free extent.
func (s *rowSpace) largest() uint32 {
	var n uint32
	for _, e := range s.free {
		n = max(n, e.count)
	}
	return n
}
