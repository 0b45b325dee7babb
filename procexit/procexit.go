// Package procexit reports the exits of every process on the host, from
// the sched_process_exit tracepoint, to the metrics whose map keys carry
// a pid: their entries are deleted once an exited process's last values
// have been served (collector's expiry).
package procexit

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

//go:embed procexit.bpf.o
var object []byte

// DefaultLogSize is the number of exits kept for readers that have not
// caught up: at 256 KiB it spans many scrape intervals of a busy host.
const DefaultLogSize = 1 << 16

// syncTimeout bounds the wait of Sync for the reader to drain the ring.
const syncTimeout = time.Second

// Watcher follows process exits. Nothing is loaded until the first Sync
// or Since; it stays loaded until Close.
type Watcher struct {
	logger  *slog.Logger
	logSize int

	startOnce sync.Once
	startErr  error
	coll      *ebpf.Collection
	link      link.Link
	rd        *ringbuf.Reader
	done      sync.WaitGroup

	syncMu sync.Mutex // one Sync at a time

	mu      sync.Mutex
	log     []uint32 // ring of the last logSize exits' pids
	head    uint64   // exits seen; the next one's sequence number
	flushed chan struct{}
	// lost is the kernel's count of exits it had no room for when last
	// read, lossAt the head then: readers from before it missed some.
	lost    uint64
	lossAt  uint64
	anyLoss bool
}

// New returns a watcher keeping logSize exits (DefaultLogSize if 0).
func New(logger *slog.Logger, logSize int) *Watcher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if logSize <= 0 {
		logSize = DefaultLogSize
	}
	return &Watcher{logger: logger, logSize: logSize, log: make([]uint32, logSize), flushed: make(chan struct{})}
}

func (w *Watcher) start() error {
	w.startOnce.Do(func() {
		w.startErr = w.load()
		if w.startErr != nil {
			w.logger.Warn("process exit events unavailable; map entries of exited processes are found through /proc instead", "err", w.startErr)
		}
	})
	return w.startErr
}

func (w *Watcher) load() error {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(object))
	if err != nil {
		return err
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return fmt.Errorf("loading the process exit program: %w", err)
	}
	l, err := link.Tracepoint("sched", "sched_process_exit", coll.Programs["on_exit"], nil)
	if err != nil {
		coll.Close()
		return fmt.Errorf("tracepoint sched/sched_process_exit: %w", err)
	}
	rd, err := ringbuf.NewReader(coll.Maps["exits"])
	if err != nil {
		l.Close()
		coll.Close()
		return err
	}
	w.coll, w.link, w.rd = coll, l, rd
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		w.read()
	}()
	return nil
}

// read appends every exit to the log until the reader is closed.
func (w *Watcher) read() {
	var rec ringbuf.Record
	for {
		err := w.rd.ReadInto(&rec)
		switch {
		case errors.Is(err, ringbuf.ErrFlushed):
			w.mu.Lock()
			close(w.flushed)
			w.flushed = make(chan struct{})
			w.mu.Unlock()
			continue
		case errors.Is(err, os.ErrClosed), errors.Is(err, ringbuf.ErrClosed):
			return
		case err != nil:
			w.logger.Error("reading process exits", "err", err)
			return
		}
		if len(rec.RawSample) < 4 {
			continue
		}
		pid := binary.NativeEndian.Uint32(rec.RawSample)
		w.mu.Lock()
		w.log[w.head%uint64(w.logSize)] = pid
		w.head++
		w.mu.Unlock()
	}
}

// Sync makes every exit that happened before the call visible to Since:
// the reader drains the ring buffer up to now (or Sync gives up after a
// second, and those exits come later).
func (w *Watcher) Sync() {
	if w.start() != nil {
		return
	}
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	ch := w.flushed
	w.mu.Unlock()
	// Nothing unread in the ring: the reader has every exit so far (but
	// for one it may be appending right now, which the next Sync has),
	// without the round trip of waking it.
	if w.rd.AvailableBytes() == 0 {
		w.readLost()
		return
	}
	if err := w.rd.Flush(); err == nil {
		t := time.NewTimer(syncTimeout)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
	w.readLost()
}

// readLost notes exits the kernel could not queue since the last look.
func (w *Watcher) readLost() {
	var lost uint64
	if err := w.coll.Maps["lost"].Lookup(uint32(0), &lost); err == nil {
		w.mu.Lock()
		if lost != w.lost {
			w.lost, w.lossAt, w.anyLoss = lost, w.head, true
		}
		w.mu.Unlock()
	}
}

// Since calls fn with the pid of every exit from sequence number seq on
// and returns the next number; complete is false when some exits since
// seq are unknown (past the log, lost by the kernel, or no events at all).
// A seq past the last exit returns the next number.
func (w *Watcher) Since(seq uint64, fn func(pid uint32)) (next uint64, complete bool) {
	if w.start() != nil {
		return 0, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if seq > w.head {
		return w.head, true
	}
	complete = !(w.anyLoss && seq <= w.lossAt)
	if w.head-seq > uint64(w.logSize) {
		seq, complete = w.head-uint64(w.logSize), false
	}
	for ; seq < w.head; seq++ {
		fn(w.log[seq%uint64(w.logSize)])
	}
	return w.head, complete
}

// Lost is the number of exits the kernel could not queue.
func (w *Watcher) Lost() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}

// Close detaches the tracepoint and stops the reader.
func (w *Watcher) Close() error {
	w.startOnce.Do(func() { w.startErr = errors.New("closed") })
	if w.rd == nil {
		return nil
	}
	err := w.rd.Close()
	w.done.Wait()
	w.link.Close()
	w.coll.Close()
	return err
}
