package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
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
	// CPU says that the values are CPU time: Divisor turns them into
	// seconds (the sample rate for samples, 1e9 for nanoseconds).
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

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// LoadFile reads a rule file.
func LoadFile(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return Parse(path, data)
}

// Parse reads rules in either of Pyroscope's formats: a
// metrics-export-rules: block (or a bare map of such rules), and a
// recording_rules: list as today's Pyroscope provisions them. Unknown
// keys, invalid names, selectors and regexps are errors naming file, line
// and rule.
func Parse(path string, data []byte) (*Set, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &Set{}
	if len(root.Content) == 0 {
		return s, nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want a map of rules", path, doc.Line)
	}
	var exportNode, recordingNode *yaml.Node
	bare := true
	for i := 0; i+1 < len(doc.Content); i += 2 {
		switch doc.Content[i].Value {
		case "metrics-export-rules":
			exportNode, bare = doc.Content[i+1], false
		case "recording_rules":
			recordingNode, bare = doc.Content[i+1], false
		}
	}
	if bare {
		exportNode = doc
	} else {
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if k := doc.Content[i].Value; k != "metrics-export-rules" && k != "recording_rules" {
				return nil, fmt.Errorf("%s:%d: unknown key %q (want metrics-export-rules or recording_rules)", path, doc.Content[i].Line, k)
			}
		}
	}
	seen := map[string]int{}
	add := func(cr *rule, line int) error {
		for _, name := range []string{cr.Name, cr.Name + "_average"} {
			if prev, ok := seen[name]; ok {
				return fmt.Errorf("%s:%d: rule %q: metric %s is also made by the rule at line %d", path, line, cr.Name, name, prev)
			}
		}
		seen[cr.Name], seen[cr.Name+"_average"] = line, line
		s.rules = append(s.rules, cr)
		return nil
	}
	if exportNode != nil && !isEmpty(exportNode) {
		if exportNode.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s:%d: metrics-export-rules: want a map of rules", path, exportNode.Line)
		}
		for i := 0; i+1 < len(exportNode.Content); i += 2 {
			k, v := exportNode.Content[i], exportNode.Content[i+1]
			var r Rule
			if err := decodeStrict(v, &r); err != nil {
				return nil, fmt.Errorf("%s:%d: rule %q: %v", path, k.Line, k.Value, err)
			}
			r.Name = k.Value
			cr, err := compile(r)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: rule %q: %w", path, k.Line, k.Value, err)
			}
			if err := add(cr, k.Line); err != nil {
				return nil, err
			}
		}
	}
	if recordingNode != nil && recordingNode.Tag != "!!null" {
		if recordingNode.Kind != yaml.SequenceNode {
			return nil, fmt.Errorf("%s:%d: recording_rules: want a list of rules", path, recordingNode.Line)
		}
		for _, v := range recordingNode.Content {
			var rr recordingYAML
			if err := decodeStrict(v, &rr); err != nil {
				return nil, fmt.Errorf("%s:%d: recording rule: %v", path, v.Line, err)
			}
			r := rr.rule()
			cr, err := compile(r)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: recording rule %q: %w", path, v.Line, r.Name, err)
			}
			if err := add(cr, v.Line); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

func isEmpty(n *yaml.Node) bool {
	return n.Tag == "!!null" || (n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode) && len(n.Content) == 0
}

// decodeStrict decodes a node, rejecting unknown keys.
func decodeStrict(n *yaml.Node, out any) error {
	var buf bytes.Buffer
	if err := yaml.NewEncoder(&buf).Encode(n); err != nil {
		return err
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  "))
	}
	return nil
}

// recordingYAML is a recording rule as Pyroscope's settings.v1.RecordingRule
// spells it in YAML.
type recordingYAML struct {
	ID               string      `yaml:"id"`
	Generation       int64       `yaml:"generation"`
	ProfileType      string      `yaml:"profile_type"`
	MetricName       string      `yaml:"metric_name"`
	Matchers         []string    `yaml:"matchers"`
	GroupBy          []string    `yaml:"group_by"`
	ExternalLabels   []LabelPair `yaml:"external_labels"`
	StacktraceFilter *struct {
		FunctionName *struct {
			FunctionName string `yaml:"function_name"`
			MetricType   string `yaml:"metric_type"`
		} `yaml:"function_name"`
	} `yaml:"stacktrace_filter"`
}

func (y recordingYAML) rule() Rule {
	r := Rule{Name: strings.TrimSpace(y.MetricName), Recording: true, Matchers: y.Matchers, GroupBy: y.GroupBy, ExternalLabels: y.ExternalLabels}
	if f := y.StacktraceFilter; f != nil && f.FunctionName != nil {
		r.FunctionName = f.FunctionName.FunctionName
	}
	return r
}

func compile(r Rule) (*rule, error) {
	if !metricNameRE.MatchString(r.Name) {
		return nil, fmt.Errorf("%q is not a valid Prometheus metric name", r.Name)
	}
	cr := &rule{Rule: r, fingerprint: fmt.Sprintf("%#v", r), st: newState()}
	var err error
	if r.Recording {
		if cr.selector, err = parseSelectors(r.Matchers); err != nil {
			return nil, err
		}
	} else {
		if cr.query, err = ParseQuery(r.Expr); err != nil {
			return nil, fmt.Errorf("expr: %w", err)
		}
		if r.Node != "" && r.Node != "total" {
			if cr.node, err = regexp.Compile(r.Node); err != nil {
				return nil, fmt.Errorf("node: %w", err)
			}
		}
	}
	seen := map[string]bool{}
	for _, l := range append(append([]string(nil), r.GroupBy...), r.Labels...) {
		if seen[l] {
			continue
		}
		if !labelNameRE.MatchString(l) || strings.HasPrefix(l, "__") {
			return nil, fmt.Errorf("group_by %q is not a valid Prometheus label name", l)
		}
		seen[l] = true
		cr.labels = append(cr.labels, l)
	}
	if len(r.ExternalLabels) > 0 {
		cr.constLabels = prometheus.Labels{}
	}
	for _, l := range r.ExternalLabels {
		switch {
		case !labelNameRE.MatchString(l.Name) || strings.HasPrefix(l.Name, "__"):
			return nil, fmt.Errorf("external_labels name %q is not a valid Prometheus label name", l.Name)
		case !utf8.ValidString(l.Value):
			return nil, fmt.Errorf("external_labels value %q is not valid UTF-8", l.Value)
		case seen[l.Name]:
			return nil, fmt.Errorf("external_labels name %q is also in group_by or twice in external_labels", l.Name)
		}
		seen[l.Name] = true
		cr.constLabels[l.Name] = l.Value
	}
	var help string
	if r.Recording {
		help = fmt.Sprintf("Pyroscope recording rule %s: matchers %s", r.Name, strings.Join(r.Matchers, " "))
		if r.FunctionName != "" {
			help += ", function " + r.FunctionName
		}
		help += "."
	} else {
		expr, node := r.Expr, r.Node
		if expr == "" {
			expr = "(all)"
		}
		if node == "" {
			node = "total"
		}
		help = fmt.Sprintf("Profile export rule %s: expr %s, node %s.", r.Name, expr, node)
	}
	cr.desc = prometheus.NewDesc(r.Name, help, cr.labels, cr.constLabels)
	cr.avgDesc = prometheus.NewDesc(r.Name+"_average", help+" Latest profile of those Pyroscope aggregates by average.", cr.labels, cr.constLabels)
	return cr, nil
}

func newState() *state {
	return &state{counters: map[string]*series{}, averages: map[string]*series{}}
}

// parseSelectors parses Prometheus selectors as Pyroscope's recording rules
// hold them: {__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds", service_name="app"}.
// As Pyroscope requires, exactly one __profile_type__ matcher, with =.
func parseSelectors(sels []string) ([]*Matcher, error) {
	var out []*Matcher
	profileType := 0
	for _, sel := range sels {
		q, err := parseSelector(sel)
		if err != nil {
			return nil, fmt.Errorf("matcher %q: %w", sel, err)
		}
		for _, m := range q {
			if m.Key == LabelProfileType {
				if m.Op != OpEqual {
					return nil, fmt.Errorf("matcher %q: %s must be matched with =", sel, LabelProfileType)
				}
				profileType++
			}
		}
		out = append(out, q...)
	}
	if profileType != 1 {
		return nil, fmt.Errorf("matchers must hold exactly one %s matcher (found %d)", LabelProfileType, profileType)
	}
	return out, nil
}

func parseSelector(sel string) ([]*Matcher, error) {
	sel = strings.TrimSpace(sel)
	name, rest, hasBraces := strings.Cut(sel, "{")
	name = strings.TrimSpace(name)
	var out []*Matcher
	if name != "" {
		if !metricNameRE.MatchString(name) {
			return nil, fmt.Errorf("invalid metric name %q", name)
		}
		out = append(out, &Matcher{Key: "__name__", Op: OpEqual, Value: name})
	}
	if !hasBraces {
		if name == "" {
			return nil, errors.New("empty selector")
		}
		return out, nil
	}
	rest = strings.TrimSpace(rest)
	if !strings.HasSuffix(rest, "}") {
		return nil, errors.New("unclosed {")
	}
	for _, part := range splitMatchers(strings.TrimSuffix(rest, "}")) {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		m, err := parseMatcher(part)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
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

// hasFrame reports whether a frame of stack is exactly fn, as Pyroscope's
// stacktrace_filter.function_name matches.
func hasFrame(stack, fn string) bool {
	for stack != "" {
		var frame string
		frame, stack, _ = strings.Cut(stack, ";")
		if frame == fn {
			return true
		}
	}
	return false
}

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		ch <- r.desc
		ch <- r.avgDesc
	}
}

// Collect reports one counter per rule and label set, and a gauge
// <name>_average for the label sets of average profiles. A series that
// cannot be made is skipped (it would only be so by a bug), never a panic.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		for _, se := range sortedSeries(r.st.counters) {
			var v float64
			for div, raw := range se.sums {
				v += float64(raw) / float64(div)
			}
			if r.Recording && r.cpuSeries(se) {
				v *= 1e9
			}
			if m, err := prometheus.NewConstMetric(r.desc, prometheus.CounterValue, v, se.values...); err == nil {
				ch <- m
			}
		}
		for _, se := range sortedSeries(r.st.averages) {
			if m, err := prometheus.NewConstMetric(r.avgDesc, prometheus.GaugeValue, se.last, se.values...); err == nil {
				ch <- m
			}
		}
	}
}

