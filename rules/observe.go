package rules

import (
	"math"
	"strconv"
	"strings"
)

// Observe adds one profile the way Pyroscope's export rules take it:
// values in "samples" units (CPU) are divided by the sample rate, other
// units count as they are.
func (s *Set) Observe(app string, tags map[string]string, units string, sampleRate uint32, samples []Sample) {
	s.ObserveProfile(Sampled(app, tags, units, sampleRate, samples))
}

// Sampled makes the Profile of samples taken sampleRate times a second:
// in "samples" units (CPU, "" too) each value is divided by the rate (0:
// 100 Hz); in other units values count as they are.
func Sampled(app string, tags map[string]string, units string, sampleRate uint32, samples []Sample) Profile {
	p := Profile{App: app, Tags: tags, Units: units, Divisor: 1, Samples: samples}
	if units == "" || units == "samples" {
		if sampleRate == 0 {
			sampleRate = 100
		}
		p.CPU, p.Divisor = true, uint64(sampleRate)
	}
	return p
}

// ObserveProfile adds one profile to every rule that selects it. Stacks
// are matched before the Set's lock is taken; only the additions hold it.
func (s *Set) ObserveProfile(p Profile) {
	if p.Divisor == 0 {
		p.Divisor = 1
	}
	type hit struct {
		r         *rule
		sum       uint64
		saturated bool
	}
	var hits []hit
	var promLabels map[string]string // for recording rules, made once
	for _, r := range s.rules {      // the rules of a Set never change
		if r.Recording {
			if promLabels == nil {
				promLabels = ProfileLabels(p.App, p.Units, p.Tags)
			}
			if !matchAll(r.selector, promLabels) {
				continue
			}
		} else if !r.query.Matches(p.App, p.Tags) {
			continue
		}
		sum, ok := r.sum(p.Samples)
		if sum == 0 && !p.Average && ok {
			continue
		}
		hits = append(hits, hit{r, sum, !ok})
	}
	if len(hits) == 0 {
		return
	}
	s.mu.Lock()
	if next := s.next; next != nil {
		// Replaced since the matching: count in the set that took over.
		s.mu.Unlock()
		next.ObserveProfile(p)
		return
	}
	defer s.mu.Unlock()
	max := s.maxSeries
	if max <= 0 {
		max = DefaultMaxSeries
	}
	for _, h := range hits {
		r, sum := h.r, h.sum
		if h.saturated {
			r.st.saturated++
		}
		vals := make([]string, len(r.labels))
		for i, l := range r.labels {
			vals[i] = p.Tags[l]
		}
		key := seriesKey(vals)
		m := r.st.counters
		if p.Average {
			m = r.st.averages
		}
		se := m[key]
		if se == nil {
			if len(r.st.counters)+len(r.st.averages) >= max {
				r.st.dropped++
				continue
			}
			for i := range vals {
				vals[i] = strings.Clone(vals[i])
			}
			se = &series{values: vals}
			m[strings.Clone(key)] = se
		}
		if p.Average {
			se.last = r.scale(p) * float64(sum) / float64(p.Divisor)
			continue
		}
		if se.sums == nil {
			se.sums = map[uint64]uint64{}
		}
		var ok bool
		if se.sums[p.Divisor], ok = addSat(se.sums[p.Divisor], sum, true); !ok {
			r.st.saturated++
		}
	}
}

// sum adds the values of the stacks the rule keeps; ok is false if the
// sum saturated.
func (r *rule) sum(samples []Sample) (uint64, bool) {
	var sum uint64
	ok := true
	if r.node == nil && r.FunctionName == "" {
		for _, smp := range samples {
			sum, ok = addSat(sum, smp.Value, ok)
		}
		return sum, ok
	}
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	for _, smp := range samples {
		if r.matchStack(smp.Stack) {
			sum, ok = addSat(sum, smp.Value, ok)
		}
	}
	return sum, ok
}

// scale is what a rule multiplies seconds by: recording rules report CPU
// in nanoseconds, as Pyroscope's process_cpu:cpu:nanoseconds type does.
func (r *rule) scale(p Profile) float64 {
	if r.Recording && p.CPU {
		return 1e9
	}
	return 1
}

// addSat adds without wrapping; ok turns false when the sum saturates.
func addSat(a, b uint64, ok bool) (uint64, bool) {
	if a > math.MaxUint64-b {
		return math.MaxUint64, false
	}
	return a + b, ok
}

// seriesKey encodes label values unambiguously (length-prefixed), for
// lookups only: series keep their values apart.
func seriesKey(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	n := 0
	for _, v := range vals {
		n += len(v) + 4
	}
	b := make([]byte, 0, n)
	for _, v := range vals {
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	return string(b)
}

// Bounds of the per-rule stack cache.
const (
	maxCacheEntries = 100_000
	maxCacheBytes   = 8 << 20
	maxCachedStack  = 4 << 10
)

// matchStack needs cacheMu.
func (r *rule) matchStack(stack string) bool {
	if m, ok := r.matches[stack]; ok {
		return m
	}
	var m bool
	if r.node != nil {
		m = r.node.MatchString(stack)
	} else {
		m = hasFrame(stack, r.FunctionName)
	}
	if len(stack) > maxCachedStack {
		return m
	}
	if r.matches == nil || len(r.matches) >= maxCacheEntries || r.matchesBytes+len(stack) > maxCacheBytes {
		r.matches, r.matchesBytes = map[string]bool{}, 0
	}
	r.matches[strings.Clone(stack)] = m
	r.matchesBytes += len(stack)
	return m
}

// hasFrame reports whether a frame of stack is the function fn, as
// Pyroscope's stacktrace_filter.function_name matches a function's name.
// A frame "fn (file:line)" (how the profiler names Python frames, and
// py-spy folds them) is fn too: Pyroscope, given the same frame by an
// eBPF profiler's pprof, sees the function's name apart from its file.
func hasFrame(stack, fn string) bool {
	for stack != "" {
		var frame string
		frame, stack, _ = strings.Cut(stack, ";")
		if frame == fn || strings.HasPrefix(frame, fn) && isFileLine(frame[len(fn):]) {
			return true
		}
	}
	return false
}

// isFileLine reports whether s is " (file:line)", line in decimal.
func isFileLine(s string) bool {
	in, ok := strings.CutPrefix(s, " (")
	if !ok {
		return false
	}
	if in, ok = strings.CutSuffix(in, ")"); !ok {
		return false
	}
	i := strings.LastIndexByte(in, ':')
	if i <= 0 || i == len(in)-1 {
		return false
	}
	for _, c := range in[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
