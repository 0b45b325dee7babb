package scripts

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// btScript is what the exporter infers from a bpftrace script's text:
// which maps are count() counters and what their keys are called.
type btScript struct {
	counters map[string]bool     // maps assigned count()
	labels   map[string][]string // from "// labels: @map a,b" or "// labels: a,b"
	defaults []string            // labels for every map without its own
}

var (
	countRE  = regexp.MustCompile(`(@[A-Za-z0-9_]*)\s*(\[[^\]]*\])?\s*=\s*count\(\s*\)`)
	labelsRE = regexp.MustCompile(`(?m)^\s*//\s*labels:\s*(@[A-Za-z0-9_]*\s+)?([A-Za-z_][A-Za-z0-9_]*(\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*$`)
)

// inferBpftrace reads the script text: count() maps become counters, and
// "// labels: a,b" comments name keys (optionally for one map:
// "// labels: @calls comm,pid").
func inferBpftrace(src string) btScript {
	s := btScript{counters: map[string]bool{}, labels: map[string][]string{}}
	for _, m := range countRE.FindAllStringSubmatch(src, -1) {
		s.counters[m[1]] = true
	}
	for _, m := range labelsRE.FindAllStringSubmatch(src, -1) {
		var names []string
		for _, n := range strings.Split(m[2], ",") {
			names = append(names, strings.TrimSpace(n))
		}
		if mp := strings.TrimSpace(m[1]); mp != "" {
			s.labels[mp] = names
		} else {
			s.defaults = names
		}
	}
	return s
}

// btLine is one line of bpftrace -f json output.
type btLine struct {
	Type string                     `json:"type"`
	Data map[string]json.RawMessage `json:"data"`
}

type btBucket struct {
	Min   *float64 `json:"min"`
	Max   *float64 `json:"max"`
	Count uint64   `json:"count"`
}

type btStats struct {
	Count   uint64  `json:"count"`
	Average float64 `json:"average"`
	Total   float64 `json:"total"`
}

// skippedMap is a map left out of a dump, and why.
type skippedMap struct{ name, reason string }

// bpftraceFamilies turns the map lines of one SIGUSR1 dump into metric
// families: @name -> name, keys -> labels, count() -> counter, other
// integers -> gauge, hist()/lhist() -> histogram with cumulative buckets,
// stats() -> summary (_count, _sum), avg() -> gauge of the average. A map
// whose values are not numbers (strings, tuples, stacks) is left out and
// named in skipped; the other maps are served. A map printed twice (a
// script's own print() during the dump) counts once, as last printed.
func bpftraceFamilies(lines [][]byte, s btScript) (fams []*dto.MetricFamily, skipped []skippedMap, err error) {
	byName := map[string]int{}
	for _, raw := range lines {
		var l btLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return nil, nil, fmt.Errorf("bpftrace output %q: %w", truncate(raw, 80), err)
		}
		names := make([]string, 0, len(l.Data))
		for name := range l.Data {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			f, err := s.family(l.Type, name, l.Data[name])
			if err != nil {
				skipped = append(skipped, skippedMap{name: name, reason: err.Error()})
				continue
			}
			if f == nil {
				continue
			}
			if i, ok := byName[f.GetName()]; ok {
				fams[i] = f
				continue
			}
			byName[f.GetName()] = len(fams)
			fams = append(fams, f)
		}
	}
	sort.Slice(fams, func(i, j int) bool { return fams[i].GetName() < fams[j].GetName() })
	return fams, skipped, nil
}

