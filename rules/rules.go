package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// Rule is one metrics-export rule.
type Rule struct {
	// Name is the metric name (the rule's key).
	Name string
	Expr string `yaml:"expr"`
	// Node is "total" (or empty) or an RE2 regexp matched against the
	// whole stack, frames joined by ";".
	Node    string   `yaml:"node"`
	GroupBy []string `yaml:"group_by"`
	// Labels is the spelling of GroupBy in Pyroscope's export-rules documentation.
	Labels []string `yaml:"labels"`
}

// Sample is one stack (root first, frames joined by ";") and its value.
type Sample struct {
	Stack string
	Value uint64
}

// rule is a compiled Rule with its counters.
type rule struct {
	Rule
	query   *Query
	node    *regexp.Regexp // nil: total
	groupBy []string
	desc    *prometheus.Desc
	// values by label values joined with \xff: raw sums by the divisor
	// that turns them into the exported unit (the sample rate, or 1), kept
	// apart so that values are exact divisions, not sums of rounded ones.
	values map[string]map[uint32]uint64
	// matches caches node matches per stack.
	matches map[string]bool
}

// Set is a compiled rule file; it is a prometheus.Collector.
type Set struct {
	mu    sync.Mutex
	rules []*rule
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

// Parse reads rules in Pyroscope's format: a metrics-export-rules: block
// (as in Pyroscope's server config) or a bare map of rules. Unknown keys,
// invalid metric names, selectors and regexps are errors naming the rule.
func Parse(path string, data []byte) (*Set, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(root.Content) == 0 {
		return &Set{}, nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want a map of rules", path, doc.Line)
	}
	rulesNode := doc
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "metrics-export-rules" {
			rulesNode = doc.Content[i+1]
		}
	}
	s := &Set{}
	if rulesNode.Kind == yaml.ScalarNode && rulesNode.Value == "{}" || rulesNode.Tag == "!!null" {
		return s, nil
	}
	if rulesNode.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: metrics-export-rules: want a map of rules", path, rulesNode.Line)
	}
	for i := 0; i+1 < len(rulesNode.Content); i += 2 {
		k, v := rulesNode.Content[i], rulesNode.Content[i+1]
		var r Rule
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("%s:%d: rule %q: %w", path, k.Line, k.Value, err)
		}
		dec := yaml.NewDecoder(&buf)
		dec.KnownFields(true)
		if err := dec.Decode(&r); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s:%d: rule %q: %v", path, k.Line, k.Value, strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  "))
		}
		r.Name = k.Value
		cr, err := compile(r)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: rule %q: %w", path, k.Line, k.Value, err)
		}
		s.rules = append(s.rules, cr)
	}
	return s, nil
}

func compile(r Rule) (*rule, error) {
	if !metricNameRE.MatchString(r.Name) {
		return nil, errors.New("not a valid Prometheus metric name")
	}
	q, err := ParseQuery(r.Expr)
	if err != nil {
		return nil, fmt.Errorf("expr: %w", err)
	}
	cr := &rule{Rule: r, query: q, values: map[string]map[uint32]uint64{}, matches: map[string]bool{}}
	if r.Node != "" && r.Node != "total" {
		if cr.node, err = regexp.Compile(r.Node); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	seen := map[string]bool{}
	for _, l := range append(append([]string(nil), r.GroupBy...), r.Labels...) {
		if seen[l] {
			continue
		}
		if !labelNameRE.MatchString(l) {
			return nil, fmt.Errorf("group_by %q is not a valid Prometheus label name", l)
		}
		seen[l] = true
		cr.groupBy = append(cr.groupBy, l)
	}
	expr, node := r.Expr, r.Node
	if expr == "" {
		expr = "(all)"
	}
	if node == "" {
		node = "total"
	}
	cr.desc = prometheus.NewDesc(r.Name, fmt.Sprintf("Profile export rule %s: expr %s, node %s.", r.Name, expr, node), cr.groupBy, nil)
	return cr, nil
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

// maxStackCache bounds the per-rule cache of stack matches.
const maxStackCache = 100_000

// Observe adds one profile. Values in "samples" units are divided by the
// sample rate (CPU samples become seconds); others count as they are.
func (s *Set) Observe(app string, tags map[string]string, units string, sampleRate uint32, samples []Sample) {
	divisor := uint32(1)
	if units == "" || units == "samples" {
		if sampleRate == 0 {
			sampleRate = 100
		}
		divisor = sampleRate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		if !r.query.Matches(app, tags) {
			continue
		}
		var sum uint64
		for _, smp := range samples {
			if r.node == nil || r.matchStack(smp.Stack) {
				sum += smp.Value
			}
		}
		if sum == 0 {
			continue
		}
		vals := make([]string, len(r.groupBy))
		for i, l := range r.groupBy {
			vals[i] = tags[l]
		}
		key := strings.Join(vals, "\xff")
		if r.values[key] == nil {
			r.values[key] = map[uint32]uint64{}
		}
		r.values[key][divisor] += sum
	}
}

func (r *rule) matchStack(stack string) bool {
	m, ok := r.matches[stack]
	if !ok {
		if len(r.matches) >= maxStackCache {
			r.matches = map[string]bool{}
		}
		m = r.node.MatchString(stack)
		r.matches[stack] = m
	}
	return m
}

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		ch <- r.desc
	}
}

// Collect reports one counter per rule and label set.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		keys := make([]string, 0, len(r.values))
		for k := range r.values {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			var lv []string
			if len(r.groupBy) > 0 {
				lv = strings.Split(k, "\xff")
			}
			var v float64
			for div, raw := range r.values[k] {
				v += float64(raw) / float64(div)
			}
			ch <- prometheus.MustNewConstMetric(r.desc, prometheus.CounterValue, v, lv...)
		}
	}
}
