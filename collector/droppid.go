package collector

import (
	"strconv"
)

// DropPID deletes the entries of an exited process from the config's
// maps (every key whose "pid" label is pid), so no stale series remain.
func (cfg *Config) DropPID(pid int) {
	want := strconv.Itoa(pid)
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	for _, mm := range cfg.metrics {
		mm.dropLabel("pid", want)
	}
	for _, em := range cfg.events {
		em.dropPID(uint32(pid))
	}
}

// dropLabel deletes the keys whose label name decodes to value.
func (mm *mapMetric) dropLabel(name, value string) {
	idx := -1
	for i, n := range mm.names {
		if n == name {
			idx = i
		}
	}
	if idx < 0 || mm.labels == nil || mm.splitCPU {
		return
	}
	var doomed [][]byte
	_ = mm.reader.each(func(key []byte, _ []uint64, _ []byte) {
		k := key
		if mm.kind == kindHistogram {
			k = key[:len(key)-mm.bucketSize]
		}
		vs, err := mm.labels.Decode(k)
		if err == nil && vs[idx] == value {
			doomed = append(doomed, append([]byte(nil), key...))
		}
	})
	for _, k := range doomed {
		_ = mm.reader.m.Delete(k)
		mm.forget(k)
	}
}
