package targets

import (
	"bytes"
	"context"
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

//go:embed procevents.bpf.o
var procEventsObject []byte

// EventKind says whether a process started or exited.
type EventKind int

// Event kinds.
const (
	Start EventKind = iota + 1
	Exit
)

// Event is a selected process starting (or found at subscription) or
// exiting.
type Event struct {
	Kind    EventKind
	Process Process
}

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	ProcRoot string
	// PollInterval rescans /proc: the only discovery when the exec/exit
	// tracepoints cannot be used, a safety net for missed events otherwise.
	PollInterval time.Duration
	// NoBPF forces polling (tests of the fallback).
	NoBPF  bool
	Logger *slog.Logger
}

// Watcher follows processes for subscriptions.
type Watcher struct {
	opts WatcherOptions

	mu     sync.Mutex
	subs   map[int]*subscription
	nextID int
	// known maps a pid to the process as last read, for every pid some
	// subscription tracks.
	coll    *ebpf.Collection
	links   []link.Link
	reader  *ringbuf.Reader
	usePoll bool
}

type subscription struct {
	sel Selector
	fn  func(Event)
	mu  sync.Mutex // orders deliveries
	// pids this subscription has delivered Start for, with start time.
	pids map[int]uint64
}

// NewWatcher starts following process exec and exit events.
func NewWatcher(opts WatcherOptions) (*Watcher, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{opts: opts, subs: map[int]*subscription{}}
	if opts.NoBPF {
		w.usePoll = true
	} else if err := w.loadBPF(); err != nil {
		opts.Logger.Warn("exec/exit tracepoints unavailable; discovering processes by polling /proc", "err", err, "interval", w.pollInterval())
		w.usePoll = true
	}
	return w, nil
}

func (w *Watcher) pollInterval() time.Duration {
	if w.opts.PollInterval > 0 {
		return w.opts.PollInterval
	}
	if w.usePoll {
		return time.Second
	}
	return 30 * time.Second
}

func (w *Watcher) loadBPF() error {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(procEventsObject))
	if err != nil {
		return err
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return fmt.Errorf("loading process event programs: %w", err)
	}
	for prog, tp := range map[string]string{"on_exec": "sched_process_exec", "on_exit": "sched_process_exit"} {
		l, err := link.Tracepoint("sched", tp, coll.Programs[prog], nil)
		if err != nil {
			w.closeBPF()
			coll.Close()
			return fmt.Errorf("tracepoint sched/%s: %w", tp, err)
		}
		w.links = append(w.links, l)
	}
	rd, err := ringbuf.NewReader(coll.Maps["events"])
	if err != nil {
		w.closeBPF()
		coll.Close()
		return err
	}
	w.coll, w.reader = coll, rd
	return nil
}

func (w *Watcher) closeBPF() {
	for _, l := range w.links {
		l.Close()
	}
	w.links = nil
	if w.reader != nil {
		w.reader.Close()
		w.reader = nil
	}
	if w.coll != nil {
		w.coll.Close()
		w.coll = nil
	}
}

// Polling reports whether discovery falls back to polling /proc.
func (w *Watcher) Polling() bool { return w.usePoll }

// Run handles events until ctx ends, then releases the tracepoints.
func (w *Watcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if w.reader != nil {
		wg.Add(1)
		go func() { defer wg.Done(); w.readEvents() }()
	}
	tick := time.NewTicker(w.pollInterval())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if w.reader != nil {
				w.reader.Close()
			}
			wg.Wait()
			w.closeBPF()
			return nil
		case <-tick.C:
			w.rescan()
		}
	}
}

// eventPoll bounds how long an event can wait in the ring buffer. The
// kernel's wakeup of the reader goes through irq_work, which on some
// virtual machines only runs at the next timer tick of an idle CPU
// (measured here: 3 to 230 ms); polling at this interval makes the exec to
// attach delay independent of that.
const eventPoll = 5 * time.Millisecond

