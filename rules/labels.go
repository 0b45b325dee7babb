package rules

import "strings"

// Labels today's Pyroscope gives every profile.
const (
	LabelProfileType = "__profile_type__"
	LabelServiceName = "service_name"
	LabelName        = "__name__"
)

// profileTypes maps the type suffix of a pushed application name (as
// Pyroscope names pprof sample types: app.cpu, app.inuse_space) to
// today's Pyroscope profile type, <name>:<sample type>:<sample unit>:<period type>:<period unit>.
var profileTypes = map[string]string{
	"cpu":            "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
	"off_cpu":        "off_cpu:off_cpu:nanoseconds:off_cpu:nanoseconds", // the built-in profiler's blocked time
	"alloc_objects":  "memory:alloc_objects:count:space:bytes",
	"alloc_space":    "memory:alloc_space:bytes:space:bytes",
	"inuse_objects":  "memory:inuse_objects:count:space:bytes",
	"inuse_space":    "memory:inuse_space:bytes:space:bytes",
	"goroutines":     "goroutine:goroutine:count:goroutine:count",
	"mutex_count":    "mutex:contentions:count:contentions:count",
	"mutex_duration": "mutex:delay:nanoseconds:contentions:count",
	"block_count":    "block:contentions:count:contentions:count",
	"block_duration": "block:delay:nanoseconds:contentions:count",
}

// ProfileLabels are the labels a recording rule's matchers see for a
// profile pushed as app ("svc.cpu") with tags: the tags, service_name (the
// application without its type suffix, unless a tag sets it),
// __profile_type__ and __name__.
func ProfileLabels(app, units string, tags map[string]string) map[string]string {
	out := make(map[string]string, len(tags)+3)
	for k, v := range tags {
		out[k] = v
	}
	svc, typ := app, ""
	if i := strings.LastIndexByte(app, '.'); i > 0 {
		svc, typ = app[:i], app[i+1:]
	}
	pt, ok := profileTypes[typ]
	switch {
	case ok:
	case typ == "" && (units == "" || units == "samples"):
		pt, svc = profileTypes["cpu"], app
	default:
		if typ == "" {
			typ, svc = units, app
		}
		if units == "" {
			units = "count"
		}
		pt = typ + ":" + typ + ":" + units + ":" + typ + ":" + units
	}
	if _, set := out[LabelServiceName]; !set {
		out[LabelServiceName] = svc
	}
	out[LabelProfileType] = pt
	out[LabelName], _, _ = strings.Cut(pt, ":")
	return out
}

// matchAll applies Prometheus matchers: an absent label is the empty value.
func matchAll(ms []*Matcher, labels map[string]string) bool {
	for _, m := range ms {
		v := labels[m.Key]
		var ok bool
		switch m.Op {
		case OpEqual:
			ok = v == m.Value
		case OpNotEqual:
			ok = v != m.Value
		case OpRegexp:
			ok = m.re.MatchString(v)
		case OpNotRegexp:
			ok = !m.re.MatchString(v)
		}
		if !ok {
			return false
		}
	}
	return true
}
