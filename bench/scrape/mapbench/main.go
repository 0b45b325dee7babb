// Command mapbench fills the benchmark map of a running probe_exporter and
// times the raw read of it (BatchLookup into reused buffers, 4096 keys a
// call, nothing else), the floor of any scrape. bench/scrape/scrape.sh
// runs it beside the exporter and bpftool.
//
//	mapbench -pid PID -name bench_total -fill 100000   # prints the map id
//	mapbench -pid PID -name bench_total -read 5        # prints ms per read, one a line
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

func main() {
	pid := flag.Int("pid", 0, "process holding the map")
	name := flag.String("name", "bench_total", "map name")
	fill := flag.Int("fill", 0, "fill the map with this many keys")
	read := flag.Int("read", 0, "time this many full reads of the map")
	flag.Parse()
	if err := run(*pid, *name, *fill, *read); err != nil {
		fmt.Fprintln(os.Stderr, "mapbench:", err)
		os.Exit(1)
	}
}

func run(pid int, name string, fill, reads int) error {
	m, id, err := findMap(pid, name)
	if err != nil {
		return err
	}
	defer m.Close()
	if fill > 0 {
		if err := fillMap(m, fill); err != nil {
			return err
		}
		fmt.Println(id)
	}
	for i := 0; i < reads; i++ {
		start := time.Now()
		n, err := readAll(m)
		if err != nil {
			return err
		}
		fmt.Printf("%.3f %d\n", float64(time.Since(start).Microseconds())/1000, n)
	}
	return nil
}

// findMap finds the map among the file descriptors of pid.
func findMap(pid int, name string) (*ebpf.Map, ebpf.MapID, error) {
	infos, err := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	if err != nil {
		return nil, 0, err
	}
	for _, p := range infos {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			v, ok := strings.CutPrefix(line, "map_id:")
			if !ok {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				continue
			}
			m, err := ebpf.NewMapFromID(ebpf.MapID(id))
			if err != nil {
				continue
			}
			if info, err := m.Info(); err == nil && info.Name == name {
				return m, ebpf.MapID(id), nil
			}
			m.Close()
		}
	}
	return nil, 0, fmt.Errorf("process %d holds no map named %q", pid, name)
}

// fillMap puts n keys {id, id%7, "cmd" + id%10} -> id.
func fillMap(m *ebpf.Map, n int) error {
	const chunk = 100_000
	keys := make([][16]byte, 0, chunk)
	vals := make([]uint64, 0, chunk)
	for off := 0; off < n; off += chunk {
		keys, vals = keys[:0], vals[:0]
		for i := off; i < min(off+chunk, n); i++ {
			var k [16]byte
			binary.NativeEndian.PutUint32(k[0:], uint32(i))
			binary.NativeEndian.PutUint32(k[4:], uint32(i%7))
			copy(k[8:], "cmd"+strconv.Itoa(i%10))
			keys = append(keys, k)
			vals = append(vals, uint64(i))
		}
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			return fmt.Errorf("filling the map: %w", err)
		}
	}
	return nil
}

// readAll reads every entry as the exporter's map reader does.
func readAll(m *ebpf.Map) (int, error) {
	const batch = 4096
	keys := make([][16]byte, batch)
	vals := make([]uint64, batch)
	var cursor ebpf.MapBatchCursor
	total := 0
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		total += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
