package config

import (
	"strings"
	"testing"
	"time"
)

const multiValue = `metrics:
  counters:
    - name: read_stats
      labels:
        - name: pid
          size: 4
          decoders: [{name: pid}]
      max_age: 5m
      values:
        - name: reads_total
          help: read() calls
          offset: 0
          size: 8
        - {name: read_bytes_total, help: bytes asked for, offset: 8, size: 8}
        - {name: last_fd, help: the last fd read, offset: 16, size: 4, type: gauge}
`

func TestParseValues(t *testing.T) {
	cfgs, err := Parse("m.yaml", []byte(multiValue))
	if err != nil {
		t.Fatal(err)
	}
	c := cfgs[0].Metrics.Counters[0]
	want := []Value{
		{Name: "reads_total", Help: "read() calls", Offset: 0, Size: 8, Line: 10},
		{Name: "read_bytes_total", Help: "bytes asked for", Offset: 8, Size: 8, Line: 14},
		{Name: "last_fd", Help: "the last fd read", Offset: 16, Size: 4, Type: ValueGauge, Line: 15},
	}
	if len(c.Values) != len(want) {
		t.Fatalf("values %+v", c.Values)
	}
	for i := range want {
		if c.Values[i] != want[i] {
			t.Errorf("value %d: %+v, want %+v", i, c.Values[i], want[i])
		}
	}
	if time.Duration(c.MaxAge) != 5*time.Minute {
		t.Errorf("max_age %v", time.Duration(c.MaxAge))
	}
	if i := ExpiringLabel(c.Labels); i != 0 {
		t.Errorf("expiring label %d, want 0 (pid decoder)", i)
	}
}

// A value may be named as its map (the entry), not as another metric.
func TestValueNamedAsMap(t *testing.T) {
	const y = "metrics:\n  counters:\n    - name: calls_total\n      values:\n        - {name: calls_total, help: h, offset: 0, size: 8}\n"
	if _, err := Parse("m.yaml", []byte(y)); err != nil {
		t.Fatal(err)
	}
}

func TestExpiringLabel(t *testing.T) {
	pid := func(name string, size uint, expire string) Label {
		return Label{Name: name, Size: size, Expire: expire, Decoders: []Decoder{{Name: "pid"}}}
	}
	uint4 := Label{Name: "tgid", Size: 4, Decoders: []Decoder{{Name: "uint"}}}
	for _, tc := range []struct {
		name   string
		labels []Label
		want   int
	}{
		{"none", []Label{uint4}, -1},
		{"pid decoder", []Label{uint4, pid("pid", 4, "")}, 1},
		{"pid decoder, 8 bytes", []Label{pid("pid", 8, "")}, 0},
		{"pid decoder, 2 bytes", []Label{pid("pid", 2, "")}, -1},
		{"never", []Label{pid("pid", 4, ExpireNever)}, -1},
		{"marked wins", []Label{pid("pid", 4, ""), {Name: "tgid", Size: 4, Expire: ExpireProcessExit}}, 1},
		{"first pid decoder", []Label{pid("pid", 4, ""), pid("ppid", 4, "")}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExpiringLabel(tc.labels); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestParseValueErrors(t *testing.T) {
	const head = "metrics:\n  counters:\n    - name: st\n      values:\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"overlap", head + "        - {name: a, help: h, offset: 0, size: 8}\n        - {name: b, help: h, offset: 4, size: 4}\n",
			`m.yaml:6: counter "st": value "b" (bytes 4-7) overlaps value "a" (bytes 0-7)`},
		{"unknown type", head + "        - {name: a, help: h, offset: 0, size: 8, type: histogram}\n",
			`m.yaml:5: counter "st": value "a": unknown type "histogram" (want counter or gauge)`},
		{"duplicate", head + "        - {name: a, help: h, offset: 0, size: 8}\n        - {name: a, help: h, offset: 8, size: 8}\n",
			`m.yaml:6: counter "st": value "a": defined twice (first at line 5)`},
		{"duplicate of another metric", "metrics:\n  counters:\n    - name: a\n      help: h\n    - name: st\n      values:\n        - {name: a, help: h, offset: 0, size: 8}\n",
			`m.yaml:7: counter "st": value "a": defined twice (first at line 3)`},
		{"bad size", head + "        - {name: a, help: h, offset: 0, size: 3}\n",
			`m.yaml:5: counter "st": value "a": size 3: want 1, 2, 4 or 8 bytes`},
		{"no size", head + "        - {name: a, help: h, offset: 0}\n",
			`m.yaml:5: counter "st": value "a": size 0: want 1, 2, 4 or 8 bytes`},
		{"no help", head + "        - {name: a, offset: 0, size: 8}\n", `m.yaml:5: counter "st": value "a": has no help`},
		{"bad name", head + "        - {name: 1a, help: h, offset: 0, size: 8}\n", `m.yaml:5: counter "st": value "1a": not a valid Prometheus metric name`},
		{"no name", head + "        - {help: h, offset: 0, size: 8}\n", `m.yaml:5: counter "st": value without a name`},
		{"empty", head + "        []\n", `m.yaml:3: counter "st": values: is empty`},
		{"unknown field", head + "        - {name: a, help: h, offset: 0, size: 8, signed: true}\n", `m.yaml:5: unknown field "signed" in value`},
		{"negative offset", head + "        - {name: a, help: h, offset: -8, size: 8}\n", `m.yaml:5: cannot unmarshal !!int`},
		{"on a histogram", "metrics:\n  histograms:\n    - name: h\n      help: h\n      values: []\n", `m.yaml:5: unknown field "values" in histogram`},
		{"max_age bare number", "metrics:\n  counters:\n    - name: x\n      help: h\n      max_age: 300\n", `m.yaml:5: "300" is not a duration`},
		{"max_age negative", "metrics:\n  counters:\n    - name: x\n      help: h\n      max_age: -1m\n", `m.yaml:5: duration "-1m" must be positive`},
		{"expire unknown", "metrics:\n  counters:\n    - name: x\n      help: h\n      labels: [{name: p, size: 4, expire: exit, decoders: [{name: uint}]}]\n",
			`m.yaml:3: counter "x": label "p": unknown expire "exit" (want process_exit or never)`},
		{"expire size", "metrics:\n  counters:\n    - name: x\n      help: h\n      labels: [{name: p, size: 2, expire: process_exit, decoders: [{name: uint}]}]\n",
			`m.yaml:3: counter "x": label "p": expire: process_exit needs a 4- or 8-byte process id, not 2 bytes`},
		{"expire twice", "metrics:\n  counters:\n    - name: x\n      help: h\n      labels: [{name: p, size: 4, expire: process_exit, decoders: [{name: uint}]}, {name: q, size: 4, expire: process_exit, decoders: [{name: uint}]}]\n",
			`labels "p" and "q" both have expire: process_exit`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("m.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
