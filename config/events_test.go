package config

import (
	"strings"
	"testing"
)

// issueYAML is the events form of issue #29, verbatim.
const issueYAML = `metrics:
  counters:
    - name: write_events_total
      help: write() calls seen as ring buffer events, by command
      events: write_events
      labels:
        - {name: comm, size: 16, decoders: [{name: string}]}
  histograms:
    - name: write_event_size_bytes
      help: write() sizes from ring buffer events
      events: write_events
      bucket_type: exp2
      bucket_min: 0
      bucket_max: 16
      value: {offset: 16, size: 8}
      labels:
        - {name: comm, size: 16, decoders: [{name: string}]}
`

func TestEventsParse(t *testing.T) {
	cfgs, err := Parse("w.yaml", []byte(issueYAML))
	if err != nil {
		t.Fatal(err)
	}
	m := cfgs[0].Metrics
	if c := m.Counters[0]; c.Events != "write_events" || c.MapName() != "write_events" || c.Value != nil {
		t.Errorf("counter %+v", c)
	}
	h := m.Histograms[0]
	if h.Events != "write_events" || h.Value == nil || *h.Value != (EventValue{Offset: 16, Size: 8}) {
		t.Errorf("histogram %+v", h)
	}
	if n := RecordSize(h.Labels, h.Value, nil); n != 24 {
		t.Errorf("record size %d, want 24", n)
	}
}

func TestEventsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"value on a map counter", `metrics:
  counters:
    - name: c
      help: h
      value: {offset: 0, size: 8}
`, `w.yaml:3: counter "c": value: is for events: entries`},
		{"value on a map histogram", `metrics:
  histograms:
    - name: h
      help: h
      bucket_type: exp2
      bucket_max: 4
      value: {offset: 0, size: 8}
      labels: [{name: b, size: 8, decoders: [{name: uint}]}]
`, `w.yaml:3: histogram "h": value: is for events: entries`},
		{"events histogram without value", `metrics:
  histograms:
    - name: h
      help: h
      events: e
      bucket_type: exp2
      bucket_max: 4
`, `w.yaml:3: histogram "h": events: histogram needs value:`},
		{"value size", `metrics:
  counters:
    - name: c
      help: h
      events: e
      value: {offset: 0, size: 3}
`, `w.yaml:3: counter "c": value: size 3: want 1, 2, 4 or 8 bytes`},
		{"value offset", `metrics:
  counters:
    - name: c
      help: h
      events: e
      value: {offset: 70000, size: 8}
`, `w.yaml:3: counter "c": value: offset 70000 is over 65536 bytes`},
		{"events gauge", `metrics:
  gauges:
    - name: g
      help: h
      events: e
`, `w.yaml:3: gauge "g": events: feeds counters and histograms, not gauges`},
		{"value and values", `metrics:
  counters:
    - name: c
      help: h
      events: e
      value: {offset: 0, size: 8}
      values: [{name: a, help: a, offset: 0, size: 8}]
`, `w.yaml:3: counter "c": value: and values: both set`},
		{"gauge field of events", `metrics:
  counters:
    - name: c
      help: h
      events: e
      values: [{name: a, help: a, offset: 0, size: 8, type: gauge}]
`, `w.yaml:3: counter "c": value "a": type gauge`},
		{"unknown key in value", `metrics:
  counters:
    - name: c
      help: h
      events: e
      value: {offset: 0, size: 8, sise: 1}
`, `w.yaml:6: unknown field "sise" in value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("w.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
