package profile

import (
	"math/rand"
	"slices"
	"testing"
)

// TestHolders: a file is released when the last process mapping it stops
// (exits or maps other files), and only then.
func TestHolders(t *testing.T) {
	a, b, c := fileID{ino: 1}, fileID{ino: 2}, fileID{ino: 3}
	type step struct {
		pid  int
		ids  []fileID // nil with drop: the process exits
		drop bool
		add  bool     // ids are added to what pid holds (before loading)
		want []fileID // released by this step
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"one process exits", []step{{pid: 1, ids: []fileID{a, b}}, {pid: 1, drop: true, want: []fileID{a, b}}}},
		{"shared file stays with the other", []step{
			{pid: 1, ids: []fileID{a, b}}, {pid: 2, ids: []fileID{a}},
			{pid: 1, drop: true, want: []fileID{b}}, {pid: 2, drop: true, want: []fileID{a}}}},
		{"unmapped file released on re-read", []step{
			{pid: 1, ids: []fileID{a, b}}, {pid: 1, ids: []fileID{a, c}, want: []fileID{b}}, {pid: 1, drop: true, want: []fileID{a, c}}}},
		{"same set twice holds once", []step{
			{pid: 1, ids: []fileID{a}}, {pid: 1, ids: []fileID{a}}, {pid: 1, drop: true, want: []fileID{a}}}},
		{"a file mapped twice by one process counts once", []step{
			{pid: 1, ids: []fileID{a, a}}, {pid: 2, ids: []fileID{a}}, {pid: 2, drop: true}, {pid: 1, drop: true, want: []fileID{a}}}},
		{"dropping an unknown pid releases nothing", []step{{pid: 9, drop: true}, {pid: 1, ids: []fileID{a}}, {pid: 9, drop: true}}},
		{"added files are held until set replaces them", []step{
			{pid: 1, ids: []fileID{a}}, {pid: 1, ids: []fileID{b}, add: true}, {pid: 2, ids: []fileID{b}},
			{pid: 1, ids: []fileID{b}, want: []fileID{a}}, {pid: 2, drop: true}, {pid: 1, drop: true, want: []fileID{b}}}},
		{"adding twice holds once", []step{
			{pid: 1, ids: []fileID{a}, add: true}, {pid: 1, ids: []fileID{a}, add: true}, {pid: 1, drop: true, want: []fileID{a}}}},
		{"empty set releases what was held", []step{{pid: 1, ids: []fileID{a}}, {pid: 1, ids: nil, want: []fileID{a}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHolders()
			for i, s := range tc.steps {
				var got []fileID
				switch {
				case s.drop:
					got = h.drop(s.pid)
				case s.add:
					h.add(s.pid, s.ids)
				default:
					got = h.set(s.pid, s.ids)
				}
				sortIDs(got)
				sortIDs(s.want)
				if !slices.Equal(got, s.want) {
					t.Fatalf("step %d: released %v, want %v", i, got, s.want)
				}
				for _, id := range s.want {
					if h.held(id) {
						t.Fatalf("step %d: %v released but still held", i, id)
					}
				}
			}
		})
	}
}

func sortIDs(ids []fileID) {
	slices.SortFunc(ids, func(x, y fileID) int { return int(x.ino) - int(y.ino) })
}