// cpuSeries: a recording rule selects one profile type, so its series are
// CPU when the type is.
func (r *rule) cpuSeries(*series) bool {
	for _, m := range r.selector {
		if m.Key == LabelProfileType {
			return strings.HasPrefix(m.Value, "process_cpu:") || strings.HasPrefix(m.Value, "cpu:")
		}
	}
	return false
}

func sortedSeries(m map[string]*series) []*series {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*series, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

var (
	seriesDesc = prometheus.NewDesc("probe_exporter_rule_series",
		"Label sets a profile rule holds.", []string{"rule"}, nil)
	droppedDesc = prometheus.NewDesc("probe_exporter_rule_series_dropped_total",
		"Profiles a rule did not count because they would have made a label set over --rules.max-series.", []string{"rule"}, nil)
	saturatedDesc = prometheus.NewDesc("probe_exporter_rule_saturated_total",
		"Additions that reached the largest value a rule's counter holds (2^64-1 raw units) and stopped there.", []string{"rule"}, nil)
)

// Stats is a collector of the rules' own health: series held, profiles
// dropped by the series bound, saturated additions.
func (s *Set) Stats() prometheus.Collector { return stats{s} }

type stats struct{ s *Set }

func (st stats) Describe(ch chan<- *prometheus.Desc) {
	ch <- seriesDesc
	ch <- droppedDesc
	ch <- saturatedDesc
}

func (st stats) Collect(ch chan<- prometheus.Metric) {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	for _, r := range st.s.rules {
		for _, m := range []struct {
			d *prometheus.Desc
			t prometheus.ValueType
			v float64
		}{
			{seriesDesc, prometheus.GaugeValue, float64(len(r.st.counters) + len(r.st.averages))},
			{droppedDesc, prometheus.CounterValue, float64(r.st.dropped)},
			{saturatedDesc, prometheus.CounterValue, float64(r.st.saturated)},
		} {
			if cm, err := prometheus.NewConstMetric(m.d, m.t, m.v, r.Name); err == nil {
				ch <- cm
			}
		}
	}
}
