// Package config holds the YAML schema of probe_exporter programs and its
// validation. The schema is the one of cloudflare ebpf_exporter v2 (one YAML
// next to one BPF object), extended with gauges, plus the older ebpf_exporter v1 layout
// (a `programs:` list with inline code and explicit attach points).
package config

import "fmt"

// Config is one loaded unit: a BPF object (or inline code) and the metrics
// read from its maps. A config either loads and attaches as a whole or is
// reported as failed, without affecting other configs.
type Config struct {
	// Name is the config name: the YAML file name without extension, or the
	// program name for v1-layout configs.
	Name string `yaml:"-"`
	// Path is the YAML file this config came from.
	Path string `yaml:"-"`
	// BPFPath is the object file to load (D/name.bpf.o) when Code is empty.
	BPFPath string `yaml:"-"`
	// Object is the BPF object itself when it does not come from a file
	// (the embedded defaults); it takes precedence over BPFPath.
	Object []byte `yaml:"-"`

	Metrics     Metrics     `yaml:"metrics"`
	Tracing     Tracing     `yaml:"tracing"`
	Kaddrs      []string    `yaml:"kaddrs"`
	CgroupIDMap CgroupIDMap `yaml:"cgroup_id_map"`

	// The fields below come from ebpf_exporter v1's (bcc era) layout and from
	// ebpf-userspace-exporter. They are set only for v1-layout configs.

	// Code is libbpf-style C compiled with clang at load time.
	Code   string   `yaml:"-"`
	Cflags []string `yaml:"-"`
	// Attach lists explicit attach points; when empty, programs attach by
	// their SEC() names.
	Attach []AttachPoint `yaml:"-"`
	// Attachments selects processes for userspace probes.
	Attachments *Selector `yaml:"-"`

	// Line is the line of the config's start in Path (1 for v2 files, the
	// line of the program entry for v1-layout files).
	Line int `yaml:"-"`
	// KaddrsLine is the line of kaddrs: in Path.
	KaddrsLine int `yaml:"-"`
}

// At names a line of the config's file ("file:line", or the config's
// name for an embedded one), for errors about what is written there.
func (c Config) At(line int) string {
	switch {
	case c.Path == "":
		return fmt.Sprintf("config %q", c.Name)
	case line > 0:
		return fmt.Sprintf("%s:%d", c.Path, line)
	}
	return c.Path
}

// Metrics is the set of metrics read from a config's maps.
type Metrics struct {
	Counters   []Counter   `yaml:"counters"`
	Gauges     []Counter   `yaml:"gauges"`
	Histograms []Histogram `yaml:"histograms"`
}

// Counter describes a counter (or, under metrics.gauges, a gauge) read from
// the BPF map of the same name.
type Counter struct {
	Name           string  `yaml:"name"`
	Help           string  `yaml:"help"`
	PerfEventArray bool    `yaml:"perf_event_array"`
	Labels         []Label `yaml:"labels"`
	// Table is the v1-layout name of the map; v2 uses Name.
	Table string `yaml:"table"`
	// Values are the fields of a struct value, each exported as its own
	// metric; without them the value is one u64 and the metric is Name.
	Values []Value `yaml:"values"`
	// MaxAge, when set, deletes keys whose value has not changed for that
	// long from the kernel map (see Expiry).
	MaxAge Duration `yaml:"max_age"`
	// Events names a ring buffer or perf event array whose records are
	// counted as they arrive, in place of a map read at scrape time.
	Events string `yaml:"events"`
	// Value is the field of an event record summed (unset: records are
	// counted).
	Value *EventValue `yaml:"value"`

	Line int `yaml:"-"`
}

// EventValue is the unsigned field of an event record (native byte order)
// that a histogram observes or a counter sums.
type EventValue struct {
	Offset uint `yaml:"offset"`
	Size   uint `yaml:"size"`
}

// MapName is the BPF map the metric reads.
func (c Counter) MapName() string {
	if c.Events != "" {
		return c.Events
	}
	if c.Table != "" {
		return c.Table
	}
	return c.Name
}

// Histogram describes a histogram read from the BPF map of the same name,
// whose last label is the bucket key.
type Histogram struct {
	Name             string     `yaml:"name"`
	Help             string     `yaml:"help"`
	BucketType       BucketType `yaml:"bucket_type"`
	BucketMultiplier float64    `yaml:"bucket_multiplier"`
	BucketMin        int        `yaml:"bucket_min"`
	BucketMax        int        `yaml:"bucket_max"`
	BucketKeys       []float64  `yaml:"bucket_keys"`
	Labels           []Label    `yaml:"labels"`
	Table            string     `yaml:"table"`
	MaxAge           Duration   `yaml:"max_age"`
	// Events names a ring buffer or perf event array whose records are
	// observed as they arrive: the field Value of each record, bucketed
	// in user space. Its labels then have no bucket label.
	Events string      `yaml:"events"`
	Value  *EventValue `yaml:"value"`

	Line int `yaml:"-"`
}

