package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const biolatency = `metrics:
  histograms:
    - name: bio_latency_seconds
      help: Block IO latency histogram
      bucket_type: exp2
      bucket_min: 0
      bucket_max: 26
      bucket_multiplier: 0.000001 # microseconds to seconds
      labels:
        - name: device
          size: 32
          decoders:
            - name: string
        - name: operation
          size: 8
          decoders:
            - name: uint
            - name: static_map
              static_map:
                1: read
                2: write
        - name: bucket
          size: 8
          decoders:
            - name: uint
  counters:
    - name: bio_ops_total
      help: ops
      labels:
        - name: cgroup
          size: 8
          decoders:
            - name: uint
            - name: cgroup
kaddrs:
  - blk_account_io_done
`

// ebpf_exporter v1's cachestat example, in libbpf-style C.
const cachestat = `programs:
  - name: cachestat
    metrics:
      counters:
        - name: page_cache_ops_total
          help: Page cache operation counters by type
          table: counts
          labels:
            - name: op
              size: 8
              decoders:
                - name: ksym
            - name: command
              size: 128
              decoders:
                - name: string
                - name: regexp
                  regexp:
                    - ^systemd-journal$
                    - ^syslog-ng$
    kprobes:
      add_to_page_cache_lru: do_count
      mark_page_accessed: do_count
    tracepoints:
      writeback:writeback_dirty_folio: do_count_tp
    code: |
      #include "vmlinux.h"
      SEC("kprobe") int do_count(void *ctx) { return 0; }
`

// ebpf-userspace-exporter's gunicorn example.
const gunicorn = `programs:
  - name: gc_total
    metrics:
      counters:
        - name: gc_total
          help: Total number of gc events
          table: gc_counts
          labels:
            - name: gen
              size: 8
              decoders:
                - name: uint
    usdt:
      gc__start: trace_gc__start
    attachments:
      binary_name: "gunicorn"
    code: |
      int trace_gc__start(void *ctx) { return 0; }
`

func TestParseV2(t *testing.T) {
	cfgs, err := Parse("/etc/x/biolatency.yaml", []byte(biolatency))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfgs) != 1 {
		t.Fatalf("%d configs", len(cfgs))
	}
	c := cfgs[0]
	if c.Name != "biolatency" || c.Path != "/etc/x/biolatency.yaml" {
		t.Errorf("name %q path %q", c.Name, c.Path)
	}
	h := c.Metrics.Histograms[0]
	if h.Line != 3 || h.BucketType != BucketExp2 || h.BucketMax != 26 || h.Multiplier() != 0.000001 || len(h.Labels) != 3 {
		t.Errorf("histogram %+v", h)
	}
	if h.Labels[1].Decoders[1].StaticMap["2"] != "write" {
		t.Errorf("static map %+v", h.Labels[1].Decoders[1])
	}
	if c.Metrics.Counters[0].Line != 27 || c.Metrics.Counters[0].MapName() != "bio_ops_total" {
		t.Errorf("counter %+v", c.Metrics.Counters[0])
	}
	if len(c.Kaddrs) != 1 || c.Kaddrs[0] != "blk_account_io_done" {
		t.Errorf("kaddrs %v", c.Kaddrs)
	}
}

