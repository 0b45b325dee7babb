// Package events reads the records BPF programs send to user space through
// a ring buffer (BPF_MAP_TYPE_RINGBUF) or a perf event array
// (BPF_MAP_TYPE_PERF_EVENT_ARRAY): one Reader per map, blocking on the
// map's epoll until records arrive, handing each record to one Handler,
// which fans it out to whatever consumes that map (metrics, spans).
package events

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"
)

// PerfBufferBytes is the size of the buffer a perf event array gets on
// each CPU: 64 pages of 4 KiB, room for about 5,000 records of 32 bytes
// (each sample carries 12 bytes of headers and is padded to 8 bytes) per
// CPU before the kernel counts lost samples.
const PerfBufferBytes = 256 << 10

// Handler consumes the records of one map.
type Handler interface {
	// Record is called with each record, in the reader's goroutine; raw
	// is valid only during the call.
	Record(raw []byte)
	// Lost is called with the number of records the kernel dropped
	// because the buffer was full (perf event arrays report it; ring
	// buffers do not, see LostMap).
	Lost(n uint64)
}

// Reader reads the records of one ring buffer or perf event array.
type Reader struct {
	name string
	ring *ringbuf.Reader
	perf *perf.Reader
}

// IsEventMap reports whether m is a map whose records a Reader reads.
func IsEventMap(m *ebpf.Map) bool {
	return m.Type() == ebpf.RingBuf || m.Type() == ebpf.PerfEventArray
}

// NewReader opens the map named name for reading.
func NewReader(name string, m *ebpf.Map) (*Reader, error) {
	r := &Reader{name: name}
	var err error
	switch m.Type() {
	case ebpf.RingBuf:
		r.ring, err = ringbuf.NewReader(m)
	case ebpf.PerfEventArray:
		r.perf, err = perf.NewReader(m, PerfBufferBytes)
	default:
		return nil, fmt.Errorf("map %q is a %s, not a ring buffer or perf event array", name, m.Type())
	}
	if err != nil {
		return nil, fmt.Errorf("map %q: opening its reader: %w", name, err)
	}
	return r, nil
}

// MaxRecord is the largest record the map can carry: a ring buffer's
// size less its 8-byte record header; a perf sample's 16-bit size less
// its headers.
func MaxRecord(m *ebpf.Map) int {
	switch m.Type() {
	case ebpf.RingBuf:
		return int(m.MaxEntries()) - 8
	case ebpf.PerfEventArray:
		return 0xffff - 8 - 4
	}
	return 0
}

// Run hands records to h until ctx ends or the reader is closed, then
// closes the reader. Reading blocks in the kernel (epoll) between
// records; nothing polls.
func (r *Reader) Run(ctx context.Context, h Handler) error {
	stop := context.AfterFunc(ctx, func() { r.Close() })
	defer stop()
	defer r.Close()
	if r.ring != nil {
		var rec ringbuf.Record
		for {
			if err := r.ring.ReadInto(&rec); err != nil {
				if errors.Is(err, os.ErrClosed) || ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("ring buffer %q: %w", r.name, err)
			}
			h.Record(rec.RawSample)
		}
	}
	var rec perf.Record
	for {
		if err := r.perf.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("perf event array %q: %w", r.name, err)
		}
		if rec.LostSamples > 0 {
			h.Lost(rec.LostSamples)
			continue
		}
		h.Record(rec.RawSample)
	}
}

// Close stops Run.
func (r *Reader) Close() error {
	if r.ring != nil {
		return r.ring.Close()
	}
	return r.perf.Close()
}

// LostMapSuffix names the counter of records a program could not put in
// a ring buffer: for ring buffer NAME, a map NAME_lost (an array or per-CPU
// array of one u64) that the program adds to when bpf_ringbuf_output or
// bpf_ringbuf_reserve fails (include/events.bpf.h does it). The kernel
// counts no such thing for ring buffers.
const LostMapSuffix = "_lost"

// LostCount reads a ring buffer's lost map: the u64 at key 0, summed
// across CPUs for a per-CPU array.
func LostCount(m *ebpf.Map) (uint64, error) {
	var key uint32
	switch m.Type() {
	case ebpf.Array:
		var v uint64
		if err := m.Lookup(key, &v); err != nil {
			return 0, err
		}
		return v, nil
	case ebpf.PerCPUArray:
		var vs []uint64
		if err := m.Lookup(key, &vs); err != nil {
			return 0, err
		}
		var sum uint64
		for _, v := range vs {
			sum += v
		}
		return sum, nil
	}
	return 0, fmt.Errorf("a lost counter is an array or per-CPU array of one u64, not a %s", m.Type())
}

// CheckLostMap tells whether m can count lost records (LostCount).
func CheckLostMap(m *ebpf.Map) error {
	if (m.Type() != ebpf.Array && m.Type() != ebpf.PerCPUArray) || m.KeySize() != 4 || m.ValueSize() != 8 {
		return fmt.Errorf("a lost counter is an array or per-CPU array with u32 keys and u64 values, not a %s with %d-byte keys and %d-byte values", m.Type(), m.KeySize(), m.ValueSize())
	}
	return nil
}