// MapName is the BPF map the metric reads.
func (h Histogram) MapName() string {
	if h.Events != "" {
		return h.Events
	}
	if h.Table != "" {
		return h.Table
	}
	return h.Name
}

// Multiplier is the bucket multiplier, 1 when unset.
func (h Histogram) Multiplier() float64 {
	if h.BucketMultiplier == 0 {
		return 1
	}
	return h.BucketMultiplier
}

// BucketType says how histogram bucket keys map to upper bounds.
type BucketType string

// Bucket types, as in ebpf_exporter.
const (
	BucketExp2     BucketType = "exp2"
	BucketExp2Zero BucketType = "exp2zero"
	BucketLinear   BucketType = "linear"
	BucketFixed    BucketType = "fixed"
)

// Label decodes one field of a map key.
type Label struct {
	Name     string    `yaml:"name"`
	Size     uint      `yaml:"size"`
	Padding  uint      `yaml:"padding"`
	Decoders []Decoder `yaml:"decoders"`
	// Expire says whether the label is a process id whose exit deletes
	// the keys carrying it: process_exit, never, or unset (the default:
	// process_exit for a label whose first decoder is pid).
	Expire string `yaml:"expire"`
}

// Decoder is one step of a label's decoder chain.
type Decoder struct {
	Name         string            `yaml:"name"`
	StaticMap    map[string]string `yaml:"static_map"`
	Regexps      []string          `yaml:"regexps"`
	AllowUnknown bool              `yaml:"allow_unknown"`
	// Regexp is the v1 spelling of Regexps.
	Regexp []string `yaml:"regexp"`
}

// Patterns returns the regexps of a regexp decoder in either spelling.
func (d Decoder) Patterns() []string {
	return append(append([]string(nil), d.Regexps...), d.Regexp...)
}

// Tracing is ebpf_exporter's tracing section: ring buffers whose records
// become OpenTelemetry spans.
type Tracing struct {
	Spans []Span `yaml:"spans"`
}

// Span is an ebpf_exporter tracing span: records of RingBuf, decoded by
// Labels, exported as spans of Service.
type Span struct {
	RingBuf string  `yaml:"ringbuf"`
	Name    string  `yaml:"name"`
	Service string  `yaml:"service"`
	Labels  []Label `yaml:"labels"`
	// Line is the span's line in its file.
	Line int `yaml:"-"`
}

// CgroupIDMap asks for a map the exporter fills with the ids of cgroups
// whose paths match Regexps.
type CgroupIDMap struct {
	Name    string   `yaml:"name"`
	Type    string   `yaml:"type"`
	Regexps []string `yaml:"regexps"`
	// Line is the line of cgroup_id_map: in its file.
	Line int `yaml:"-"`
}

// AttachKind is the kind of an explicit attach point.
type AttachKind string

// Attach kinds of the v1 layout.
const (
	AttachTracepoint    AttachKind = "tracepoint"
	AttachRawTracepoint AttachKind = "raw_tracepoint"
	AttachKprobe        AttachKind = "kprobe"
	AttachKretprobe     AttachKind = "kretprobe"
	AttachPerfEvent     AttachKind = "perf_event"
	AttachUprobe        AttachKind = "uprobe"
	AttachUretprobe     AttachKind = "uretprobe"
	AttachUSDT          AttachKind = "usdt"
)

// AttachPoint is an explicit attach point of a v1-layout program.
type AttachPoint struct {
	Kind AttachKind
	// Target is the kernel function, "category:name" tracepoint, raw
	// tracepoint name, USDT "provider:name" (or name) or uprobe symbol.
	Target string
	// Program is the BPF function to attach.
	Program string
	// PerfEvent is set for perf_event attach points.
	PerfEvent *PerfEvent
	Line      int
}

// PerfEvent describes a perf event to open on every online CPU.
type PerfEvent struct {
	Type            uint32 `yaml:"type"`
	Name            uint64 `yaml:"name"`
	Target          string `yaml:"target"`
	SamplePeriod    uint64 `yaml:"sample_period"`
	SampleFrequency uint64 `yaml:"sample_frequency"`
}