func TestParseSeed(t *testing.T) {
	cfgs, err := Parse("/x/seed.yaml", []byte(cachestat))
	if err != nil {
		t.Fatal(err)
	}
	c := cfgs[0]
	if c.Name != "cachestat" || !strings.Contains(c.Code, "do_count") {
		t.Fatalf("config %+v", c)
	}
	if m := c.Metrics.Counters[0]; m.MapName() != "counts" || m.Name != "page_cache_ops_total" || m.Labels[1].Decoders[1].Patterns()[1] != "^syslog-ng$" {
		t.Errorf("metric %+v", m)
	}
	want := []string{"kprobe add_to_page_cache_lru do_count", "kprobe mark_page_accessed do_count", "tracepoint writeback:writeback_dirty_folio do_count_tp"}
	if len(c.Attach) != len(want) {
		t.Fatalf("attach %+v", c.Attach)
	}
	for i, ap := range c.Attach {
		if got := string(ap.Kind) + " " + ap.Target + " " + ap.Program; got != want[i] {
			t.Errorf("attach %d = %q, want %q", i, got, want[i])
		}
	}
	if c.Attach[2].Line != 25 {
		t.Errorf("tracepoint line %d", c.Attach[2].Line)
	}

	cfgs, err = Parse("/x/gc.yaml", []byte(gunicorn))
	if err != nil {
		t.Fatal(err)
	}
	if c := cfgs[0]; c.Attachments == nil || c.Attachments.Comm != "gunicorn" || c.Attach[0].Kind != AttachUSDT || c.Attach[0].Target != "gc__start" {
		t.Fatalf("gunicorn %+v", c)
	}
	// ebpf-userspace-exporter itself reads attachment:, as its README's
	// example has it.
	cfgs, err = Parse("/x/gc.yaml", []byte(strings.Replace(gunicorn, "attachments:", "attachment:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c := cfgs[0]; c.Attachments == nil || c.Attachments.Comm != "gunicorn" {
		t.Fatalf("attachment: %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", "metrics:\n  counters:\n    - name: x\n      help: y\n      lables: []\n", `c.yaml:5: unknown field "lables" in counter/gauge`},
		{"unknown top key", "metric:\n  counters: []\n", `c.yaml:1: unknown field "metric" in config`},
		{"flush_interval is not supported", "metrics:\n  counters:\n    - name: x\n      help: y\n      flush_interval: 5s\n", `c.yaml:5: unknown field "flush_interval" in counter/gauge`},
		{"empty", "", "c.yaml: empty config"},
		{"no metrics", "kaddrs: [a]\n", `neither metrics nor tracing are defined`},
		{"bad name", "metrics:\n  counters:\n    - name: 9bad\n      help: y\n", `c.yaml:3: counter "9bad": not a valid Prometheus metric name`},
		{"no help", "metrics:\n  counters:\n    - name: x\n", `c.yaml:3: counter "x": has no help`},
		{"zero size", "metrics:\n  counters:\n    - name: x\n      help: y\n      labels:\n        - name: a\n          decoders: [{name: uint}]\n", `c.yaml:3: counter "x": label "a": size is zero or not set`},
		{"huge size", "metrics:\n  counters:\n    - name: x\n      help: y\n      labels:\n        - name: a\n          size: 18446744073709551612\n          decoders: [{name: uint}]\n", `c.yaml:3: counter "x": label "a": size 18446744073709551612 is over 65536 bytes`},
		{"huge padding", "metrics:\n  counters:\n    - name: x\n      help: y\n      labels:\n        - name: a\n          size: 4\n          padding: 18446744073709551612\n          decoders: [{name: uint}]\n", `c.yaml:3: counter "x": label "a": padding 18446744073709551612 is over 65536 bytes`},
		{"no decoders", "metrics:\n  counters:\n    - name: x\n      help: y\n      labels:\n        - name: a\n          size: 4\n", `label "a" has no decoders`},
		{"bad bucket type", "metrics:\n  histograms:\n    - name: h\n      help: y\n      bucket_type: log\n      bucket_max: 3\n      labels: [{name: bucket, size: 8, decoders: [{name: uint}]}]\n", `c.yaml:3: histogram "h": unknown bucket_type "log"`},
		{"empty range", "metrics:\n  histograms:\n    - name: h\n      help: y\n      bucket_type: exp2\n      bucket_min: 4\n      bucket_max: 4\n      labels: [{name: bucket, size: 8, decoders: [{name: uint}]}]\n", `bucket_max (4) must be above bucket_min (4)`},
		{"fixed unsorted", "metrics:\n  histograms:\n    - name: h\n      help: y\n      bucket_type: fixed\n      bucket_keys: [5, 1]\n      labels: [{name: bucket, size: 8, decoders: [{name: uint}]}]\n", `bucket_keys must increase`},
		{"duplicate", "metrics:\n  counters:\n    - name: x\n      help: y\n    - name: x\n      help: y\n", `c.yaml:5: counter "x": defined twice (first at line 3)`},
		{"linear range mistaken for values", "metrics:\n  histograms:\n    - name: h\n      help: y\n      labels: [{name: bucket, size: 8, decoders: [{name: uint}]}]\n      bucket_type: linear\n      bucket_max: 2000000000\n", `c.yaml:3: histogram "h": bucket_min 0 to bucket_max 2000000000 make 2000000001 buckets, over 1024`},
		{"exp2 past the largest float", "metrics:\n  histograms:\n    - name: h\n      help: y\n      labels: [{name: bucket, size: 8, decoders: [{name: uint}]}]\n      bucket_type: exp2\n      bucket_min: 1000\n      bucket_max: 1100\n", `c.yaml:3: histogram "h": bucket_max 1100: bound 2^1100 x 1 is past the largest float`},
		{"negative multiplier", "metrics:\n  histograms:\n    - name: h\n      help: y\n      labels: [{name: bucket, size: 8, decoders: [{name: uint}]}]\n      bucket_type: exp2\n      bucket_max: 8\n      bucket_multiplier: -1\n", `c.yaml:3: histogram "h": bucket_multiplier -1: want a positive number`},
		{"NaN multiplier", "metrics:\n  histograms:\n    - name: h\n      help: y\n      labels: [{name: bucket, size: 8, decoders: [{name: uint}]}]\n      bucket_type: exp2\n      bucket_max: 8\n      bucket_multiplier: .nan\n", `bucket_multiplier NaN: want a positive number`},
		{"NaN bucket key", "metrics:\n  histograms:\n    - name: h\n      help: y\n      labels: [{name: bucket, size: 8, decoders: [{name: uint}]}]\n      bucket_type: fixed\n      bucket_keys: [1, .nan, 3]\n", `c.yaml:3: histogram "h": bucket_keys: NaN is not a finite number`},
		{"infinite bucket key", "metrics:\n  histograms:\n    - name: h\n      help: y\n      labels: [{name: bucket, size: 8, decoders: [{name: uint}]}]\n      bucket_type: fixed\n      bucket_keys: [1, .inf]\n", `bucket_keys: +Inf is not a finite number`},
		{"bad yaml", "metrics: [\n", "c.yaml:"},
		{"v1 cflags without code", "programs:\n  - name: p\n    metrics:\n      counters: [{name: c, help: h, table: t}]\n    tracepoints: {a:b: f}\n    cflags: [-DX]\n", `c.yaml:6: program "p": has cflags: but no code:`},
		{"v1 object name with a slash", "programs:\n  - name: ../p\n    metrics:\n      counters: [{name: c, help: h, table: t}]\n    tracepoints: {a:b: f}\n", `c.yaml:2: program "../p": has no code: and a name that cannot name its object file`},
		{"v1 unknown key", "programs:\n  - name: p\n    kprobez: {}\n", `c.yaml:3: unknown field "kprobez" in program`},
		{"v1 bad tracepoint", "programs:\n  - name: p\n    metrics:\n      counters: [{name: c, help: h, table: t}]\n    tracepoints: {nocolon: f}\n    code: x\n", `tracepoint "nocolon": want category:name`},
		{"v1 attachment twice", "programs:\n  - name: p\n    metrics:\n      counters: [{name: c, help: h, table: t}]\n    usdt: {a: f}\n    attachment: {binary_name: x}\n    attachments: {binary_name: y}\n    code: x\n", `c.yaml:2: program "p": has both attachment: and attachments:`},
		{"v1 attaches nowhere", "programs:\n  - name: p\n    metrics:\n      counters: [{name: c, help: h, table: t}]\n    code: x\n", `attaches nowhere`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "good.yaml"), []byte(biolatency), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("metrics:\n  counters:\n    - name: x\n      hlep: y\n"), 0o644)
	cfgs, errs := Load(dir, []string{"good", "bad", "missing"})
	if len(cfgs) != 1 || cfgs[0].Name != "good" || cfgs[0].BPFPath != filepath.Join(dir, "good.bpf.o") {
		t.Fatalf("configs %+v", cfgs)
	}
	if len(errs) != 2 {
		t.Fatalf("errors %v", errs)
	}
	var fe *FileError
	if !errors.As(errs[0], &fe) || fe.Name != "bad" || fe.Line != 4 || !strings.Contains(errs[0].Error(), `bad.yaml:4: unknown field "hlep"`) {
		t.Errorf("bad: %v", errs[0])
	}
	if !errors.As(errs[1], &fe) || fe.Name != "missing" || !strings.Contains(errs[1].Error(), "no such file") {
		t.Errorf("missing: %v", errs[1])
	}
}

// TestLoadRefusesMetricsOfAnotherConfig: two configs defining one metric
// (a copy of a config under another name, two examples of the same thing)
// would serve duplicate series; the later one is refused naming the
// earlier definition (a refused config claims no name), and a config
// whose names are its own loads.
func TestLoadRefusesMetricsOfAnotherConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("metrics:\n  counters:\n    - name: x_total\n      help: h\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("metrics:\n  gauges:\n    - name: y\n      help: h\n  histograms:\n    - name: x_total\n      help: h\n      bucket_type: exp2\n      bucket_max: 4\n      labels: [{name: bucket, size: 8, decoders: [{name: uint}]}]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("metrics:\n  counters:\n    - name: m\n      values:\n        - {name: z_total, help: h, offset: 0, size: 8}\n        - {name: x_total, help: h, offset: 8, size: 8}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "d.yaml"), []byte("metrics:\n  counters:\n    - name: d_total\n      help: h\n"), 0o644)
	cfgs, errs := Load(dir, []string{"a", "b", "c", "d"})
	var names []string
	for _, c := range cfgs {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "a,d" {
		t.Errorf("loaded %v, want a and d", names)
	}
	want := []string{
		filepath.Join(dir, "b.yaml") + `:6: histogram "x_total": also defined at ` + filepath.Join(dir, "a.yaml") + ":3",
		filepath.Join(dir, "c.yaml") + `:6: counter "x_total": also defined at ` + filepath.Join(dir, "a.yaml") + ":3",
	}
	if len(errs) != len(want) {
		t.Fatalf("errors %v, want %d", errs, len(want))
	}
	for i, w := range want {
		var fe *FileError
		if !errors.As(errs[i], &fe) || fe.Name != []string{"b", "c"}[i] || !strings.Contains(errs[i].Error(), w) {
			t.Errorf("error %v, want one of config %s with %q", errs[i], []string{"b", "c"}[i], w)
		}
	}
}

// TestLoadV1Objects: v1-layout programs without code: take their objects
// from beside the file: the config's NAME.bpf.o for a file of one
// program, each program's own for a file of several; selectors and attach
// points stay.
func TestLoadV1Objects(t *testing.T) {
	dir := t.TempDir()
	prog := func(name string) string {
		return "  - name: " + name + "\n    metrics:\n      counters: [{name: " + name + "_total, help: h, table: t}]\n    uprobes: {work: on_work}\n    attachments: {binary_name: w}\n"
	}
	os.WriteFile(filepath.Join(dir, "one.yaml"), []byte("programs:\n"+prog("p")), 0o644)
	os.WriteFile(filepath.Join(dir, "two.yaml"), []byte("programs:\n"+prog("a")+prog("b")), 0o644)
	cfgs, errs := Load(dir, []string{"one", "two"})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	want := map[string]string{"one": "one.bpf.o", "a": "a.bpf.o", "b": "b.bpf.o"}
	if len(cfgs) != 3 {
		t.Fatalf("configs %+v", cfgs)
	}
	for _, c := range cfgs {
		if c.BPFPath != filepath.Join(dir, want[c.Name]) || c.Attachments == nil || c.Attachments.Comm != "w" || len(c.Attach) != 1 || c.Attach[0].Kind != AttachUprobe {
			t.Errorf("%s: object %q, selector %+v, attach %+v", c.Name, c.BPFPath, c.Attachments, c.Attach)
		}
	}
}

func TestWarnings(t *testing.T) {
	cfgs, err := Parse("t.yaml", []byte("metrics:\n  counters:\n    - name: x\n      help: y\n      perf_event_array: true\ntracing:\n  spans:\n    - name: s\n      ringbuf: r\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Tracing spans are exported and perf_event_array counters count
	// their map's records (events:): no warning.
	if w := cfgs[0].Warnings(); len(w) != 0 {
		t.Fatalf("warnings %v", w)
	}
	if got := cfgs[0].Metrics.Counters[0].Events; got != "x" {
		t.Errorf("perf_event_array counter reads events %q, want its map x", got)
	}
}
