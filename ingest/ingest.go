// Package ingest accepts profiles pushed with Pyroscope's /ingest API
// (folded or line stacks, pprof) and hands them to a sink such as the
// export rules.
package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/probe-exporter/probe_exporter/rules"
)

// Sink receives profiles.
type Sink interface {
	Observe(app string, tags map[string]string, units string, sampleRate uint32, samples []rules.Sample)
}

// Options configure the handler.
type Options struct {
	// MaxBodyBytes caps a request body (default 16 MiB).
	MaxBodyBytes int64
	Logger       *slog.Logger
}

// Handler serves POST /ingest.
type Handler struct {
	sink Sink
	opts Options
}

// NewHandler returns the /ingest handler.
func NewHandler(sink Sink, opts Options) *Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{sink: sink, opts: opts}
}

// params are the query parameters of a push, with Pyroscope's defaults.
type params struct {
	app         string
	tags        map[string]string
	from, until time.Time
	sampleRate  uint32
	spyName     string
	units       string
	aggregation string
	format      string
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "ingest needs POST", http.StatusMethodNotAllowed)
		return
	}
	p, err := parseParams(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("body over %d bytes", h.opts.MaxBodyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	samples, profileType, err := decode(p, r.Header.Get("Content-Type"), body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	app := p.app
	if profileType != "" && !strings.HasSuffix(app, "."+profileType) {
		// As Pyroscope names pprof pushes: <application>.<profile type>.
		app += "." + profileType
	}
	h.sink.Observe(app, p.tags, p.units, p.sampleRate, samples)
	w.WriteHeader(http.StatusOK)
}

var (
	appRE = regexp.MustCompile(`^[A-Za-z0-9_.\-/]+$`)
	keyRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
)

// parseName parses Pyroscope's segment key "app.cpu{k=v,k2=v2}".
func parseName(s string) (string, map[string]string, error) {
	app, rest, hasTags := strings.Cut(s, "{")
	app = strings.TrimSpace(app)
	if app == "" || !appRE.MatchString(app) {
		return "", nil, fmt.Errorf("name %q: invalid application name", s)
	}
	tags := map[string]string{}
	if !hasTags {
		return app, tags, nil
	}
	if !strings.HasSuffix(rest, "}") {
		return "", nil, fmt.Errorf("name %q: unclosed {", s)
	}
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || !keyRE.MatchString(k) {
			return "", nil, fmt.Errorf("name %q: invalid tag %q", s, kv)
		}
		tags[k] = strings.TrimSpace(v)
	}
	return app, tags, nil
}

// parseTime accepts unix seconds, ms, µs or ns (told apart by magnitude)
// and now, now-1h style expressions.
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return now, nil
	}
	if strings.HasPrefix(s, "now") {
		rest := strings.TrimPrefix(s, "now")
		if rest == "" {
			return now, nil
		}
		d, err := time.ParseDuration(strings.TrimPrefix(rest, "+"))
		if err != nil {
			return time.Time{}, err
		}
		return now.Add(d), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a unix time", s)
	}
	switch {
	case n > 1e17:
		return time.Unix(0, n), nil
	case n > 1e14:
		return time.UnixMicro(n), nil
	case n > 1e11:
		return time.UnixMilli(n), nil
	}
	return time.Unix(n, 0), nil
}

func parseParams(r *http.Request) (params, error) {
	q := r.URL.Query()
	p := params{sampleRate: 100, units: "samples", aggregation: "sum", format: "folded", spyName: q.Get("spyName")}
	var err error
	if p.app, p.tags, err = parseName(q.Get("name")); err != nil {
		return p, err
	}
	now := time.Now()
	if p.from, err = parseTime(q.Get("from"), now); err != nil {
		return p, fmt.Errorf("from: %w", err)
	}
	if p.until, err = parseTime(q.Get("until"), now); err != nil {
		return p, fmt.Errorf("until: %w", err)
	}
	if v := q.Get("sampleRate"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return p, fmt.Errorf("sampleRate %q: want a positive integer", v)
		}
		p.sampleRate = uint32(n)
	}
	if v := q.Get("units"); v != "" {
		p.units = v
	}
	if v := q.Get("aggregationType"); v != "" {
		if v != "sum" && v != "average" {
			return p, fmt.Errorf("aggregationType %q: want sum or average", v)
		}
		p.aggregation = v
	}
	if v := q.Get("format"); v != "" {
		switch v {
		case "folded", "lines", "pprof", "trie", "tree":
		default:
			return p, fmt.Errorf("format %q: want folded, lines or pprof", v)
		}
		p.format = v
	}
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "multipart/form-data") {
		p.format = "pprof"
	}
	return p, nil
}