func (w *Watcher) readEvents() {
	for {
		w.reader.SetDeadline(time.Now().Add(eventPoll))
		rec, err := w.reader.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			if !errors.Is(err, ringbuf.ErrClosed) {
				w.opts.Logger.Warn("reading process events", "err", err)
			}
			return
		}
		if len(rec.RawSample) < 8 {
			continue
		}
		kind := binary.NativeEndian.Uint32(rec.RawSample)
		pid := int(binary.NativeEndian.Uint32(rec.RawSample[4:]))
		switch kind {
		case 1:
			t0 := time.Now()
			w.exec(pid)
			w.opts.Logger.Debug("exec handled", "pid", pid, "took", time.Since(t0))
		case 2:
			w.exit(pid)
		}
	}
}

func (w *Watcher) subscriptions() []*subscription {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*subscription, 0, len(w.subs))
	for _, s := range w.subs {
		out = append(out, s)
	}
	return out
}

// exec checks a process that just exec'ed against every subscription. A
// process that execs something no longer selected counts as exited.
func (w *Watcher) exec(pid int) {
	p, err := ReadProcess(w.opts.ProcRoot, pid)
	if err != nil {
		w.exit(pid)
		return
	}
	for _, s := range w.subscriptions() {
		s.mu.Lock()
		_, had := s.pids[pid]
		match := s.sel.Matches(p)
		switch {
		case match && !had:
			s.pids[pid] = p.StartTime
			s.fn(Event{Kind: Start, Process: p})
		case !match && had:
			delete(s.pids, pid)
			s.fn(Event{Kind: Exit, Process: Process{PID: pid}})
		}
		s.mu.Unlock()
	}
}

func (w *Watcher) exit(pid int) {
	for _, s := range w.subscriptions() {
		s.mu.Lock()
		if _, had := s.pids[pid]; had {
			delete(s.pids, pid)
			s.fn(Event{Kind: Exit, Process: Process{PID: pid}})
		}
		s.mu.Unlock()
	}
}

// rescan reconciles every subscription with /proc: processes missed or
// gone (and pids reused) are delivered.
func (w *Watcher) rescan() {
	subs := w.subscriptions()
	if len(subs) == 0 {
		return
	}
	pids, err := listPIDs(w.opts.ProcRoot)
	if err != nil {
		w.opts.Logger.Warn("scanning processes", "err", err)
		return
	}
	procs := make(map[int]Process, len(pids))
	for _, pid := range pids {
		if p, err := ReadProcess(w.opts.ProcRoot, pid); err == nil {
			procs[pid] = p
		}
	}
	for _, s := range subs {
		s.reconcile(procs)
	}
}

func (s *subscription) reconcile(procs map[int]Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid, start := range s.pids {
		p, ok := procs[pid]
		if !ok || p.StartTime != start || !s.sel.Matches(p) {
			delete(s.pids, pid)
			s.fn(Event{Kind: Exit, Process: Process{PID: pid}})
		}
	}
	for pid, p := range procs {
		if _, had := s.pids[pid]; !had && s.sel.Matches(p) {
			s.pids[pid] = p.StartTime
			s.fn(Event{Kind: Start, Process: p})
		}
	}
}

// Subscribe delivers Start for every selected process now running and for
// each one started later, and Exit when they exit. Deliveries for one
// subscription are serialized. The returned function unsubscribes.
func (w *Watcher) Subscribe(sel Selector, fn func(Event)) (func(), error) {
	if err := sel.Validate(); err != nil {
		return nil, err
	}
	s := &subscription{sel: sel, fn: fn, pids: map[int]uint64{}}
	w.mu.Lock()
	id := w.nextID
	w.nextID++
	w.subs[id] = s
	w.mu.Unlock()
	pids, err := listPIDs(w.opts.ProcRoot)
	if err != nil {
		return nil, err
	}
	procs := map[int]Process{}
	for _, pid := range pids {
		if p, err := ReadProcess(w.opts.ProcRoot, pid); err == nil {
			procs[pid] = p
		}
	}
	s.mu.Lock()
	for pid, p := range procs {
		if _, had := s.pids[pid]; !had && s.sel.Matches(p) {
			s.pids[pid] = p.StartTime
			s.fn(Event{Kind: Start, Process: p})
		}
	}
	s.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.subs, id)
		w.mu.Unlock()
	}, nil
}

// Tracked counts the processes subscriptions follow now.
func (w *Watcher) Tracked() int {
	n := 0
	for _, s := range w.subscriptions() {
		s.mu.Lock()
		n += len(s.pids)
		s.mu.Unlock()
	}
	return n
}
