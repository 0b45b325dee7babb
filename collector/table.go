package collector

import (
	"bytes"
	"hash/maphash"
)

// byteSet interns byte strings: each distinct string gets a dense id (0,
// 1, ...) in the order added. The strings live back to back in one arena
// and the hash table holds 32-bit ids, so the set costs the bytes plus a
// few words per entry and holds no pointers for the garbage collector to
// scan. Strings are never changed in place: the arena only grows (bytes
// past an earlier length are new), and compact builds new slices, so a
// reader that took data and ends (see view) may keep using them.
type byteSet struct {
	seed  maphash.Seed
	size  int      // fixed length of every string, or 0 (variable: ends is used)
	data  []byte   // the strings back to back
	ends  []uint32 // variable length: end offset of string i in data
	n     int      // strings held
	slots []uint32 // open addressing, linear probing: 0 empty, else id+1 (a power of 2 long)
}

func newByteSet(size int) *byteSet {
	return &byteSet{seed: maphash.MakeSeed(), size: size}
}

// len is the number of strings held.
func (s *byteSet) len() int { return s.n }

// at returns string id (not to be modified).
func (s *byteSet) at(id int) []byte {
	if s.size > 0 {
		return s.data[id*s.size : (id+1)*s.size : (id+1)*s.size]
	}
	start := uint32(0)
	if id > 0 {
		start = s.ends[id-1]
	}
	return s.data[start:s.ends[id]:s.ends[id]]
}

// find returns the id of b, or -1.
func (s *byteSet) find(b []byte) int {
	if len(s.slots) == 0 {
		return -1
	}
	mask := uint64(len(s.slots) - 1)
	for i := maphash.Bytes(s.seed, b) & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			return -1
		}
		if bytes.Equal(s.at(int(v-1)), b) {
			return int(v - 1)
		}
	}
}

// add appends b, which must not be in the set yet, and returns its id.
func (s *byteSet) add(b []byte) int {
	if s.size > 0 && len(b) != s.size {
		panic("byteSet: string of the wrong size")
	}
	if !s.fits(s.n+1, len(s.slots)) {
		s.rehash(max(16, 2*len(s.slots)))
	}
	id := s.n
	s.data = append(s.data, b...)
	if s.size == 0 {
		s.ends = append(s.ends, uint32(len(s.data)))
	}
	s.n++
	s.insert(b, id)
	return id
}

// fits tells whether n strings fit in nslots slots: at most 80% full.
// Most lookups of raw keys are predicted (see mapMetric.findKey) and label
// blocks are looked up only for new keys, so the longer probes of a full
// table cost little and the table is 4-5 bytes a string, not 8-10.
func (s *byteSet) fits(n, nslots int) bool { return 5*n <= 4*nslots }

func (s *byteSet) insert(b []byte, id int) {
	mask := uint64(len(s.slots) - 1)
	i := maphash.Bytes(s.seed, b) & mask
	for s.slots[i] != 0 {
		i = (i + 1) & mask
	}
	s.slots[i] = uint32(id + 1)
}

func (s *byteSet) rehash(nslots int) {
	s.slots = make([]uint32, nslots)
	for id := 0; id < s.n; id++ {
		s.insert(s.at(id), id)
	}
}

// compact keeps the strings for which keep is true, in their order; see
// rebuild.
func (s *byteSet) compact(keep func(id int) bool) []int32 {
	order := make([]int32, 0, s.n)
	for id := 0; id < s.n; id++ {
		if keep(id) {
			order = append(order, int32(id))
		}
	}
	return s.rebuild(order)
}

// rebuild keeps the strings listed in order (old ids), in that order, and
// returns the new id of every old id (-1 for those dropped). It builds new
// slices, leaving the old ones intact for readers still holding them.
func (s *byteSet) rebuild(order []int32) []int32 {
	remap := make([]int32, s.n)
	for i := range remap {
		remap[i] = -1
	}
	size := 0
	for _, id := range order {
		size += len(s.at(int(id)))
	}
	data := make([]byte, 0, size)
	var ends []uint32
	if s.size == 0 {
		ends = make([]uint32, 0, len(order))
	}
	for n, id := range order {
		remap[id] = int32(n)
		data = append(data, s.at(int(id))...)
		if s.size == 0 {
			ends = append(ends, uint32(len(data)))
		}
	}
	s.data, s.ends, s.n = data, ends, len(order)
	nslots := 16
	for !s.fits(s.n, nslots) {
		nslots *= 2
	}
	s.rehash(nslots)
	return remap
}

// bytes is the memory the set holds.
func (s *byteSet) bytes() int {
	return cap(s.data) + 4*cap(s.ends) + 4*cap(s.slots)
}
