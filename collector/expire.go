package collector

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/probe-exporter/probe_exporter/config"
)

// ProcessExits tells which processes have exited, as the kernel's
// sched_process_exit tracepoint reports them (package procexit).
type ProcessExits interface {
	// Sync makes every exit that happened before the call visible to
	// Since.
	Sync()
	// Since calls fn with the pid (in the initial pid namespace, as BPF
	// programs see it) of every process that exited from sequence number
	// seq on and returns the number to pass next; a seq past the last
	// exit returns the next number and no pids. complete is false when
	// some of those exits are unknown: more than the log keeps, events the
	// kernel could not queue, or no exit events at all.
	Since(seq uint64, fn func(pid uint32)) (next uint64, complete bool)
}

// Reasons of probe_exporter_map_entries_expired_total.
const (
	expiredExit   = "process_exit"
	expiredMaxAge = "max_age"
)

// expiry deletes map entries from the kernel map after the scrape that
// read them, so that the last value of a key is served once and then the
// key is gone:
//
//   - keys whose pid label is a process that exited before the scrape's
//     read began (so its value was final when read);
//   - with max_age, keys whose value has not changed for that long.
//
// When exit events are incomplete (lost, or no tracepoint), the pids read
// are looked up in /proc after the read, and the keys of those gone are
// deleted after the next scrape.
type expiry struct {
	m     *ebpf.Map
	exits ProcessExits // nil: /proc only

	pidOff, pidSize int // the pid label in the raw key; pidSize 0 without one
	seq             uint64
	begun           uint64              // seq when the scrape began
	window          map[uint32]struct{} // exited before this scrape's read
	pending         map[uint32]struct{} // found gone after the previous scrape
	suspect         map[uint32]struct{} // read while exits were incomplete
	complete        bool
	procRoot        string

	maxAge time.Duration
	ages   map[string]keyAge
	gen    uint32
	now    time.Time

	doomed        [][]byte
	doomedReasons []string
	expired       map[string]prometheus.Counter
}

// keyAge is the last value of a key and since when it has it.
type keyAge struct {
	sum   uint64
	since time.Time
	gen   uint32
}

// newExpiry sets up the expiry of a metric's keys, or returns nil when it
// has none: no pid label (or the "pid" label of a config whose processes
// the userspace watcher follows, which drops them itself) and no max_age.
func (b *configBuilder) newExpiry(cfg config.Config, mm *mapMetric, name string, labels []config.Label, maxAge config.Duration) (*expiry, error) {
	// The labels of the kernel's key: not the bucket of a histogram, not
	// the cpu of a per-CPU map split by CPU.
	keyLabels := labels
	if mm.hist != nil || mm.splitCPU {
		keyLabels = keyLabels[:len(keyLabels)-1]
	}
	pidIdx := config.ExpiringLabel(keyLabels)
	if pidIdx >= 0 && cfg.Attachments != nil && keyLabels[pidIdx].Name == "pid" {
		pidIdx = -1 // DropPID deletes them when the watcher sees the exit
	}
	if pidIdx < 0 && maxAge == 0 {
		return nil, nil
	}
	m := mm.reader.m
	switch m.Type() {
	case ebpf.Array, ebpf.PerCPUArray:
		if maxAge > 0 || keyLabels[pidIdx].Expire == config.ExpireProcessExit {
			return nil, fmt.Errorf("map %q is an array, whose entries cannot be deleted: expire and max_age need a hash map", name)
		}
		return nil, nil // a pid decoder on an array: nothing to delete
	}
	e := &expiry{
		m:        m,
		exits:    b.exits,
		maxAge:   time.Duration(maxAge),
		procRoot: b.procRoot,
		window:   map[uint32]struct{}{},
		pending:  map[uint32]struct{}{},
		suspect:  map[uint32]struct{}{},
		expired:  map[string]prometheus.Counter{},
	}
	if pidIdx >= 0 {
		for _, l := range keyLabels[:pidIdx] {
			e.pidOff += int(l.Size + l.Padding)
		}
		e.pidSize = int(keyLabels[pidIdx].Size)
		e.seq = math.MaxUint64
		if e.exits != nil {
			e.exits.Sync()
			e.seq, _ = e.exits.Since(e.seq, func(uint32) {})
		}
		e.expired[expiredExit] = b.expired.WithLabelValues(cfg.Name, name, expiredExit)
	}
	if e.maxAge > 0 {
		e.ages = map[string]keyAge{}
		e.expired[expiredMaxAge] = b.expired.WithLabelValues(cfg.Name, name, expiredMaxAge)
	}
	return e, nil
}

