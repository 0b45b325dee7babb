package config

import "fmt"

// Event metrics: a counter or histogram entry naming `events:` (a ring
// buffer or perf event array) is fed by the map's records as they arrive.
// Its labels decode the record's first bytes as they decode a map key,
// and `value:` names the field summed (counters) or observed
// (histograms). What needs the map (its type, the largest record it can
// carry) is checked when the object is loaded.

// validateEvents checks the events and value settings of an entry: value
// only with events, a size of 1, 2, 4 or 8 bytes within MaxLabelBytes, a
// histogram's value required, and no per-field types other than counter.
func (c *Config) validateEvents(kind, name string, line int, events string, value *EventValue, values []Value) error {
	fail := func(format string, args ...any) error {
		return &FileError{Path: c.Path, Line: line, Err: fmt.Errorf("%s %q: %s", kind, name, fmt.Sprintf(format, args...))}
	}
	if events == "" {
		if value != nil {
			return fail("value: is for events: entries (records of a ring buffer or perf event array); a map's value is read whole (use values: for the fields of a struct value)")
		}
		return nil
	}
	switch kind {
	case "gauge":
		return fail("events: feeds counters and histograms, not gauges")
	case "histogram":
		if value == nil {
			return fail("events: histogram needs value: {offset, size}, the record field it observes")
		}
	case "counter":
		if value != nil && values != nil {
			return fail("value: and values: both set; use one")
		}
		for _, v := range values {
			if v.Type == ValueGauge {
				return fail("value %q: type gauge: the fields of event records are summed into counters", v.Name)
			}
		}
	}
	if value != nil {
		switch {
		case value.Size != 1 && value.Size != 2 && value.Size != 4 && value.Size != 8:
			return fail("value: size %d: want 1, 2, 4 or 8 bytes", value.Size)
		case value.Offset > MaxLabelBytes:
			return fail("value: offset %d is over %d bytes", value.Offset, MaxLabelBytes)
		}
	}
	return nil
}

// RecordSize is the least size of a record an events entry can decode:
// its labels (sizes and paddings) and every value field.
func RecordSize(labels []Label, value *EventValue, values []Value) int {
	n := 0
	for _, l := range labels {
		n += int(l.Size + l.Padding)
	}
	if value != nil {
		n = max(n, int(value.Offset+value.Size))
	}
	for _, v := range values {
		n = max(n, int(v.Offset+v.Size))
	}
	return n
}

// perfEventArrayCounters reads ebpf_exporter's perf_event_array counters
// (`perf_event_array: true`: records of the perf event array named like
// the counter, each counted under the labels of its first bytes) as the
// events entries they are.
func perfEventArrayCounters(c *Config) {
	for i := range c.Metrics.Counters {
		if x := &c.Metrics.Counters[i]; x.PerfEventArray && x.Events == "" {
			x.Events = x.MapName()
		}
	}
}
