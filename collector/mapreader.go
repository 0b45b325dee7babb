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
// possible CPU for per-CPU maps), or, made by newRawMapReader, values of
// any size as bytes. It reuses its buffers across scrapes and reads in
// batches where the kernel supports it, falling back to iteration.
type mapReader struct {
	m       *ebpf.Map
	keySize int
	ncpu    int // values per key: 1, or the number of possible CPUs
	batch   int // entries per batch; 0 once batching is known not to work

	keys   any    // a [][keySize]byte made with reflect, backing keyBuf
	keyBuf []byte // the bytes of keys
	vals   []uint64

	// Raw readers: stride is the bytes of one value as the kernel lays
	// values out (per-CPU maps: the value size rounded up to 8, once per
	// CPU); vals is unused and valArr, a [][stride*ncpu]byte made with
	// reflect, backs valBuf.
	raw    bool
	stride int
	valArr any
	valBuf []byte
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

// newRawMapReader reads a map whose values are of any size (struct
// values, see multivalue.go).
func newRawMapReader(m *ebpf.Map) (*mapReader, error) {
	r := &mapReader{m: m, keySize: int(m.KeySize()), ncpu: 1, raw: true, stride: int(m.ValueSize())}
	if isPerCPU(m.Type()) {
		n, err := ebpf.PossibleCPU()
		if err != nil {
			return nil, fmt.Errorf("counting possible CPUs: %w", err)
		}
		r.ncpu = n
		r.stride = (r.stride + 7) &^ 7
	}
	if batchable[m.Type()] {
		r.batch = max(min(int(m.MaxEntries()), maxBatch), 1)
	}
	return r, nil
}

// byteSlice makes a [][size]byte of n elements with reflect and returns it
// with its bytes.
func byteSlice(size, n int) (any, []byte) {
	t := reflect.ArrayOf(size, reflect.TypeFor[byte]())
	s := reflect.MakeSlice(reflect.SliceOf(t), n, n)
	return s.Interface(), unsafe.Slice((*byte)(s.UnsafePointer()), n*size)
}

func (r *mapReader) grow(n int) {
	if r.keys != nil && len(r.keyBuf) >= n*r.keySize {
		return
	}
	r.keys, r.keyBuf = byteSlice(r.keySize, n)
	if r.raw {
		r.valArr, r.valBuf = byteSlice(r.stride*r.ncpu, n)
		return
	}
	r.vals = make([]uint64, n*r.ncpu)
}

// read calls fn for every entry with the key bytes and its values (one per
// CPU for per-CPU maps). Neither slice may be kept after fn returns.
func (r *mapReader) read(fn func(key []byte, vals []uint64)) error {
	if r.raw {
		return errors.New("values are not u64") // not reached: raw readers are read by readRaw
	}
	if r.batch > 0 {
		err := r.readBatch(func(key []byte, i int) {
			fn(key, r.vals[i*r.ncpu:(i+1)*r.ncpu])
		})
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

// each calls fn for every entry with its key and either its u64 values
// (vals) or, for raw readers, its value bytes (raw).
func (r *mapReader) each(fn func(key []byte, vals []uint64, raw []byte)) error {
	if r.raw {
		return r.readRaw(func(key, val []byte) { fn(key, nil, val) })
	}
	return r.read(func(key []byte, vals []uint64) { fn(key, vals, nil) })
}

// readRaw calls fn for every entry of a raw reader's map with the key
// bytes and the value bytes: ncpu values of stride bytes each. Neither
// slice may be kept after fn returns.
func (r *mapReader) readRaw(fn func(key, val []byte)) error {
	if r.batch > 0 {
		size := r.stride * r.ncpu
		err := r.readBatch(func(key []byte, i int) {
			fn(key, r.valBuf[i*size:(i+1)*size])
		})
		if err == nil {
			return nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		r.batch = 0
	}
	return r.readRawIter(fn)
}

// readBatch reads the map in batches, calling fn with each key and its
// index in the batch's value buffer.
func (r *mapReader) readBatch(fn func(key []byte, i int)) error {
	r.grow(r.batch)
	var cursor ebpf.MapBatchCursor
	for {
		vals := r.valArr
		if !r.raw {
			vals = r.vals[:r.batch*r.ncpu]
		}
		n, err := r.m.BatchLookup(&cursor, r.keys, vals, nil)
		for i := 0; i < n; i++ {
			fn(r.keyBuf[i*r.keySize:(i+1)*r.keySize], i)
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

func (r *mapReader) readRawIter(fn func(key, val []byte)) error {
	key := make([]byte, r.keySize)
	it := r.m.Iterate()
	if !isPerCPU(r.m.Type()) {
		val := make([]byte, r.stride)
		for it.Next(&key, &val) {
			fn(key, val)
		}
		return it.Err()
	}
	// Per CPU: a []([valueSize]byte), one per possible CPU, laid out
	// again at stride as a batch would have it.
	size := int(r.m.ValueSize())
	t := reflect.SliceOf(reflect.ArrayOf(size, reflect.TypeFor[byte]()))
	out := reflect.New(t)
	buf := make([]byte, r.stride*r.ncpu)
	for it.Next(&key, out.Interface()) {
		s := out.Elem()
		clear(buf)
		for cpu := 0; cpu < s.Len() && cpu < r.ncpu; cpu++ {
			copy(buf[cpu*r.stride:], unsafe.Slice((*byte)(s.Index(cpu).Addr().UnsafePointer()), size))
		}
		fn(key, buf)
	}
	return it.Err()
}