// decode parses the body; for pprof it also names the profile type.
func decode(p params, contentType string, body []byte) ([]rules.Sample, string, error) {
	var samples []rules.Sample
	var err error
	switch p.format {
	case "folded":
		samples, err = decodeFolded(body)
	case "lines":
		samples, err = decodeLines(body)
	case "pprof":
		return decodePprof(contentType, body, p.sampleRate)
	default:
		err = fmt.Errorf("format %q is not supported here (use folded, lines or pprof)", p.format)
	}
	return samples, "", err
}

// decodeFolded reads "f1;f2;f3 COUNT" lines, split at the last space.
func decodeFolded(body []byte) ([]rules.Sample, error) {
	var out []rules.Sample
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			return nil, fmt.Errorf("line %d: want \"stack count\"", n)
		}
		v, err := strconv.ParseUint(line[i+1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: count %q is not a number", n, line[i+1:])
		}
		out = append(out, rules.Sample{Stack: line[:i], Value: v})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeLines reads one stack per line, each counting once.
func decodeLines(body []byte) ([]rules.Sample, error) {
	counts := map[string]uint64{}
	var order []string
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		if _, ok := counts[line]; !ok {
			order = append(order, line)
		}
		counts[line]++
	}
	out := make([]rules.Sample, 0, len(order))
	for _, s := range order {
		out = append(out, rules.Sample{Stack: s, Value: counts[s]})
	}
	return out, nil
}

// decodePprof reads a pprof profile (raw, gzipped, or the "profile" field
// of a multipart form as Pyroscope's SDKs send it). CPU profiles in
// nanoseconds become samples at the push's sample rate, so that rules
// divide them back into seconds.
func decodePprof(contentType string, body []byte, sampleRate uint32) ([]rules.Sample, string, error) {
	if mt, ps, err := mime.ParseMediaType(contentType); err == nil && strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(bytes.NewReader(body), ps["boundary"])
		var found []byte
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, "", fmt.Errorf("multipart: %w", err)
			}
			if part.FormName() == "profile" {
				if found, err = io.ReadAll(part); err != nil {
					return nil, "", fmt.Errorf("multipart profile: %w", err)
				}
			}
		}
		if found == nil {
			return nil, "", errors.New("multipart body has no profile field")
		}
		body = found
	}
	if bytes.HasPrefix(body, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, "", fmt.Errorf("gzip: %w", err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			return nil, "", fmt.Errorf("gzip: %w", err)
		}
	}
	prof, err := profile.ParseData(body)
	if err != nil {
		return nil, "", fmt.Errorf("pprof: %w", err)
	}
	idx, scale := valueIndex(prof, sampleRate)
	if idx < 0 {
		return nil, "", errors.New("pprof: no sample types")
	}
	counts := map[string]float64{}
	var order []string
	var frames []string
	for _, s := range prof.Sample {
		frames = frames[:0]
		for i := len(s.Location) - 1; i >= 0; i-- { // pprof is leaf first
			loc := s.Location[i]
			for j := len(loc.Line) - 1; j >= 0; j-- {
				if fn := loc.Line[j].Function; fn != nil {
					frames = append(frames, fn.Name)
				}
			}
			if len(loc.Line) == 0 {
				frames = append(frames, fmt.Sprintf("0x%x", loc.Address))
			}
		}
		stack := strings.Join(frames, ";")
		if _, ok := counts[stack]; !ok {
			order = append(order, stack)
		}
		counts[stack] += float64(s.Value[idx]) * scale
	}
	out := make([]rules.Sample, 0, len(order))
	for _, st := range order {
		if v := uint64(counts[st] + 0.5); v > 0 {
			out = append(out, rules.Sample{Stack: st, Value: v})
		}
	}
	return out, prof.SampleType[idx].Type, nil
}

// valueIndex picks the sample value to use: CPU time in nanoseconds
// (scaled to samples at sampleRate) when present, else the last type.
func valueIndex(p *profile.Profile, sampleRate uint32) (int, float64) {
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			return i, float64(sampleRate) / 1e9
		}
	}
	return len(p.SampleType) - 1, 1
}