func (s btScript) family(typ, mapName string, data json.RawMessage) (*dto.MetricFamily, error) {
	name := sanitizeName(strings.TrimPrefix(mapName, "@"))
	f := &dto.MetricFamily{Name: &name, Help: strp("bpftrace map " + mapName)}
	// A map is either a bare value or an object keyed by the map keys.
	keyed := map[string]json.RawMessage{}
	trimmed := strings.TrimSpace(string(data))
	isObject := strings.HasPrefix(trimmed, "{")
	if typ == "stats" && isObject {
		// stats() without keys is itself an object: tell by its fields.
		var fields map[string]json.RawMessage
		if json.Unmarshal(data, &fields) == nil && isStatsObject(fields) {
			isObject = false
		}
	}
	if isObject {
		if err := json.Unmarshal(data, &keyed); err != nil {
			return nil, fmt.Errorf("value %s: %w", truncate(data, 40), err)
		}
	} else {
		keyed[""] = data
	}
	keys := make([]string, 0, len(keyed))
	for k := range keyed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m := &dto.Metric{Label: s.labelPairs(mapName, k)}
		v := keyed[k]
		switch typ {
		case "map":
			var x float64
			if err := json.Unmarshal(v, &x); err != nil {
				return nil, fmt.Errorf("value %s is not a number", truncate(v, 40))
			}
			if s.counters[mapName] {
				f.Type = dto.MetricType_COUNTER.Enum()
				m.Counter = &dto.Counter{Value: &x}
			} else {
				f.Type = dto.MetricType_GAUGE.Enum()
				m.Gauge = &dto.Gauge{Value: &x}
			}
		case "hist", "lhist":
			var bs []btBucket
			if err := json.Unmarshal(v, &bs); err != nil {
				return nil, fmt.Errorf("value %s is not a histogram", truncate(v, 40))
			}
			f.Type = dto.MetricType_HISTOGRAM.Enum()
			m.Histogram = histogramOf(bs, typ == "hist")
		case "stats":
			var st btStats
			if err := json.Unmarshal(v, &st); err == nil && strings.Contains(string(v), "count") {
				f.Type = dto.MetricType_SUMMARY.Enum()
				m.Summary = &dto.Summary{SampleCount: &st.Count, SampleSum: &st.Total}
				break
			}
			// avg() prints only the average.
			var x float64
			if err := json.Unmarshal(v, &x); err != nil {
				return nil, fmt.Errorf("stats value %s", truncate(v, 40))
			}
			f.Type = dto.MetricType_GAUGE.Enum()
			m.Gauge = &dto.Gauge{Value: &x}
		default:
			return nil, nil
		}
		f.Metric = append(f.Metric, m)
	}
	if f.Type == nil {
		return nil, nil
	}
	return f, nil
}

// isStatsObject tells a stats() value ({"count", "average", "total"})
// from a map of them keyed by the map's keys.
func isStatsObject(fields map[string]json.RawMessage) bool {
	_, c := fields["count"]
	_, t := fields["total"]
	if !c || !t {
		return false
	}
	for _, v := range fields {
		if strings.HasPrefix(strings.TrimSpace(string(v)), "{") {
			return false
		}
	}
	return true
}

// labelPairs names the parts of a bpftrace key ("1,x" for @m[1, "x"]).
func (s btScript) labelPairs(mapName, key string) []*dto.LabelPair {
	if key == "" {
		return nil
	}
	parts := strings.Split(key, ",")
	names := s.labels[mapName]
	if names == nil {
		names = s.defaults
	}
	pairs := make([]*dto.LabelPair, len(parts))
	for i, p := range parts {
		var n string
		switch {
		case i < len(names):
			n = names[i]
		case len(parts) == 1:
			n = "key"
		default:
			n = "key" + strconv.Itoa(i)
		}
		pairs[i] = &dto.LabelPair{Name: strp(n), Value: strp(p)}
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].GetName() < pairs[j].GetName() })
	return pairs
}

// histogramOf turns bpftrace buckets (inclusive [min, max] integer ranges,
// only the non-empty ones) into cumulative Prometheus buckets with le =
// max. For hist() every power-of-two bucket from 0 up to the highest one
// seen is present, so the bucket set stays stable. bpftrace does not print
// the sum of values, so _sum is 0, as ebpf_exporter does for its
// histograms.
func histogramOf(bs []btBucket, pow2 bool) *dto.Histogram {
	counts := map[float64]uint64{}
	var total uint64
	maxBound := math.Inf(-1)
	for _, b := range bs {
		le := math.Inf(1)
		if b.Max != nil {
			le = *b.Max
		}
		counts[le] += b.Count
		total += b.Count
		if !math.IsInf(le, 1) && le > maxBound {
			maxBound = le
		}
	}
	if pow2 && !math.IsInf(maxBound, -1) {
		for le := 0.0; le <= maxBound; le = le*2 + 1 {
			if _, ok := counts[le]; !ok {
				counts[le] = 0
			}
		}
	}
	bounds := make([]float64, 0, len(counts))
	for le := range counts {
		if !math.IsInf(le, 1) {
			bounds = append(bounds, le)
		}
	}
	sort.Float64s(bounds)
	h := &dto.Histogram{SampleCount: &total, SampleSum: new(float64)}
	var cum uint64
	for _, le := range bounds {
		cum += counts[le]
		le, c := le, cum
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: &le, CumulativeCount: &c})
	}
	return h
}

func strp(s string) *string { return &s }

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
