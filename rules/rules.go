package rules

import (
	"regexp"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Rule is one rule: a metrics-export rule of Pyroscope before 1.0, or a
// recording rule of today's Pyroscope (Recording set).
type Rule struct {
	// Name is the metric name (the rule's key).
	Name string `yaml:"-"`
	Expr string `yaml:"expr"`
	// Node is "total" (or empty) or an RE2 regexp matched against the
	// whole stack, frames joined by ";".
	Node    string   `yaml:"node"`
	GroupBy []string `yaml:"group_by"`
	// Labels is an older spelling of GroupBy.
	Labels []string `yaml:"labels"`

	// Recording marks a recording rule; the fields below are its own.
	Recording bool `yaml:"-"`
	// Matchers are Prometheus selectors over the profile's labels
	// (service_name, __profile_type__, __name__ and the tags).
	Matchers       []string    `yaml:"-"`
	ExternalLabels []LabelPair `yaml:"-"`
	// FunctionName keeps only stacks with a frame of exactly this name.
	FunctionName string `yaml:"-"`
}

// LabelPair is one external label of a recording rule.
type LabelPair struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// Sample is one stack (root first, frames joined by ";") and its value.
type Sample struct {
	Stack string
	Value uint64
}

// Profile is one profile handed to the rules.
type Profile struct {
	// App is the application name with its profile type: "app.cpu".
	App  string
	Tags map[string]string
	// Units names what the values count (samples, bytes, objects, ...).
	Units string
	// CPU says that the values are time spent (on the CPU, or off it for
	// app.off_cpu): Divisor turns them into seconds (the sample rate for
	// samples, 1e9 for nanoseconds).
	CPU     bool
	Divisor uint64
	// Average marks profiles Pyroscope aggregates by average (in-use
	// memory, goroutines): each is a snapshot, not an increment.
	Average bool
	Samples []Sample
}

// DefaultMaxSeries bounds the label sets of a rule unless SetMaxSeries
// says otherwise.
const DefaultMaxSeries = 10_000

// series is one label set of a rule.
type series struct {
	values []string // label values, in the order of the rule's labels
	// sums are raw sums by divisor, kept apart so that exported values
	// are exact divisions, not sums of rounded ones.
	sums map[uint64]uint64
	last float64 // average profiles: the latest profile's value
}

// state is what a rule has counted; an unchanged rule keeps it on reload.
type state struct {
	counters  map[string]*series
	averages  map[string]*series
	dropped   uint64
	saturated uint64
}

// rule is a compiled Rule with its counters.
type rule struct {
	Rule
	fingerprint string
	query       *Query     // export rules
	selector    []*Matcher // recording rules
	node        *regexp.Regexp
	labels      []string // group_by
	constLabels prometheus.Labels
	desc        *prometheus.Desc
	avgDesc     *prometheus.Desc
	st          *state // guarded by the Set's mutex

	// cacheMu guards the cache of node and function matches per stack,
	// used outside the Set's mutex so that scrapes do not wait for the
	// matching of a large profile. Keys are copies: the cache never pins
	// a request body.
	cacheMu      sync.Mutex
	matches      map[string]bool
	matchesBytes int
}

// Set is a compiled rule file; it is a prometheus.Collector of the rules'
// metrics. Stats collects its own health metrics.
type Set struct {
	mu        sync.Mutex
	rules     []*rule
	maxSeries int
	// next is the set that inherited this one's counters; profiles that
	// reach a replaced set count there instead, so none is lost.
	next *Set
}

// Rules lists the rules.
func (s *Set) Rules() []Rule {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Rule, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.Rule
	}
	return out
}

// SetMaxSeries bounds the label sets of each rule (0: DefaultMaxSeries).
// Profiles that would make a new label set over it are not counted, and
// probe_exporter_rule_series_dropped_total says so.
func (s *Set) SetMaxSeries(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxSeries = n
}

// Inherit takes over what old has counted for every rule whose definition
// did not change, so that a reload keeps their counters. Changed rules
// start from zero; removed rules go with old. Call it before s serves.
func (s *Set) Inherit(old *Set) {
	if old == nil || old == s {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// old stays locked while its counters move and until it forwards to
	// s: a profile it takes is counted either before the move (and moves
	// with it) or after (and goes to s).
	old.mu.Lock()
	defer old.mu.Unlock()
	byName := make(map[string]*rule, len(old.rules))
	for _, r := range old.rules {
		byName[r.Name] = r
	}
	for _, r := range s.rules {
		if o, ok := byName[r.Name]; ok && o.fingerprint == r.fingerprint {
			r.st = o.st
			o.st = newState()
		}
	}
	old.next = s
}
