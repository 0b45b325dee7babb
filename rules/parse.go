package rules

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/probe-exporter/probe_exporter/internal/yamlfields"
)

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// LoadFile reads a rule file. Its errors name the file and not the
// package: the caller says what the file is for.
func LoadFile(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
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
				return nil, fmt.Errorf("%s:%d: rule %q: %v", path, lineOf(err, k.Line), k.Value, err)
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
				return nil, fmt.Errorf("%s:%d: recording rule: %v", path, lineOf(err, v.Line), err)
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

// decodeStrict decodes a node, rejecting unknown keys (yamlfields names
// them at their own line); the node is decoded as it is, so a type
// error names its line in the file too.
func decodeStrict(n *yaml.Node, out any) error {
	if err := yamlfields.Check(n, out); err != nil {
		return err
	}
	if err := n.Decode(out); err != nil {
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

// lineOf is the line an error of decodeStrict is at: an unknown key's, or
// else line, that of the rule it decoded.
func lineOf(err error, line int) int {
	var ke *yamlfields.Error
	if errors.As(err, &ke) {
		return ke.Line
	}
	return line
}
