package collector

import (
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// mapReader reads every entry of a map whose values are u64 (one per
// possible CPU for per-CPU maps). It reuses its buffers across scrapes and
// reads in batches where the kernel supports it, falling back to iteration.
type mapReader struct {
	m       *ebpf.Map
	keySize int
	ncpu    int // values per key: 1, or the number of possible CPUs
	batch   int // entries per batch; 0 once batching is known not to work

	keys   any    // a [][keySize]byte made with reflect, backing keyBuf
	keyBuf []byte // the bytes of keys
	vals   []uint64
}

// batchable lists map types whose kernel implementation has batch ops.
var batchable = map[ebpf.MapType]bool{
	ebpf.Hash:           true,
	ebpf.LRUHash:        true,
	ebpf.PerCPUHash:     true,
	ebpf.LRUCPUHash:     true,
	ebpf.Array:          true,
	ebpf.PerCPUArray:    true,
	ebpf.LPMTrie:        false,
	ebpf.PerfEventArray: false,
}

func isPerCPU(t ebpf.MapType) bool {
	return t == ebpf.PerCPUHash || t == ebpf.PerCPUArray || t == ebpf.LRUCPUHash
}

const maxBatch = 4096

func newMapReader(m *ebpf.Map) (*mapReader, error) {
	if m.ValueSize() != 8 {
		return nil, fmt.Errorf("map values are %d bytes; metrics need u64 (8-byte) values", m.ValueSize())
	}
	r := &mapReader{m: m, keySize: int(m.KeySize()), ncpu: 1}
	if isPerCPU(m.Type()) {
		n, err := ebpf.PossibleCPU()
		if err != nil {
			return nil, fmt.Errorf("counting possible CPUs: %w", err)
		}
		r.ncpu = n
	}
	if batchable[m.Type()] {
		r.batch = min(int(m.MaxEntries()), maxBatch)
		if r.batch < 1 {
			r.batch = 1
		}
	}
	return r, nil
}

func (r *mapReader) grow(n int) {
	if r.keys != nil && len(r.keyBuf) >= n*r.keySize {
		return
	}
	t := reflect.ArrayOf(r.keySize, reflect.TypeFor[byte]())
	s := reflect.MakeSlice(reflect.SliceOf(t), n, n)
	r.keys = s.Interface()
	r.keyBuf = unsafe.Slice((*byte)(s.UnsafePointer()), n*r.keySize)
	r.vals = make([]uint64, n*r.ncpu)
}

// read calls fn for every entry with the key bytes and its values (one per
// CPU for per-CPU maps). Neither slice may be kept after fn returns.
func (r *mapReader) read(fn func(key []byte, vals []uint64)) error {
	if r.batch > 0 {
		err := r.readBatch(fn)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		r.batch = 0
	}
	return r.readIter(fn)
}

func (r *mapReader) readBatch(fn func(key []byte, vals []uint64)) error {
	r.grow(r.batch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := r.m.BatchLookup(&cursor, r.keys, r.vals[:r.batch*r.ncpu], nil)
		for i := 0; i < n; i++ {
			fn(r.keyBuf[i*r.keySize:(i+1)*r.keySize], r.vals[i*r.ncpu:(i+1)*r.ncpu])
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, unix.ENOSPC) && n == 0 && r.batch < int(r.m.MaxEntries()):
			// A hash bucket holds more entries than the batch; the cursor
			// did not move, so go on from it with a bigger batch.
			r.batch *= 2
			r.grow(r.batch)
		case err != nil:
			return err
		}
	}
}

func (r *mapReader) readIter(fn func(key []byte, vals []uint64)) error {
	key := make([]byte, r.keySize)
	it := r.m.Iterate()
	if r.ncpu > 1 || isPerCPU(r.m.Type()) {
		var vals []uint64
		for it.Next(&key, &vals) {
			fn(key, vals)
		}
		return it.Err()
	}
	var v uint64
	vals := []uint64{0}
	for it.Next(&key, &v) {
		vals[0] = v
		fn(key, vals)
	}
	return it.Err()
}
