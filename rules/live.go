package rules

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Sink takes profiles: a Set or the Live one. The profiler and /ingest
// hand theirs to one.
type Sink interface {
	ObserveProfile(p Profile)
}

// Live is the rule set that serves now. Replace swaps in a new set that
// keeps the counters of every rule whose definition did not change;
// profiles taken while it swaps are counted once, in one of the two sets.
// It is a prometheus.Collector of the current set's metrics; Stats
// collects the current set's health.
type Live struct {
	set     atomic.Pointer[Set]
	replace sync.Mutex // one Replace at a time
}

// NewLive serves s (nil: an empty set).
func NewLive(s *Set) *Live {
	if s == nil {
		s = &Set{}
	}
	l := &Live{}
	l.set.Store(s)
	return l
}

// Load returns the set serving now.
func (l *Live) Load() *Set { return l.set.Load() }

// Replace makes s serve in place of the current set, taking over its
// counters for unchanged rules.
func (l *Live) Replace(s *Set) {
	l.replace.Lock()
	defer l.replace.Unlock()
	s.Inherit(l.set.Load())
	l.set.Store(s)
}

// ObserveProfile counts p in the current set.
func (l *Live) ObserveProfile(p Profile) { l.Load().ObserveProfile(p) }

// Rules lists the current set's rules.
func (l *Live) Rules() []Rule { return l.Load().Rules() }

// Describe sends no descriptors: the rules, and so the metrics, change
// with Replace (an unchecked collector).
func (l *Live) Describe(chan<- *prometheus.Desc) {}

// Collect reports the current set's metrics.
func (l *Live) Collect(ch chan<- prometheus.Metric) { l.Load().Collect(ch) }

// Stats collects the current set's health metrics.
func (l *Live) Stats() prometheus.Collector { return liveStats{l} }

type liveStats struct{ l *Live }

func (s liveStats) Describe(chan<- *prometheus.Desc) {}

func (s liveStats) Collect(ch chan<- prometheus.Metric) { s.l.Load().Stats().Collect(ch) }
