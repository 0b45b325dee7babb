package config

import (
	"fmt"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"
)

// Value is one field of a struct map value, exported as its own metric:
// a counter or gauge named Name, read from Size bytes at Offset (native
// byte order, unsigned) of every value, summed across CPUs in per-CPU maps.
type Value struct {
	Name   string `yaml:"name"`
	Help   string `yaml:"help"`
	Offset uint   `yaml:"offset"`
	Size   uint   `yaml:"size"`
	// Type is counter or gauge; unset, the kind of the section the entry
	// is in (metrics.counters or metrics.gauges).
	Type ValueType `yaml:"type"`

	Line int `yaml:"-"`
}

// ValueType is the kind of metric a value field becomes.
type ValueType string

// Value types.
const (
	ValueCounter ValueType = "counter"
	ValueGauge   ValueType = "gauge"
)

// Label expiry settings.
const (
	ExpireProcessExit = "process_exit"
	ExpireNever       = "never"
)

// Duration is a YAML duration written with its unit ("90s", "5m"); bare
// numbers are refused rather than read as nanoseconds.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: %q is not a duration (want a number with a unit: 90s, 5m, 1h)", n.Line, n.Value)
	}
	if v <= 0 {
		return fmt.Errorf("line %d: duration %q must be positive", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// ExpiringLabel returns the index of the label whose value is a process
// id whose exit deletes the keys carrying it, or -1: the label marked
// expire: process_exit, else the first whose first decoder is pid (4 or 8
// bytes) and that is not marked never.
func ExpiringLabel(labels []Label) int {
	for i, l := range labels {
		if l.Expire == ExpireProcessExit {
			return i
		}
	}
	for i, l := range labels {
		if l.Expire == "" && len(l.Decoders) > 0 && l.Decoders[0].Name == "pid" && (l.Size == 4 || l.Size == 8) {
			return i
		}
	}
	return -1
}

// validateValues checks the value fields of a counter or gauge entry:
// names valid and unique in the config (seen), help given, sizes of 1, 2,
// 4 or 8 bytes, fields not overlapping, known types. Offsets past the
// value's end are checked against the map when the object is loaded.
func (c *Config) validateValues(kind string, x Counter, seen map[string]int) error {
	fail := func(line int, format string, args ...any) error {
		return &FileError{Path: c.Path, Line: line, Err: fmt.Errorf("%s %q: %s", kind, x.Name, fmt.Sprintf(format, args...))}
	}
	if x.Values != nil && len(x.Values) == 0 {
		return fail(x.Line, "values: is empty (leave it out for a single u64 value)")
	}
	for _, v := range x.Values {
		if v.Line == 0 {
			v.Line = x.Line
		}
		switch {
		case v.Name == "":
			return fail(v.Line, "value without a name")
		case !metricNameRE.MatchString(v.Name):
			return fail(v.Line, "value %q: not a valid Prometheus metric name", v.Name)
		case v.Help == "":
			return fail(v.Line, "value %q: has no help", v.Name)
		case v.Size != 1 && v.Size != 2 && v.Size != 4 && v.Size != 8:
			return fail(v.Line, "value %q: size %d: want 1, 2, 4 or 8 bytes", v.Name, v.Size)
		case v.Offset > MaxLabelBytes:
			return fail(v.Line, "value %q: offset %d is over %d bytes", v.Name, v.Offset, MaxLabelBytes)
		case v.Type != "" && v.Type != ValueCounter && v.Type != ValueGauge:
			return fail(v.Line, "value %q: unknown type %q (want counter or gauge)", v.Name, v.Type)
		}
		// The entry's own name is its map's: a value may take it.
		if prev, ok := seen[v.Name]; ok && !(v.Name == x.Name && prev == x.Line) {
			return fail(v.Line, "value %q: defined twice (first at line %d)", v.Name, prev)
		}
		seen[v.Name] = v.Line
	}
	byOffset := append([]Value(nil), x.Values...)
	sort.SliceStable(byOffset, func(i, j int) bool { return byOffset[i].Offset < byOffset[j].Offset })
	for i := 1; i < len(byOffset); i++ {
		a, b := byOffset[i-1], byOffset[i]
		if a.Offset+a.Size > b.Offset {
			line := b.Line
			if line == 0 {
				line = x.Line
			}
			return fail(line, "value %q (bytes %d-%d) overlaps value %q (bytes %d-%d)", b.Name, b.Offset, b.Offset+b.Size-1, a.Name, a.Offset, a.Offset+a.Size-1)
		}
	}
	return nil
}

// validateExpire checks the expire settings of a metric's labels.
func validateExpire(labels []Label) error {
	marked := ""
	for _, l := range labels {
		switch l.Expire {
		case "", ExpireNever:
		case ExpireProcessExit:
			if l.Size != 4 && l.Size != 8 {
				return fmt.Errorf("label %q: expire: process_exit needs a 4- or 8-byte process id, not %d bytes", l.Name, l.Size)
			}
			if marked != "" {
				return fmt.Errorf("labels %q and %q both have expire: process_exit; one process id per key", marked, l.Name)
			}
			marked = l.Name
		default:
			return fmt.Errorf("label %q: unknown expire %q (want process_exit or never)", l.Name, l.Expire)
		}
	}
	return nil
}

// setValueLines records the line of every value item of the entries in
// the counters or gauges sequence node.
func setValueLines(entries []Counter, seq *yaml.Node) {
	if seq == nil {
		return
	}
	for i := range entries {
		if i >= len(seq.Content) {
			return
		}
		vals := child(seq.Content[i], "values")
		for j := range entries[i].Values {
			if vals != nil && j < len(vals.Content) {
				entries[i].Values[j].Line = vals.Content[j].Line
			}
		}
	}
}
