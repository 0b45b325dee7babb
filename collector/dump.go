package collector

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// DumpMaps writes the raw contents of the configs' metric maps with the
// labels each key decodes to (the /maps debug page). A map that cannot be
// read is reported in the text; the error is the writer's.
func DumpMaps(w io.Writer, cfgs []*Config) error {
	bw := bufio.NewWriter(w)
	for _, cfg := range cfgs {
		cfg.dumpMaps(bw)
	}
	return bw.Flush()
}

// dumpMaps writes one config's maps.
func (cfg *Config) dumpMaps(bw *bufio.Writer) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	fmt.Fprintf(bw, "## config %s\n", cfg.Name())
	for _, mm := range cfg.metrics {
		fmt.Fprintf(bw, "### %s\n", mm.name)
		err := mm.reader.each(func(key []byte, vals []uint64, raw []byte) {
			labels := "(no labels)"
			if mm.labels != nil {
				k := key
				if mm.kind == kindHistogram {
					k = key[:len(key)-mm.bucketSize]
				}
				if mm.splitCPU && !mm.cpuOnly {
					k = nil
				}
				if k != nil {
					vs, err := mm.labels.Decode(k)
					if err != nil {
						labels = "error: " + err.Error()
					} else {
						labels = strings.Join(vs, ", ")
					}
				}
			}
			if raw != nil {
				fmt.Fprintf(bw, "%s (%s) -> %s\n", hex.EncodeToString(key), labels, hex.EncodeToString(raw))
				return
			}
			fmt.Fprintf(bw, "%s (%s) -> %v\n", hex.EncodeToString(key), labels, vals)
		})
		if err != nil {
			fmt.Fprintf(bw, "error: %v\n", err)
		}
	}
}
