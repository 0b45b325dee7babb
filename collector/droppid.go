package collector

import (
	"strconv"
)

// DropPID deletes the map entries of an exited process from the config's
// maps (every key whose "pid" label is pid), so no stale series remain.
func (c *Collector) DropPID(config string, pid int) {
	want := strconv.Itoa(pid)
	for _, cfg := range c.Configs() {
		if cfg.Name() != config {
			continue
		}
		cfg.mu.Lock()
		for _, mm := range cfg.metrics {
			mm.dropLabel("pid", want)
		}
		cfg.mu.Unlock()
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
