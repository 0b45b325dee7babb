package config

import (
	"errors"
	"fmt"
	"math"
	"regexp"
)

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// MaxLabelBytes bounds a label's size and padding: far above any BPF map
// key, and low enough that the sum of a metric's labels cannot wrap.
const MaxLabelBytes = 1 << 16

// MaxBuckets bounds the buckets of a histogram: each is a series of every
// label set (and, for events histograms, memory of every label set), so
// a bucket range mistaken for a value range (bucket_max: 1000000000 in a
// linear histogram) is refused instead of taking the exporter's memory.
const MaxBuckets = 1024

// validate checks what can be checked without the BPF object; errors name
// the file, line and metric.
func (c *Config) validate() error {
	m := c.Metrics
	if len(m.Counters)+len(m.Gauges)+len(m.Histograms) == 0 && len(c.Tracing.Spans) == 0 {
		return &FileError{Path: c.Path, Line: c.Line, Err: fmt.Errorf("config %q: neither metrics nor tracing are defined", c.Name)}
	}
	seen := map[string]int{}
	check := func(kind, name, mapName, help string, line int, labels []Label) error {
		fail := func(format string, args ...any) error {
			return &FileError{Path: c.Path, Line: line, Err: fmt.Errorf("%s %q: %s", kind, name, fmt.Sprintf(format, args...))}
		}
		switch {
		case name == "":
			return &FileError{Path: c.Path, Line: line, Err: fmt.Errorf("%s without a name", kind)}
		case !metricNameRE.MatchString(name):
			return fail("not a valid Prometheus metric name")
		case help == "":
			return fail("has no help")
		case mapName == "":
			return fail("names no map")
		}
		if prev, ok := seen[name]; ok {
			return fail("defined twice (first at line %d)", prev)
		}
		seen[name] = line
		names := map[string]bool{}
		for _, l := range labels {
			switch {
			case !labelNameRE.MatchString(l.Name):
				return fail("label %q is not a valid Prometheus label name", l.Name)
			case names[l.Name]:
				return fail("label %q appears twice", l.Name)
			case l.Size == 0:
				return fail("label %q: size is zero or not set", l.Name)
			case l.Size > MaxLabelBytes:
				return fail("label %q: size %d is over %d bytes", l.Name, l.Size, MaxLabelBytes)
			case l.Padding > MaxLabelBytes:
				return fail("label %q: padding %d is over %d bytes", l.Name, l.Padding, MaxLabelBytes)
			case len(l.Decoders) == 0:
				return fail("label %q has no decoders", l.Name)
			}
			names[l.Name] = true
		}
		if err := validateExpire(labels); err != nil {
			return fail("%v", err)
		}
		return nil
	}
	var errs []error
	entry := func(kind string, x Counter) error {
		help := x.Help
		if x.Values != nil && help == "" {
			help = "-" // each value has its own help, checked below
		}
		if err := check(kind, x.Name, x.MapName(), help, x.Line, x.Labels); err != nil {
			return err
		}
		if err := c.validateEvents(kind, x.Name, x.Line, x.Events, x.Value, x.Values); err != nil {
			return err
		}
		return c.validateValues(kind, x, seen)
	}
	for _, x := range m.Counters {
		errs = append(errs, entry("counter", x))
	}
	for _, x := range m.Gauges {
		errs = append(errs, entry("gauge", x))
	}
	for _, h := range m.Histograms {
		if err := check("histogram", h.Name, h.MapName(), h.Help, h.Line, h.Labels); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := c.validateEvents("histogram", h.Name, h.Line, h.Events, h.Value, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, c.validateBuckets(h))
	}
	return errors.Join(errs...)
}

func (c *Config) validateBuckets(h Histogram) error {
	fail := func(format string, args ...any) error {
		return &FileError{Path: c.Path, Line: h.Line, Err: fmt.Errorf("histogram %q: %s", h.Name, fmt.Sprintf(format, args...))}
	}
	if len(h.Labels) == 0 && h.Events == "" {
		return fail("needs labels, the last being the bucket key")
	}
	mult := h.Multiplier()
	if math.IsNaN(mult) || math.IsInf(mult, 0) || mult < 0 {
		return fail("bucket_multiplier %v: want a positive number", h.BucketMultiplier)
	}
	switch h.BucketType {
	case BucketExp2, BucketExp2Zero, BucketLinear:
		if h.BucketMin < 0 || h.BucketMax <= h.BucketMin {
			return fail("bucket_max (%d) must be above bucket_min (%d) and bucket_min at least 0", h.BucketMax, h.BucketMin)
		}
		if n := h.BucketMax - h.BucketMin + 1; n > MaxBuckets {
			return fail("bucket_min %d to bucket_max %d make %d buckets, over %d", h.BucketMin, h.BucketMax, n, MaxBuckets)
		}
		if top := h.BucketMax; h.BucketType != BucketLinear && math.IsInf(math.Exp2(float64(top))*mult, 0) {
			return fail("bucket_max %d: bound 2^%d x %v is past the largest float", top, top, mult)
		}
	case BucketFixed:
		if len(h.BucketKeys) == 0 {
			return fail("bucket_type fixed needs bucket_keys")
		}
		if len(h.BucketKeys) > MaxBuckets {
			return fail("%d bucket_keys, over %d", len(h.BucketKeys), MaxBuckets)
		}
		for i, k := range h.BucketKeys {
			if math.IsNaN(k) || math.IsInf(k, 0) {
				return fail("bucket_keys: %v is not a finite number", k)
			}
			if i > 0 && k <= h.BucketKeys[i-1] {
				return fail("bucket_keys must increase (%v after %v)", k, h.BucketKeys[i-1])
			}
		}
	case "":
		return fail("has no bucket_type (exp2, exp2zero, linear or fixed)")
	default:
		return fail("unknown bucket_type %q (want exp2, exp2zero, linear or fixed)", h.BucketType)
	}
	return nil
}

// Warnings lists what the config asks for that probe_exporter ignores.
func (c Config) Warnings() []string {
	var w []string
	for _, m := range c.Metrics.Gauges {
		if m.PerfEventArray {
			w = append(w, fmt.Sprintf("%s:%d: metric %q: perf_event_array gauges are not supported; the map is read as a regular map", c.Path, m.Line, m.Name))
		}
	}
	return w
}