// TestRowSpace: first fit, freed extents merged with their neighbours and
// reused.
func TestRowSpace(t *testing.T) {
	type op struct {
		alloc   uint32 // rows to take, or
		release int    // index (1-based) of an earlier alloc to give back
		want    extent // what alloc gives
		fails   bool
	}
	for _, tc := range []struct {
		name     string
		size     uint32
		ops      []op
		wantFree []extent
	}{
		{"fill and fail", 10, []op{{alloc: 4, want: extent{0, 4}}, {alloc: 6, want: extent{4, 6}}, {alloc: 1, fails: true}}, nil},
		{"freed rows reused", 10, []op{{alloc: 4, want: extent{0, 4}}, {alloc: 6, want: extent{4, 6}}, {release: 1}, {alloc: 3, want: extent{0, 3}}},
			[]extent{{3, 1}}},
		{"first fit, low end first", 10, []op{{alloc: 2, want: extent{0, 2}}, {alloc: 2, want: extent{2, 2}}, {alloc: 2, want: extent{4, 2}},
			{release: 1}, {release: 3}, {alloc: 1, want: extent{0, 1}}}, []extent{{1, 1}, {4, 6}}},
		{"merge with both neighbours", 9, []op{{alloc: 3, want: extent{0, 3}}, {alloc: 3, want: extent{3, 3}}, {alloc: 3, want: extent{6, 3}},
			{release: 1}, {release: 3}, {release: 2}, {alloc: 9, want: extent{0, 9}}}, nil},
		{"fragmented: no extent fits", 9, []op{{alloc: 3, want: extent{0, 3}}, {alloc: 3, want: extent{3, 3}}, {alloc: 3, want: extent{6, 3}},
			{release: 1}, {release: 3}, {alloc: 4, fails: true}}, []extent{{0, 3}, {6, 3}}},
		{"zero rows take nothing", 4, []op{{alloc: 0, want: extent{}}, {alloc: 4, want: extent{0, 4}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newRowSpace(tc.size)
			var got []extent
			for i, o := range tc.ops {
				if o.release > 0 {
					s.release(got[o.release-1])
					got = append(got, extent{})
					continue
				}
				e, ok := s.alloc(o.alloc)
				got = append(got, e)
				if ok == o.fails || ok && e != o.want {
					t.Fatalf("op %d: alloc(%d) = %v, %v; want %v, %v", i, o.alloc, e, ok, o.want, !o.fails)
				}
			}
			if !slices.Equal(s.free, tc.wantFree) {
				t.Errorf("free list %v, want %v", s.free, tc.wantFree)
			}
		})
	}
}

// TestRowSpaceChurn: any order of allocations and releases keeps the free
// list sorted, merged and disjoint from what is in use, and once all is
// released the space is one extent again.
func TestRowSpaceChurn(t *testing.T) {
	const size = 1000
	s := newRowSpace(size)
	r := rand.New(rand.NewSource(1))
	var live []extent
	for i := 0; i < 20000; i++ {
		if len(live) > 0 && r.Intn(2) == 0 {
			j := r.Intn(len(live))
			s.release(live[j])
			live = append(live[:j], live[j+1:]...)
		} else if e, ok := s.alloc(uint32(1 + r.Intn(60))); ok {
			live = append(live, e)
		}
		var inUse [size]bool
		var used uint32
		for _, e := range live {
			for k := e.first; k < e.first+e.count; k++ {
				if inUse[k] {
					t.Fatalf("step %d: row %d handed out twice", i, k)
				}
				inUse[k] = true
			}
			used += e.count
		}
		for k, e := range s.free {
			if k > 0 && s.free[k-1].first+s.free[k-1].count >= e.first {
				t.Fatalf("step %d: free list not sorted and merged: %v", i, s.free)
			}
			for x := e.first; x < e.first+e.count; x++ {
				if inUse[x] {
					t.Fatalf("step %d: row %d both free and in use", i, x)
				}
			}
		}
		if s.used != used {
			t.Fatalf("step %d: used %d, want %d", i, s.used, used)
		}
	}
	for _, e := range live {
		s.release(e)
	}
	if !slices.Equal(s.free, []extent{{0, size}}) || s.used != 0 {
		t.Errorf("after releasing all: free %v, used %d", s.free, s.used)
	}
}

// TestShares: a non-root user gets a quarter, non-root users together half,
// root the rest; one file at most its limit; refunds make room again.
func TestShares(t *testing.T) {
	type op struct {
		uid    uint32
		n      int64
		refund bool
		want   skipReason
	}
	lim := shareLimits(100, 30)
	for _, tc := range []struct {
		name string
		ops  []op
	}{
		{"file limit, for root too", []op{{uid: 0, n: 31, want: skipFile}, {uid: 1000, n: 31, want: skipFile}, {uid: 0, n: 30}}},
		{"one user a quarter", []op{{uid: 1000, n: 20}, {uid: 1000, n: 5}, {uid: 1000, n: 1, want: skipUser}, {uid: 1001, n: 1}}},
		{"users together half", []op{{uid: 1000, n: 25}, {uid: 1001, n: 25}, {uid: 1002, n: 1, want: skipUsers}, {uid: 0, n: 30}}},
		{"root takes the rest, then full", []op{{uid: 1000, n: 25}, {uid: 0, n: 30}, {uid: 0, n: 30}, {uid: 0, n: 15}, {uid: 0, n: 1, want: skipFull},
			{uid: 1001, n: 1, want: skipFull}}},
		{"a refund makes room", []op{{uid: 1000, n: 25}, {uid: 1000, n: 10, want: skipUser}, {uid: 1000, n: 20, refund: true}, {uid: 1000, n: 10}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newShares(lim)
			for i, o := range tc.ops {
				if o.refund {
					s.refund(o.uid, o.n)
					continue
				}
				got := s.admit(o.uid, o.n)
				if got != o.want {
					t.Fatalf("op %d: admit(uid %d, %d) = %q, want %q", i, o.uid, o.n, got, o.want)
				}
				if got == "" {
					s.charge(o.uid, o.n)
				}
			}
		})
	}
}

// FuzzRowSpace: any sequence of allocations and releases (each byte an
// operation) keeps every row handed out at most once, the free list sorted,
// merged and apart from what is in use, and the count of used rows right.
func FuzzRowSpace(f *testing.F) {
	f.Add([]byte{10, 20, 30, 0x81, 5, 0x80, 0x82, 200})
	f.Add([]byte{255, 255, 255, 255, 0x80, 1, 1, 0x81})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const size = 512
		s := newRowSpace(size)
		var live []extent
		for _, op := range ops {
			if op&0x80 != 0 && len(live) > 0 {
				j := int(op&0x7f) % len(live)
				s.release(live[j])
				live = append(live[:j], live[j+1:]...)
			} else if e, ok := s.alloc(uint32(op & 0x7f)); ok && e.count > 0 {
				live = append(live, e)
			}
		}
		var inUse [size]bool
		var used uint32
		for _, e := range live {
			for k := e.first; k < e.first+e.count; k++ {
				if k >= size || inUse[k] {
					t.Fatalf("row %d handed out twice or out of range: %v", k, live)
				}
				inUse[k] = true
			}
			used += e.count
		}
		for k, e := range s.free {
			if k > 0 && s.free[k-1].first+s.free[k-1].count >= e.first {
				t.Fatalf("free list not sorted and merged: %v", s.free)
			}
			for x := e.first; x < e.first+e.count; x++ {
				if inUse[x] {
					t.Fatalf("row %d both free and in use", x)
				}
			}
		}
		if s.used != used {
			t.Fatalf("used %d, want %d", s.used, used)
		}
	})
}
