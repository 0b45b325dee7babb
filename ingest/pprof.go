package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"strings"

	"github.com/google/pprof/profile"

	"github.com/probe-exporter/probe_exporter/rules"
)

// maxConfigBytes bounds the sample_type_config part of a multipart push.
const maxConfigBytes = 64 << 10

// decodePprof reads a pprof profile (raw, gzipped, or the "profile" field
// of a multipart form as Pyroscope's SDKs send it, with its optional
// sample_type_config), and makes one profile per sample type.
func (h *Handler) decodePprof(p params, contentType string, body io.Reader, l *lease) ([]rules.Profile, error) {
	var data []byte
	var typeConfig map[string]sampleTypeConfig
	if mt, ps, err := mime.ParseMediaType(contentType); err == nil && strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, ps["boundary"])
		found := false
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, classify(fmt.Errorf("multipart: %w", err))
			}
			switch part.FormName() {
			case "profile":
				in, err := h.sniffGzip(part)
				if err != nil {
					return nil, err
				}
				if data, err = h.readAll(in, l); err != nil {
					return nil, err
				}
				found = true
			case "sample_type_config":
				raw, err := io.ReadAll(io.LimitReader(part, maxConfigBytes+1))
				if err != nil {
					return nil, classify(err)
				}
				if len(raw) > maxConfigBytes {
					return nil, badRequest("sample_type_config over %d bytes", maxConfigBytes)
				}
				if err := json.Unmarshal(raw, &typeConfig); err != nil {
					return nil, badRequest("sample_type_config: %v", err)
				}
			default: // prev_profile and others: read past, bounded by the wire cap
				if _, err := io.Copy(io.Discard, part); err != nil {
					return nil, classify(err)
				}
			}
		}
		if !found {
			return nil, badRequest("multipart body has no profile field")
		}
	} else {
		in, err := h.sniffGzip(body)
		if err != nil {
			return nil, err
		}
		if data, err = h.readAll(in, l); err != nil {
			return nil, err
		}
	}
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		return nil, badRequest("pprof: gzip inside gzip is not accepted")
	}
	// What the profile decodes into is counted and charged before the
	// decoder builds it: its encoded size says little (an empty sample is
	// two bytes, its object 128).
	counts, err := countPprof(data)
	if err != nil {
		return nil, err
	}
	if err := l.take(counts.memory()); err != nil {
		if errors.Is(err, errTooBigForBudget) {
			return nil, tooMuch("pprof: decoding %d samples, %d locations, %d functions and %d strings takes %d MiB, more than --ingest.max-inflight-bytes allows",
				counts.samples, counts.locations, counts.functions, counts.strings, counts.memory()>>20)
		}
		return nil, err
	}
	prof, err := profile.ParseUncompressed(data)
	if err != nil {
		return nil, badRequest("pprof: %v", err)
	}
	return h.pprofProfiles(p, prof, typeConfig, l)
}

// readAll reads r whole, charging the buffer to the lease as it grows.
func (h *Handler) readAll(r io.Reader, l *lease) ([]byte, error) {
	var buf bytes.Buffer
	charged := 0
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			if buf.Len()+n > buf.Cap() {
				// Charge the grown buffer before it is allocated.
				grown := max(2*buf.Cap()+n, 64<<10)
				if lerr := l.take(int64(grown - charged)); lerr != nil {
					return nil, lerr
				}
				charged = grown
				buf.Grow(n)
			}
			buf.Write(chunk[:n])
		}
		if errors.Is(err, io.EOF) {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, classify(err)
		}
	}
}

// sampleTypeConfig is how Pyroscope's SDKs describe a pprof sample type.
type sampleTypeConfig struct {
	Units       string `json:"units"`
	Aggregation string `json:"aggregation"`
	DisplayName string `json:"display-name"`
	Sampled     bool   `json:"sampled"`
	Cumulative  bool   `json:"cumulative"`
}

