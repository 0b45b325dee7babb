package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/probe-exporter/probe_exporter/internal/privdir"
)

// FileError is a problem with one config file; the rest keep loading.
type FileError struct {
	// Name is the config name the file was loaded for.
	Name string
	Path string
	Line int
	Err  error
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Load reads configs in ebpf_exporter's layout: dir/NAME.yaml next to
// dir/NAME.bpf.o. Files that fail are returned as errors (*FileError) and
// the others still load.
func Load(dir string, names []string) ([]Config, []error) {
	var cfgs []Config
	var errs []error
	for _, name := range names {
		path := filepath.Join(dir, name+".yaml")
		data, err := os.ReadFile(path)
		if err == nil {
			err = Trusted(path)
		}
		if err != nil {
			errs = append(errs, &FileError{Name: name, Path: path, Err: fmt.Errorf("config %q: %w", name, err)})
			continue
		}
		got, err := Parse(path, data)
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) {
				fe = &FileError{Path: path, Err: err}
			}
			fe.Name = name
			errs = append(errs, fe)
			continue
		}
		for i := range got {
			switch {
			case got[i].Code != "":
			case len(got) == 1:
				got[i].Name = name
				got[i].BPFPath = filepath.Join(dir, name+".bpf.o")
			default:
				// A v1-layout file of several programs without code:
				// each program's object is named for it.
				got[i].BPFPath = filepath.Join(dir, got[i].Name+".bpf.o")
			}
		}
		cfgs = append(cfgs, got...)
	}
	cfgs, dup := distinctMetrics(cfgs)
	return cfgs, append(errs, dup...)
}

// distinctMetrics refuses a config that defines a metric an earlier
// config of the same load defines: both would be served under one name,
// as duplicate series that Prometheus rejects. The first keeps it.
func distinctMetrics(cfgs []Config) ([]Config, []error) {
	first := map[string]string{}
	var ok []Config
	var errs []error
	for _, c := range cfgs {
		names := c.metricNames()
		var err error
		for _, m := range names {
			if at, dup := first[m.name]; dup {
				err = &FileError{Name: c.Name, Path: c.Path, Line: m.line, Err: fmt.Errorf("%s %q: also defined at %s (metric names are shared by every config)", m.kind, m.name, at)}
				break
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, m := range names {
			first[m.name] = fmt.Sprintf("%s:%d", c.Path, m.line)
		}
		ok = append(ok, c)
	}
	return ok, errs
}

type metricName struct {
	kind, name string
	line       int
}

// metricNames lists the metrics a config serves: each entry's name, or
// the names of its values:.
func (c Config) metricNames() []metricName {
	var out []metricName
	entries := func(kind string, xs []Counter) {
		for _, x := range xs {
			if x.Values == nil {
				out = append(out, metricName{kind, x.Name, x.Line})
				continue
			}
			for _, v := range x.Values {
				out = append(out, metricName{kind, v.Name, v.Line})
			}
		}
	}
	entries("counter", c.Metrics.Counters)
	entries("gauge", c.Metrics.Gauges)
	for _, h := range c.Metrics.Histograms {
		out = append(out, metricName{"histogram", h.Name, h.Line})
	}
	return out
}

// Trusted refuses a config file or BPF object that a user other than root
// (or the exporter's own user) could change: what it names is loaded into
// the kernel by root, so whoever can rewrite it could read any memory or
// change what root's tools see. The file (what a symlink resolves to)
// must be owned by root and writable by no one else, as must its
// directory and every one above it (a sticky directory of root's, like
// /tmp, may be writable by all); a read-only mount counts as writable by
// no one.
func Trusted(path string) error {
	if err := privdir.CheckFile(path); err != nil {
		return fmt.Errorf("refused: root loads only files no other user can change (chown root, or copy it to a directory only root can write): %w", err)
	}
	return nil
}

// LoadFile reads one config file.
func LoadFile(path string) ([]Config, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		err = Trusted(path)
	}
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	return Parse(path, data)
}

// Parse parses one config file: the ebpf_exporter v2 layout, or ebpf_exporter v1's
// layout (a programs: list with inline code), detected by its keys. The
// config name defaults to the file's base name.
func Parse(path string, data []byte) ([]Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(path, err)
	}
	if len(root.Content) == 0 {
		return nil, &FileError{Path: path, Err: errors.New("empty config")}
	}
	doc := root.Content[0]
	if isSeedLayout(doc) {
		return parseSeed(path, data, doc)
	}
	var c Config
	if err := strictDecode(data, &c); err != nil {
		return nil, yamlError(path, err)
	}
	c.Path = path
	c.Name = strings.TrimSuffix(filepath.Base(path), ".yaml")
	c.Line = 1
	setMetricLines(&c, child(doc, "metrics"))
	for key, line := range map[string]*int{"kaddrs": &c.KaddrsLine, "cgroup_id_map": &c.CgroupIDMap.Line} {
		if n := keyNode(doc, key); n != nil {
			*line = n.Line
		}
	}
	if spans := child(child(doc, "tracing"), "spans"); spans != nil {
		for i := range c.Tracing.Spans {
			if i < len(spans.Content) {
				c.Tracing.Spans[i].Line = spans.Content[i].Line
			}
		}
	}
	perfEventArrayCounters(&c)
	if err := c.validate(); err != nil {
		return nil, err
	}
	return []Config{c}, nil
}