// begin starts a scrape: the exits so far make its window. What a failed
// scrape (no end) doomed is forgotten: it was not served.
func (e *expiry) begin() {
	e.gen++
	e.now = time.Now()
	clear(e.doomed)
	e.doomed, e.doomedReasons = e.doomed[:0], e.doomedReasons[:0]
	if e.pidSize == 0 {
		return
	}
	clear(e.window)
	clear(e.suspect)
	e.complete = false
	if e.exits != nil {
		e.exits.Sync()
		e.begun = e.seq
		e.seq, e.complete = e.exits.Since(e.seq, func(pid uint32) { e.window[pid] = struct{}{} })
	}
}

// abort ends a scrape that failed: its window of exits comes again in the
// next one.
func (e *expiry) abort() {
	if e.pidSize > 0 && e.exits != nil {
		e.seq = e.begun
	}
}

// seeU64 is see for maps of u64 values.
func (e *expiry) seeU64(key []byte, vals []uint64) {
	var sum uint64
	if e.maxAge > 0 {
		for _, v := range vals {
			sum += v
		}
	}
	e.check(key, sum)
}

// see accounts one entry read: its key is doomed if its process exited
// before the read, or if its value is unchanged for max_age.
func (e *expiry) see(key, val []byte) {
	var sum uint64
	if e.maxAge > 0 {
		// Any change of the value bytes is a change.
		for i := 0; i+8 <= len(val); i += 8 {
			sum = sum*31 + binary.NativeEndian.Uint64(val[i:])
		}
		for _, b := range val[len(val)&^7:] {
			sum = sum*31 + uint64(b)
		}
	}
	e.check(key, sum)
}

func (e *expiry) check(key []byte, sum uint64) {
	if e.pidSize > 0 {
		pid, ok := e.pid(key)
		if ok {
			_, exited := e.window[pid]
			if _, gone := e.pending[pid]; exited || gone {
				e.doom(key, expiredExit)
				return
			}
			if !e.complete && pid != 0 {
				e.suspect[pid] = struct{}{}
			}
		}
	}
	if e.maxAge == 0 {
		return
	}
	a, ok := e.ages[string(key)]
	switch {
	case !ok || a.sum != sum:
		a = keyAge{sum: sum, since: e.now}
	case e.now.Sub(a.since) >= e.maxAge:
		delete(e.ages, string(key))
		e.doom(key, expiredMaxAge)
		return
	}
	a.gen = e.gen
	e.ages[string(key)] = a
}

func (e *expiry) pid(key []byte) (uint32, bool) {
	b := key[e.pidOff : e.pidOff+e.pidSize]
	if e.pidSize == 4 {
		return binary.NativeEndian.Uint32(b), true
	}
	v := binary.NativeEndian.Uint64(b)
	return uint32(v), v <= math.MaxUint32
}

func (e *expiry) doom(key []byte, reason string) {
	e.doomed = append(e.doomed, append([]byte(nil), key...))
	e.doomedReasons = append(e.doomedReasons, reason)
}

// end ends a scrape whose frame is built: the doomed keys are deleted
// from the kernel map, and, when exits were incomplete, the pids read
// whose processes are gone now are doomed after the next scrape.
func (e *expiry) end() {
	for i, k := range e.doomed {
		// A key the program deleted itself meanwhile is not counted.
		if err := e.m.Delete(k); err == nil {
			e.expired[e.doomedReasons[i]].Inc()
		}
	}
	clear(e.doomed)
	e.doomed, e.doomedReasons = e.doomed[:0], e.doomedReasons[:0]
	if e.pidSize > 0 {
		clear(e.pending)
		for pid := range e.suspect {
			if _, err := os.Stat(filepath.Join(e.procRoot, strconv.FormatUint(uint64(pid), 10))); os.IsNotExist(err) {
				e.pending[pid] = struct{}{}
			}
		}
	}
	if e.maxAge > 0 {
		for k, a := range e.ages {
			if a.gen != e.gen {
				delete(e.ages, k)
			}
		}
	}
}
