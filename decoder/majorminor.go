package decoder

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/probe-exporter/probe_exporter/config"
)

// majorMinor turns a u32 device number, encoded as the kernel's
// new_encode_dev() does (what userspace sees as dev_t), into the device name
// from /proc/partitions (sda, nvme0n1p2), or "unknown:MAJOR:MINOR".
type majorMinor struct {
	partitions string
	mu         sync.Mutex
	cache      map[uint32][]byte
}

func newMajorMinor(_ config.Decoder, env *Env) (Decoder, error) {
	p := "/proc/partitions"
	if env != nil && env.Partitions != "" {
		p = env.Partitions
	}
	return &majorMinor{partitions: p, cache: map[uint32][]byte{}}, nil
}

func (d *majorMinor) Decode(in []byte) ([]byte, error) {
	if len(in) < 4 {
		return nil, errors.New("device numbers are u32")
	}
	num := binary.NativeEndian.Uint32(in[:4])
	d.mu.Lock()
	defer d.mu.Unlock()
	if name, ok := d.cache[num]; ok {
		return name, nil
	}
	major, minor := unix.Major(uint64(num)), unix.Minor(uint64(num))
	f, err := os.Open(d.partitions)
	if err != nil {
		return nil, fmt.Errorf("resolving device %d:%d: %w", major, minor, err)
	}
	defer f.Close()
	name := partitionName(f, major, minor)
	if name == "" {
		// Not cached: the device may appear later.
		return fmt.Appendf(nil, "unknown:%d:%d", major, minor), nil
	}
	d.cache[num] = []byte(name)
	return d.cache[num], nil
}

// partitionName finds a device in /proc/partitions.
func partitionName(r io.Reader, major, minor uint32) string {
	ma, mi := strconv.FormatUint(uint64(major), 10), strconv.FormatUint(uint64(minor), 10)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == ma && f[1] == mi {
			return f[3]
		}
	}
	return ""
}
