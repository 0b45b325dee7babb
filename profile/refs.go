package profile

// holders counts, for each file, the processes that map it. A process's
// set is replaced whole each time its mappings are read (set) and dropped
// when it exits (drop); a file no process holds any more is released, and
// its tables with it.
type holders struct {
	byPID map[int]map[fileID]struct{}
	count map[fileID]int
}

func newHolders() *holders {
	return &holders{byPID: map[int]map[fileID]struct{}{}, count: map[fileID]int{}}
}

// set makes ids the files pid maps; it returns the files no process holds
// any more (those pid mapped before and no other process maps).
func (h *holders) set(pid int, ids []fileID) (released []fileID) {
	next := make(map[fileID]struct{}, len(ids))
	for _, id := range ids {
		if _, dup := next[id]; dup {
			continue
		}
		next[id] = struct{}{}
		if _, had := h.byPID[pid][id]; !had {
			h.count[id]++
		}
	}
	for id := range h.byPID[pid] {
		if _, kept := next[id]; !kept {
			released = h.unref(id, released)
		}
	}
	h.byPID[pid] = next
	return released
}

// add adds ids to the files pid maps, keeping those it had: a process's
// files are held from before they are loaded until set replaces the set.
func (h *holders) add(pid int, ids []fileID) {
	cur := h.byPID[pid]
	if cur == nil {
		cur = make(map[fileID]struct{}, len(ids))
		h.byPID[pid] = cur
	}
	for _, id := range ids {
		if _, had := cur[id]; !had {
			cur[id] = struct{}{}
			h.count[id]++
		}
	}
}

// drop forgets pid; it returns the files no process holds any more.
func (h *holders) drop(pid int) (released []fileID) {
	for id := range h.byPID[pid] {
		released = h.unref(id, released)
	}
	delete(h.byPID, pid)
	return released
}

func (h *holders) unref(id fileID, released []fileID) []fileID {
	if h.count[id]--; h.count[id] <= 0 {
		delete(h.count, id)
		released = append(released, id)
	}
	return released
}

// held reports whether some process holds id.
func (h *holders) held(id fileID) bool { return h.count[id] > 0 }

// pids lists the processes holding files (or holding none, once set).
func (h *holders) pids() []int {
	out := make([]int, 0, len(h.byPID))
	for pid := range h.byPID {
		out = append(out, pid)
	}
	return out
}