func strictDecode(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// isSeedLayout tells ebpf_exporter v1's (bcc era) layout: programs: at the top, or a
// list whose item has programs:.
func isSeedLayout(doc *yaml.Node) bool {
	if doc.Kind == yaml.SequenceNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	return child(doc, "programs") != nil
}

// keyIndex is the index in n.Content of key's node in a mapping node, or
// -1; its value node follows it.
func keyIndex(n *yaml.Node, key string) int {
	if n == nil || n.Kind != yaml.MappingNode {
		return -1
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return i
		}
	}
	return -1
}

// keyNode returns the key node of key in a mapping node.
func keyNode(n *yaml.Node, key string) *yaml.Node {
	if i := keyIndex(n, key); i >= 0 {
		return n.Content[i]
	}
	return nil
}

// child returns the value node of key in a mapping node.
func child(n *yaml.Node, key string) *yaml.Node {
	if i := keyIndex(n, key); i >= 0 {
		return n.Content[i+1]
	}
	return nil
}

func setMetricLines(c *Config, metrics *yaml.Node) {
	item := func(kind string, i int) int {
		seq := child(metrics, kind)
		if seq == nil || i >= len(seq.Content) {
			return 0
		}
		return seq.Content[i].Line
	}
	for i := range c.Metrics.Counters {
		c.Metrics.Counters[i].Line = item("counters", i)
	}
	for i := range c.Metrics.Gauges {
		c.Metrics.Gauges[i].Line = item("gauges", i)
	}
	for i := range c.Metrics.Histograms {
		c.Metrics.Histograms[i].Line = item("histograms", i)
	}
	setValueLines(c.Metrics.Counters, child(metrics, "counters"))
	setValueLines(c.Metrics.Gauges, child(metrics, "gauges"))
}

var (
	yamlLineRE     = regexp.MustCompile(`line (\d+): (.*)`)
	unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type (\S+)`)
)

// yamlError turns a yaml error into FILE:LINE: message, one per problem.
func yamlError(path string, err error) error {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var out []string
	line := 0
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		if sm := yamlLineRE.FindStringSubmatch(m); sm != nil {
			n, _ := strconv.Atoi(sm[1])
			if line == 0 {
				line = n
			}
			m = sm[2]
			if fm := unknownFieldRE.FindStringSubmatch(m); fm != nil {
				m = fmt.Sprintf("unknown field %q in %s", fm[1], typeName(fm[2]))
			}
			out = append(out, fmt.Sprintf("%s:%d: %s", path, n, m))
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s", path, m))
	}
	return &FileError{Path: path, Line: line, Err: errors.New(strings.TrimPrefix(strings.Join(out, "\n"), fmt.Sprintf("%s:%d: ", path, line)))}
}

// typeName names a Go config type the way a user knows it.
func typeName(t string) string {
	t = strings.TrimPrefix(t, "config.")
	switch t {
	case "Config":
		return "config"
	case "Metrics":
		return "metrics"
	case "Counter":
		return "counter/gauge"
	case "Histogram":
		return "histogram"
	case "Label":
		return "label"
	case "Decoder":
		return "decoder"
	case "Value", "EventValue":
		return "value"
	case "seedProgram":
		return "program"
	case "Selector", "attachments":
		return "attachments"
	}
	return t
}