// defaultSampleTypes are Pyroscope's defaults for Go's sample types:
// CPU samples are sampled (divided by the rate into seconds), in-use
// memory and goroutines are averaged, the rest summed.
var defaultSampleTypes = map[string]sampleTypeConfig{
	"samples":       {DisplayName: "cpu", Units: "samples", Sampled: true},
	"inuse_objects": {Units: "objects", Aggregation: "average"},
	"alloc_objects": {Units: "objects"},
	"inuse_space":   {Units: "bytes", Aggregation: "average"},
	"alloc_space":   {Units: "bytes"},
	"goroutine":     {DisplayName: "goroutines", Units: "goroutines", Aggregation: "average"},
	"contentions":   {DisplayName: "mutex_count", Units: "lock_samples"},
	"delay":         {DisplayName: "mutex_duration", Units: "lock_nanoseconds"},
}

// pprofProfiles makes one profile per sample type, named
// <application>.<type> as Pyroscope names them. CPU time (cpu/nanoseconds,
// or sampled "samples" counts) is exported in seconds; other types count as
// they are.
func (h *Handler) pprofProfiles(p params, prof *profile.Profile, cfg map[string]sampleTypeConfig, l *lease) ([]rules.Profile, error) {
	if len(prof.SampleType) == 0 {
		return nil, badRequest("pprof: no sample types")
	}
	hasCPUNanos := false
	for _, st := range prof.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			hasCPUNanos = true
		}
	}
	st, err := newStackTable(prof, l)
	if err != nil {
		return nil, err
	}
	for i, s := range prof.Sample {
		if len(s.Value) != len(prof.SampleType) {
			return nil, badRequest("pprof: sample %d has %d values for %d sample types", i, len(s.Value), len(prof.SampleType))
		}
	}
	// One sum per sample type and distinct stack, and the samples made
	// of them.
	if err := l.take(int64(len(prof.SampleType)) * int64(len(st.stacks)) * (8 + 24)); err != nil {
		if errors.Is(err, errTooBigForBudget) {
			return nil, tooMuch("pprof: %d sample types of %d distinct stacks take more memory than --ingest.max-inflight-bytes allows", len(prof.SampleType), len(st.stacks))
		}
		return nil, err
	}
	var out []rules.Profile
	for idx, typ := range prof.SampleType {
		c, ok := cfg[typ.Type]
		if !ok {
			c, ok = defaultSampleTypes[typ.Type]
		}
		if !ok {
			c = sampleTypeConfig{Units: typ.Unit}
		}
		name := c.DisplayName
		if name == "" {
			name = typ.Type
		}
		rp := rules.Profile{Tags: p.tags, Units: c.Units, Divisor: 1, Average: c.Aggregation == "average" || c.Aggregation == "avg"}
		switch {
		case typ.Type == "cpu" && typ.Unit == "nanoseconds":
			rp.CPU, rp.Divisor, rp.Units, name = true, 1e9, "samples", "cpu"
		case c.Sampled:
			if hasCPUNanos {
				continue // the same CPU time, counted once from nanoseconds
			}
			rp.CPU, rp.Divisor = true, uint64(p.sampleRate)
			if prof.Period > 0 && prof.PeriodType != nil && prof.PeriodType.Unit == "nanoseconds" {
				rp.Divisor = uint64(max(1, math.Round(1e9/float64(prof.Period))))
			}
		}
		if !keyRE.MatchString(name) {
			return nil, badRequest("pprof: invalid sample type %q", name)
		}
		rp.App = p.app
		if !strings.HasSuffix(rp.App, "."+name) {
			rp.App += "." + name
		}
		sums := make([]uint64, len(st.stacks))
		var total uint64
		for i, s := range prof.Sample {
			v := s.Value[idx]
			if v < 0 {
				return nil, badRequest("pprof: sample %d has a negative %s value (%d)", i, typ.Type, v)
			}
			k := st.ofSample[i]
			if sums[k] > math.MaxUint64-uint64(v) || total > math.MaxUint64-uint64(v) {
				return nil, badRequest("pprof: %s values add up to more than 2^64-1", typ.Type)
			}
			sums[k] += uint64(v)
			total += uint64(v)
		}
		rp.Samples = make([]rules.Sample, 0, len(sums))
		for k, v := range sums {
			if v > 0 || rp.Average {
				rp.Samples = append(rp.Samples, rules.Sample{Stack: st.stacks[k], Value: v})
			}
		}
		out = append(out, rp)
	}
	return out, nil
}
